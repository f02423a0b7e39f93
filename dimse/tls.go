package dimse

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// TLSFiles names the PEM files of a DICOM TLS endpoint.
type TLSFiles struct {
	// CertFile and KeyFile are our certificate chain and private key.
	CertFile, KeyFile string
	// CAFile holds the CA certificates that peers' certificates must chain
	// to; empty uses the system pool (client) or accepts no client
	// certificates (server).
	CAFile string
	// RequireClientCert (server only) rejects clients without a certificate
	// that verifies against CAFile.
	RequireClientCert bool
	// ServerName (client only) overrides the name checked in the server's
	// certificate (default: the host of the address dialled).
	ServerName string
}

// baseTLS is the BCP 195 baseline PS3.15 asks for: TLS 1.2 or newer, and on
// 1.2 only ECDHE key exchange with AEAD ciphers.
func baseTLS() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
	}
}

// ServerTLSConfig loads the files into a listener configuration.
func ServerTLSConfig(f TLSFiles) (*tls.Config, error) {
	cfg := baseTLS()
	cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("dimse: TLS certificate: %w", err)
	}
	cfg.Certificates = []tls.Certificate{cert}
	if f.CAFile != "" {
		pool, err := loadPool(f.CAFile)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	}
	if f.RequireClientCert {
		if f.CAFile == "" {
			return nil, fmt.Errorf("dimse: TLS: requiring client certificates needs a CA file")
		}
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// ClientTLSConfig loads the files into a dialer configuration; CertFile and
// KeyFile are optional (needed when the server requires client certificates).
func ClientTLSConfig(f TLSFiles) (*tls.Config, error) {
	cfg := baseTLS()
	cfg.ServerName = f.ServerName
	if f.CertFile != "" || f.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("dimse: TLS certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if f.CAFile != "" {
		pool, err := loadPool(f.CAFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

func loadPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("dimse: TLS CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("dimse: TLS CA file %s: no PEM certificates", path)
	}
	return pool, nil
}
