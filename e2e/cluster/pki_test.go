package cluster

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/csv"
	"encoding/pem"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	block, _ := pem.Decode(data)
	require.NotNil(t, block, "%s holds no PEM block", path)
	require.Equal(t, "CERTIFICATE", block.Type)
	cert, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)
	return cert
}

func readECKey(t *testing.T, path string) *ecdsa.PrivateKey {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	block, _ := pem.Decode(data)
	require.NotNil(t, block, "%s holds no PEM block", path)
	key, err := x509.ParseECPrivateKey(block.Bytes)
	require.NoError(t, err)
	return key
}

func TestPKIServingCertificatesVerifyAgainstCA(t *testing.T) {
	p, err := newPKI(t.TempDir())
	require.NoError(t, err)

	ca := readCert(t, p.CACert)
	assert.True(t, ca.IsCA)
	assert.True(t, readECKey(t, p.CAKey).PublicKey.Equal(ca.PublicKey), "ca.key does not match ca.crt")
	roots := x509.NewCertPool()
	roots.AddCert(ca)

	for _, tc := range []struct {
		cert  string
		names []string
	}{
		{p.ServingCert, []string{"127.0.0.1", "localhost", "kubernetes.default.svc", "10.0.0.1"}},
		{p.LoopbackCert, []string{"127.0.0.1", "localhost"}},
	} {
		cert := readCert(t, tc.cert)
		for _, name := range tc.names {
			_, err := cert.Verify(x509.VerifyOptions{DNSName: name, Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			assert.NoError(t, err, "%s for %s", tc.cert, name)
		}
	}
	_, err = readCert(t, p.LoopbackCert).Verify(x509.VerifyOptions{DNSName: "example.com", Roots: roots})
	assert.Error(t, err, "the loopback certificate must not be valid for other names")

	front := readCert(t, p.FrontProxyCA)
	assert.True(t, front.IsCA)
	assert.False(t, front.PublicKey.(*ecdsa.PublicKey).Equal(ca.PublicKey), "the front proxy needs a CA of its own")
}

func TestPKIServiceAccountKeyPair(t *testing.T) {
	p, err := newPKI(t.TempDir())
	require.NoError(t, err)
	key := readECKey(t, p.SAKey)
	data, err := os.ReadFile(p.SAPub)
	require.NoError(t, err)
	block, _ := pem.Decode(data)
	require.NotNil(t, block)
	assert.Equal(t, "PUBLIC KEY", block.Type)
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	require.NoError(t, err)
	assert.True(t, key.PublicKey.Equal(pub), "sa.pub does not match sa.key")
}

func TestPKITokenFile(t *testing.T) {
	p, err := newPKI(t.TempDir())
	require.NoError(t, err)
	f, err := os.Open(p.TokenFile)
	require.NoError(t, err)
	defer f.Close()
	r := csv.NewReader(f)
	r.FieldsPerRecord = -1
	records, err := r.ReadAll()
	require.NoError(t, err)
	require.Len(t, records, 3)

	byUser := map[string][]string{}
	tokens := map[string]bool{}
	for _, rec := range records {
		require.GreaterOrEqual(t, len(rec), 3, "token,user,uid[,groups]: %v", rec)
		byUser[rec[1]] = rec
		assert.False(t, tokens[rec[0]], "token reused")
		tokens[rec[0]] = true
		assert.Len(t, rec[0], 48)
		assert.Equal(t, p.Tokens[rec[1]], rec[0])
	}
	require.Contains(t, byUser, userAdmin)
	require.Len(t, byUser[userAdmin], 4)
	assert.Equal(t, "system:masters", byUser[userAdmin][3])
	assert.Len(t, byUser[userScheduler], 3, "the scheduler must not be in any privileged group")
	assert.Len(t, byUser[userControllerManager], 3)

	q, err := newPKI(t.TempDir())
	require.NoError(t, err)
	assert.NotEqual(t, p.Tokens[userAdmin], q.Tokens[userAdmin], "each control plane needs fresh tokens")
}

func TestPKIClientCertificateCarriesUserAndGroups(t *testing.T) {
	p, err := newPKI(t.TempDir())
	require.NoError(t, err)
	certPEM, keyPEM, err := p.clientCert("system:node:n1", []string{"system:nodes"})
	require.NoError(t, err)
	block, _ := pem.Decode(certPEM)
	require.NotNil(t, block)
	cert, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)
	assert.Equal(t, "system:node:n1", cert.Subject.CommonName)
	assert.Equal(t, []string{"system:nodes"}, cert.Subject.Organization)

	roots := x509.NewCertPool()
	roots.AddCert(readCert(t, p.CACert))
	_, err = cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	require.NoError(t, err)
	_, err = cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	assert.Error(t, err, "a client certificate must not serve")

	kb, _ := pem.Decode(keyPEM)
	require.NotNil(t, kb)
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	require.NoError(t, err)
	assert.True(t, key.PublicKey.Equal(cert.PublicKey))
}
