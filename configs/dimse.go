package configs

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// DIMSE configures the DICOM listener (SCP) and its acceptance policy.
type DIMSE struct {
	// Listen is HOST:PORT of the DICOM listener.
	Listen string `yaml:"listen"`
	// AETitle is our application entity title.
	AETitle string `yaml:"ae_title"`
	// CheckCalledAE rejects associations whose called AE is not AETitle.
	CheckCalledAE bool `yaml:"check_called_ae"`
	// AllowedCallers lists the calling AE titles accepted (optionally only from
	// one host); empty accepts every caller.
	AllowedCallers []AllowedCaller `yaml:"allowed_callers"`
	// MaxAssociations bounds concurrent associations.
	MaxAssociations int `yaml:"max_associations"`
	// MaxPDU is the largest PDU we accept (bytes).
	MaxPDU uint32 `yaml:"max_pdu"`
	// SOPClasses are the accepted SOP class UIDs; empty accepts the built-in
	// set (Verification, CT, MR, Enhanced CT/MR, Secondary Capture, SEG).
	SOPClasses []string `yaml:"sop_classes"`
	// TransferSyntaxes are the accepted transfer syntax UIDs in order of
	// preference; empty accepts the built-in set (Explicit/Implicit VR LE,
	// Deflated, Explicit VR BE, RLE Lossless, JPEG Lossless SV1 and Process 14,
	// JPEG-LS lossless and near-lossless).
	TransferSyntaxes []string `yaml:"transfer_syntaxes"`
	// ARTIMTimeout bounds waiting for A-ASSOCIATE-RQ and for the peer to close.
	ARTIMTimeout time.Duration `yaml:"artim_timeout"`
	// IdleTimeout aborts an association that sends nothing for this long.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// DIMSETimeout bounds each step inside a DIMSE exchange.
	DIMSETimeout time.Duration `yaml:"dimse_timeout"`
	// ShutdownGrace is how long open associations may finish at shutdown.
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
	// TLS enables DICOM TLS on the listener when Cert and Key are set.
	TLS DIMSETLS `yaml:"tls"`
}

// AllowedCaller is one calling AE title the listener accepts.
type AllowedCaller struct {
	// AETitle is the calling AE title.
	AETitle string `yaml:"ae_title"`
	// Host, when set, is the only IP address or host name it may call from.
	Host string `yaml:"host"`
}

// DIMSETLS holds the listener's DICOM TLS files (PEM).
type DIMSETLS struct {
	// Cert is our certificate chain.
	Cert string `yaml:"cert"`
	// Key is the private key of Cert.
	Key string `yaml:"key"`
	// CA holds the CAs that client certificates must chain to.
	CA string `yaml:"ca"`
	// RequireClientCert rejects clients without a certificate verified by CA.
	RequireClientCert bool `yaml:"require_client_cert"`
}

// Enabled reports whether TLS is configured.
func (t DIMSETLS) Enabled() bool { return t.Cert != "" || t.Key != "" }

func (d *DIMSE) setDefaults() {
	if d.Listen == "" {
		d.Listen = ":11112"
	}
	if d.AETitle == "" {
		d.AETitle = "ANOMALYNODE"
	}
	if d.MaxAssociations == 0 {
		d.MaxAssociations = 32
	}
	if d.MaxPDU == 0 {
		d.MaxPDU = 1 << 20
	}
	if d.ARTIMTimeout == 0 {
		d.ARTIMTimeout = 30 * time.Second
	}
	if d.IdleTimeout == 0 {
		d.IdleTimeout = 5 * time.Minute
	}
	if d.DIMSETimeout == 0 {
		d.DIMSETimeout = 2 * time.Minute
	}
	if d.ShutdownGrace == 0 {
		d.ShutdownGrace = 10 * time.Second
	}
}

// uidRE is a DICOM UID (PS3.5 9.1): dot-separated numbers without leading
// zeros, at most 64 characters (checked separately).
var uidRE = regexp.MustCompile(`^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$`)

func validAE(ae string) bool {
	if strings.TrimSpace(ae) == "" || len(ae) > 16 {
		return false
	}
	for _, r := range ae {
		if r < 0x20 || r > 0x7e || r == '\\' {
			return false
		}
	}
	return true
}

func (d *DIMSE) validate(p *problems, path string) {
	if !validAE(d.AETitle) {
		p.add(path+".ae_title", "must be 1-16 printable characters without backslash, got %q", d.AETitle)
	}
	if d.MaxPDU < 4096 || d.MaxPDU > 64<<20 {
		p.add(path+".max_pdu", "must be between 4096 and 67108864, got %d", d.MaxPDU)
	}
	if d.MaxAssociations < 1 {
		p.add(path+".max_associations", "must be at least 1")
	}
	for i, c := range d.AllowedCallers {
		if !validAE(c.AETitle) {
			p.add(fmt.Sprintf("%s.allowed_callers[%d].ae_title", path, i), "must be 1-16 printable characters without backslash, got %q", c.AETitle)
		}
	}
	for i, u := range d.SOPClasses {
		if len(u) > 64 || !uidRE.MatchString(u) {
			p.add(fmt.Sprintf("%s.sop_classes[%d]", path, i), "not a UID: %q", u)
		}
	}
	for i, u := range d.TransferSyntaxes {
		if len(u) > 64 || !uidRE.MatchString(u) {
			p.add(fmt.Sprintf("%s.transfer_syntaxes[%d]", path, i), "not a UID: %q", u)
		}
	}
	for _, tm := range []struct {
		key string
		v   time.Duration
	}{{"artim_timeout", d.ARTIMTimeout}, {"idle_timeout", d.IdleTimeout}, {"dimse_timeout", d.DIMSETimeout}, {"shutdown_grace", d.ShutdownGrace}} {
		if tm.v < 0 {
			p.add(path+"."+tm.key, "must not be negative, got %s", tm.v)
		}
	}
	if (d.TLS.Cert == "") != (d.TLS.Key == "") {
		p.add(path+".tls", "cert and key must be set together")
	}
	if d.TLS.RequireClientCert && d.TLS.CA == "" {
		p.add(path+".tls.require_client_cert", "needs tls.ca to verify client certificates against")
	}
	if (d.TLS.CA != "" || d.TLS.RequireClientCert) && !d.TLS.Enabled() {
		p.add(path+".tls", "ca/require_client_cert set without cert and key")
	}
}
