package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestServeRefusesOpenConsole: an admin listener on a non-loopback address
// without authentication stops serve before anything starts, naming the key.
func TestServeRefusesOpenConsole(t *testing.T) {
	data := t.TempDir()
	cfg := filepath.Join(data, "node.yaml")
	os.WriteFile(cfg, []byte("node:\n  data_dir: "+data+"\nadmin:\n  listen: \"0.0.0.0:0\"\n"), 0o644)
	e, _, _ := testEnv()
	err := runServe(context.Background(), e, []string{"--config", cfg, "--listen", freeAddr(t)})
	if err == nil || !strings.Contains(err.Error(), "node.yaml:4: admin.listen") || !strings.Contains(err.Error(), "requires authentication") {
		t.Fatalf("serve with an open console: %v", err)
	}
}

// TestServeConsoleToken: the node mounts the console on the admin listener;
// with admin.token_file it answers 401 without the token and the Overview
// with it, while /healthz stays open for probes.
func TestServeConsoleToken(t *testing.T) {
	data := t.TempDir()
	admin := freeAddr(t)
	tok := filepath.Join(data, "console.token")
	os.WriteFile(tok, []byte("console-test-token-0123\n"), 0o600)
	cfg := filepath.Join(data, "node.yaml")
	os.WriteFile(cfg, []byte("node:\n  data_dir: "+data+"\nadmin:\n  listen: "+admin+"\n  token_file: "+tok+"\n"), 0o644)
	serveInBackground(t, cfg)
	get := func(path, token string) int {
		req, _ := http.NewRequest("GET", "http://"+admin+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		res.Body.Close()
		return res.StatusCode
	}
	waitUntilTrue(t, 60*time.Second, "admin listener up", func() bool { return get("/healthz", "") == 200 })
	if code := get("/", ""); code != http.StatusUnauthorized {
		t.Errorf("console without the token: %d, want 401", code)
	}
	if code := get("/", "console-test-token-0123"); code != http.StatusOK {
		t.Errorf("console with the token: %d, want 200", code)
	}
	if code := get("/config", "console-test-token-0123"); code != http.StatusOK {
		t.Errorf("configuration page with the token: %d, want 200", code)
	}
}

// TestServeConsoleMutualTLS: with admin.tls and a client CA, the console
// needs a client certificate signed by it; probes reach /healthz without one.
func TestServeConsoleMutualTLS(t *testing.T) {
	data := t.TempDir()
	ca, caKey := newCert(t, "test CA", nil, nil)
	srv, srvKey := newCert(t, "127.0.0.1", ca, caKey)
	cli, cliKey := newCert(t, "it-engineer", ca, caKey)
	other, otherKey := newCert(t, "stranger", nil, nil)
	writePEM(t, filepath.Join(data, "ca.pem"), "CERTIFICATE", ca.Raw)
	writePEM(t, filepath.Join(data, "srv.pem"), "CERTIFICATE", srv.Raw)
	writeKey(t, filepath.Join(data, "srv.key"), srvKey)
	admin := freeAddr(t)
	cfg := filepath.Join(data, "node.yaml")
	os.WriteFile(cfg, []byte("node:\n  data_dir: "+data+"\nadmin:\n  listen: "+admin+"\n  tls: {cert: "+data+"/srv.pem, key: "+data+"/srv.key, client_ca: "+data+"/ca.pem}\n"), 0o644)
	serveInBackground(t, cfg)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	client := func(c *x509.Certificate, k *ecdsa.PrivateKey) *http.Client {
		tc := &tls.Config{RootCAs: pool}
		if c != nil {
			tc.Certificates = []tls.Certificate{{Certificate: [][]byte{c.Raw}, PrivateKey: k}}
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 5 * time.Second}
	}
	get := func(cl *http.Client, path string) int {
		res, err := cl.Get("https://" + admin + path)
		if err != nil {
			return 0
		}
		res.Body.Close()
		return res.StatusCode
	}
	waitUntilTrue(t, 60*time.Second, "admin listener up", func() bool { return get(client(nil, nil), "/healthz") == 200 })
	if code := get(client(nil, nil), "/"); code != http.StatusUnauthorized {
		t.Errorf("console without a client certificate: %d, want 401", code)
	}
	res, err := client(cli, cliKey).Get("https://" + admin + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.Contains(string(body), "signed in: cert:it-engineer") {
		t.Errorf("console with the IT engineer's certificate: %d, want 200 naming the user", res.StatusCode)
	}
	if code := get(client(other, otherKey), "/"); code == http.StatusOK {
		t.Errorf("console with a certificate from another CA: %d", code)
	}
}

// newCert makes an ECDSA certificate signed by parent (self-signed when nil).
func newCert(t *testing.T, cn string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	if parent == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func writeKey(t *testing.T, path string, k *ecdsa.PrivateKey) {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, path, "EC PRIVATE KEY", der)
}

// serveInBackground runs 'serve' on the configuration file until the test
// ends, then checks that it stops.
func serveInBackground(t *testing.T, cfg string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		e, _, _ := testEnv()
		served <- runServe(ctx, e, []string{"--config", cfg, "--listen", freeAddr(t)})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-served:
		case <-time.After(30 * time.Second):
			t.Error("serve did not stop")
		}
	})
}
