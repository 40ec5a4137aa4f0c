package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Identities in the static token file. The scheduler and controller-manager
// names are the ones the bootstrap RBAC policy binds.
const (
	userAdmin             = "admin"
	userScheduler         = "system:kube-scheduler"
	userControllerManager = "system:kube-controller-manager"
)

// pki is the key material of one control plane, written as files for the
// components' flags.
type pki struct {
	CACert, CAKey             string // CA; also the controller-manager's cluster signing pair
	FrontProxyCA              string // --requestheader-client-ca-file
	ServingCert, ServingKey   string // apiserver serving pair
	LoopbackCert, LoopbackKey string // serving pair for the controller-manager and scheduler
	SAKey, SAPub              string // service-account token signing key
	TokenFile                 string // --token-auth-file
	CAPEM                     []byte
	Tokens                    map[string]string // user name -> bearer token

	ca    *x509.Certificate // signs client certificates on demand
	caKey *ecdsa.PrivateKey
}

// newPKI generates a CA, serving certificates for 127.0.0.1, a
// service-account signing key and a token file into dir. ECDSA P-256 keeps
// generation in the millisecond range.
func newPKI(dir string) (*pki, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	p := &pki{
		CACert:       filepath.Join(dir, "ca.crt"),
		CAKey:        filepath.Join(dir, "ca.key"),
		FrontProxyCA: filepath.Join(dir, "front-proxy-ca.crt"),
		ServingCert:  filepath.Join(dir, "apiserver.crt"),
		ServingKey:   filepath.Join(dir, "apiserver.key"),
		LoopbackCert: filepath.Join(dir, "loopback.crt"),
		LoopbackKey:  filepath.Join(dir, "loopback.key"),
		SAKey:        filepath.Join(dir, "sa.key"),
		SAPub:        filepath.Join(dir, "sa.pub"),
		TokenFile:    filepath.Join(dir, "tokens.csv"),
		Tokens:       map[string]string{},
	}

	ca, caKey, caPEM, err := newCA("open-local-test-ca")
	if err != nil {
		return nil, err
	}
	p.ca, p.caKey, p.CAPEM = ca, caKey, caPEM
	if err := os.WriteFile(p.CACert, p.CAPEM, 0o600); err != nil {
		return nil, err
	}
	if err := writeECKey(p.CAKey, caKey); err != nil {
		return nil, err
	}
	// A CA of its own for the front proxy, so that no client certificate
	// of the main CA can assert identities through request headers. Its key
	// is not kept: no aggregated API server runs.
	_, _, frontPEM, err := newCA("open-local-test-front-proxy-ca")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(p.FrontProxyCA, frontPEM, 0o600); err != nil {
		return nil, err
	}

	// 10.0.0.1 is the first address of --service-cluster-ip-range, which the
	// apiserver claims for the "kubernetes" Service.
	apiserverSANs := []string{"127.0.0.1", "10.0.0.1", "localhost", "kubernetes", "kubernetes.default",
		"kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}
	if err := issueServing(ca, caKey, "kube-apiserver", apiserverSANs, p.ServingCert, p.ServingKey); err != nil {
		return nil, err
	}
	if err := issueServing(ca, caKey, "loopback", []string{"127.0.0.1", "localhost"}, p.LoopbackCert, p.LoopbackKey); err != nil {
		return nil, err
	}

	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	if err := writeECKey(p.SAKey, saKey); err != nil {
		return nil, err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(p.SAPub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o600); err != nil {
		return nil, err
	}

	// Token file lines: token,user,uid,"group1,group2".
	var lines []string
	for _, u := range []struct{ name, groups string }{
		{userAdmin, "system:masters"},
		{userScheduler, ""},
		{userControllerManager, ""},
	} {
		tok, err := randomToken()
		if err != nil {
			return nil, err
		}
		p.Tokens[u.name] = tok
		line := fmt.Sprintf("%s,%s,%s", tok, u.name, u.name)
		if u.groups != "" {
			line += fmt.Sprintf(",%q", u.groups)
		}
		lines = append(lines, line)
	}
	if err := os.WriteFile(p.TokenFile, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		return nil, err
	}
	return p, nil
}

// newCA creates a self-signed CA valid for ten years.
func newCA(cn string) (*x509.Certificate, *ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("create CA certificate %s: %w", cn, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, err
	}
	return cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// clientCert issues a client certificate for user in groups (the apiserver
// maps CN to the user name and O to the groups); it returns PEM cert and key.
func (p *pki) clientCert(user string, groups []string) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: user, Organization: groups},
		NotBefore:    p.ca.NotBefore,
		NotAfter:     p.ca.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("issue client certificate for %s: %w", user, err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), nil
}

func issueServing(ca *x509.Certificate, caKey *ecdsa.PrivateKey, cn string, sans []string, certPath, keyPath string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    ca.NotBefore,
		NotAfter:     ca.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, san := range sans {
		if ip := net.ParseIP(san); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, san)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("issue %s certificate: %w", cn, err)
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return err
	}
	return writeECKey(keyPath, key)
}

func writeECKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600)
}

func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		// crypto/rand does not fail on Linux; a fixed serial would still
		// give a valid (if less unique) certificate.
		return big.NewInt(time.Now().UnixNano())
	}
	return n
}

func randomToken() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}
