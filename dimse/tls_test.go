package dimse

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"anomalynode/internal/peers"
)

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string
}

// newCA makes a self-signed CA and writes its certificate to dir.
func newCA(t *testing.T, dir, name string) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	file := filepath.Join(dir, name+"-ca.pem")
	writePEM(t, file, "CERTIFICATE", der)
	return &testCA{cert: cert, key: key, file: file}
}

// issue writes a leaf certificate and key signed by the CA; it returns their paths.
func (ca *testCA) issue(t *testing.T, dir, name string, server bool) (certFile, keyFile string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.DNSNames = []string{"localhost"}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	kd, _ := x509.MarshalECPrivateKey(key)
	writePEM(t, keyFile, "EC PRIVATE KEY", kd)
	return certFile, keyFile
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, dir, "hospital")
	rogue := newCA(t, dir, "rogue")
	srvCert, srvKey := ca.issue(t, dir, "node", true)
	cliCert, cliKey := ca.issue(t, dir, "modality", false)
	badCert, badKey := rogue.issue(t, dir, "intruder", false)

	srvTLS, err := ServerTLSConfig(TLSFiles{CertFile: srvCert, KeyFile: srvKey, CAFile: ca.file, RequireClientCert: true})
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	_, addr := startServer(t, ServerConfig{TLS: srvTLS}, rec)
	ctx := context.Background()

	// A client with a certificate from the hospital CA gets in.
	cliTLS, err := ClientTLSConfig(TLSFiles{CertFile: cliCert, KeyFile: cliKey, CAFile: ca.file})
	if err != nil {
		t.Fatal(err)
	}
	c, err := Dial(ctx, addr, ClientConfig{CalledAE: "NODE", TLS: cliTLS})
	if err != nil {
		t.Fatal(err)
	}
	f := makeSeries(t, t.TempDir(), synthSpec{N: 1})[0]
	if err := c.Echo(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err := c.StoreFile(ctx, f); err != nil || !st.IsSuccess() {
		t.Fatalf("StoreFile over TLS: %v %v", st, err)
	}
	if err := c.Release(ctx); err != nil {
		t.Fatal(err)
	}
	meta, _ := readInstance(t, f)
	got, _ := rec.get(meta.MediaStorageSOPInstanceUID)
	if got.Req.Assoc == nil || len(got.Req.Assoc.PeerCertificates) == 0 || got.Req.Assoc.PeerCertificates[0].Subject.CommonName != "modality" {
		t.Fatalf("handler did not see the client certificate: %+v", got.Req.Assoc)
	}

	// A certificate from another CA, no certificate, and plain TCP are refused.
	badTLS, _ := ClientTLSConfig(TLSFiles{CertFile: badCert, KeyFile: badKey, CAFile: ca.file})
	noCertTLS, _ := ClientTLSConfig(TLSFiles{CAFile: ca.file})
	for name, cfg := range map[string]ClientConfig{
		"wrong CA": {CalledAE: "NODE", TLS: badTLS, DialTimeout: 5 * time.Second},
		"no cert":  {CalledAE: "NODE", TLS: noCertTLS, DialTimeout: 5 * time.Second},
		"no TLS":   {CalledAE: "NODE", DialTimeout: 2 * time.Second},
	} {
		if c, err := Dial(ctx, addr, cfg); err == nil {
			_ = c.Abort()
			t.Errorf("%s: association accepted", name)
		}
	}
	// The client also refuses a server whose certificate it cannot verify.
	rogueRoots, _ := ClientTLSConfig(TLSFiles{CertFile: cliCert, KeyFile: cliKey, CAFile: rogue.file})
	if c, err := Dial(ctx, addr, ClientConfig{CalledAE: "NODE", TLS: rogueRoots}); err == nil || !strings.Contains(err.Error(), "certificate") {
		if c != nil {
			_ = c.Abort()
		}
		t.Errorf("unverifiable server accepted: %v", err)
	}

	// dcmtk's echoscu with DICOM TLS (BCP 195 profile) against our SCP.
	h, p := hostPort(t, addr)
	out, err := exec.Command(peers.Tool(t, "echoscu"), "+tls", cliKey, cliCert, "+cf", ca.file, "-aec", "NODE", h, p).CombinedOutput()
	if err != nil {
		t.Fatalf("echoscu +tls: %v\n%s", err, out)
	}
	out, err = exec.Command(peers.Tool(t, "echoscu"), "+tls", badKey, badCert, "+cf", ca.file, "-aec", "NODE", h, p).CombinedOutput()
	if err == nil {
		t.Fatalf("echoscu +tls with a rogue certificate succeeded:\n%s", out)
	}
}
