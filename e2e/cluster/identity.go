package cluster

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
)

// serviceAccountTokenTTL outlives any test run; the token dies with the
// cluster anyway.
const serviceAccountTokenTTL = 24 * time.Hour

// ServiceAccountConfig returns a client config that authenticates as the
// ServiceAccount namespace/name, creating the namespace and the account if
// they do not exist. The token comes from the TokenRequest API, so code under
// test runs with exactly the RBAC rules bound to that account.
func (c *Cluster) ServiceAccountConfig(ctx context.Context, namespace, name string) (*rest.Config, error) {
	if err := c.ensureNamespace(ctx, namespace); err != nil {
		return nil, err
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	if _, err := c.client.CoreV1().ServiceAccounts(namespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("create ServiceAccount %s/%s: %w", namespace, name, err)
	}
	ttl := int64(serviceAccountTokenTTL / time.Second)
	tr, err := c.client.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &ttl},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("request a token for ServiceAccount %s/%s: %w", namespace, name, err)
	}
	cfg := c.tokenConfig(tr.Status.Token)
	cfg.UserAgent = fmt.Sprintf("serviceaccount:%s:%s", namespace, name)
	return cfg, nil
}

// ServiceAccountKubeconfig is ServiceAccountConfig written as a kubeconfig
// file (for programs started with StartProcess); it returns the path.
func (c *Cluster) ServiceAccountKubeconfig(ctx context.Context, namespace, name string) (string, error) {
	cfg, err := c.ServiceAccountConfig(ctx, namespace, name)
	if err != nil {
		return "", err
	}
	path := filepath.Join(c.dir, fmt.Sprintf("sa-%s-%s.kubeconfig", namespace, name))
	return path, writeKubeconfig(path, cfg)
}

// UserConfig returns a client config that authenticates as user in the
// given groups, with a client certificate from the cluster CA. It serves
// identities that are not ServiceAccounts, e.g. a node
// ("system:node:<name>" in "system:nodes"), which the Node authorizer and
// the NodeRestriction admission plugin judge.
func (c *Cluster) UserConfig(user string, groups ...string) (*rest.Config, error) {
	if user == "" {
		return nil, fmt.Errorf("user config: the user name is empty")
	}
	certPEM, keyPEM, err := c.pki.clientCert(user, groups)
	if err != nil {
		return nil, err
	}
	cfg := c.tokenConfig("")
	cfg.CertData, cfg.KeyData = certPEM, keyPEM
	cfg.UserAgent = "user:" + user
	return cfg, nil
}

// CreateNamespace creates a namespace (it may exist already). With the
// controller-manager running it also waits for the namespace's "default"
// ServiceAccount, without which the apiserver rejects pods.
func (c *Cluster) CreateNamespace(ctx context.Context, name string) error {
	if err := c.ensureNamespace(ctx, name); err != nil {
		return err
	}
	if !c.opts.ControllerManager {
		return nil
	}
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := c.client.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	})
	if err != nil {
		return fmt.Errorf("wait for ServiceAccount %s/default: %w", name, err)
	}
	return nil
}

func (c *Cluster) ensureNamespace(ctx context.Context, name string) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := c.client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create Namespace %s: %w", name, err)
	}
	return nil
}
