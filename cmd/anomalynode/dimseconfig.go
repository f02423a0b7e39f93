package main

import (
	"flag"
	"fmt"

	"anomalynode/configs"
	"anomalynode/dimse"
)

// dimseServerConfig turns the dimse config section into the SCP's policy
// (dimse does not import configs).
func dimseServerConfig(cfg *configs.Config) (dimse.ServerConfig, error) {
	d := cfg.DIMSE
	sc := dimse.ServerConfig{
		Addr:             d.Listen,
		AETitle:          d.AETitle,
		CheckCalledAE:    d.CheckCalledAE,
		MaxAssociations:  d.MaxAssociations,
		MaxPDU:           d.MaxPDU,
		SOPClasses:       d.SOPClasses,
		TransferSyntaxes: d.TransferSyntaxes,
		ARTIMTimeout:     d.ARTIMTimeout,
		IdleTimeout:      d.IdleTimeout,
		DIMSETimeout:     d.DIMSETimeout,
		ShutdownGrace:    d.ShutdownGrace,
	}
	for _, c := range d.AllowedCallers {
		sc.AllowedCallers = append(sc.AllowedCallers, dimse.AllowedCaller{AETitle: c.AETitle, Host: c.Host})
	}
	if d.TLS.Enabled() {
		t, err := dimse.ServerTLSConfig(dimse.TLSFiles{CertFile: d.TLS.Cert, KeyFile: d.TLS.Key, CAFile: d.TLS.CA, RequireClientCert: d.TLS.RequireClientCert})
		if err != nil {
			return sc, fmt.Errorf("dimse.tls: %w", err)
		}
		sc.TLS = t
	}
	return sc, nil
}

// tlsFlags are the DICOM TLS flags shared by echo and send.
type tlsFlags struct {
	cert, key, ca, serverName string
	enable                    bool
}

func (t *tlsFlags) addFlags(fs *flag.FlagSet) {
	fs.BoolVar(&t.enable, "tls", false, "use DICOM TLS (implied by --tls-ca/--tls-cert)")
	fs.StringVar(&t.ca, "tls-ca", "", "PEM file of CAs to verify the SCP's certificate (default: system pool)")
	fs.StringVar(&t.cert, "tls-cert", "", "PEM client certificate, when the SCP requires one")
	fs.StringVar(&t.key, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&t.serverName, "tls-server-name", "", "name expected in the SCP's certificate (default: host of --addr)")
}

// config returns a client configuration holding the TLS settings (none when
// TLS is off).
func (t *tlsFlags) config() (*dimse.ClientConfig, error) {
	if !t.enable && t.ca == "" && t.cert == "" {
		return &dimse.ClientConfig{}, nil
	}
	c, err := dimse.ClientTLSConfig(dimse.TLSFiles{CertFile: t.cert, KeyFile: t.key, CAFile: t.ca, ServerName: t.serverName})
	if err != nil {
		return nil, err
	}
	return &dimse.ClientConfig{TLS: c}, nil
}
