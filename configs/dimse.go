package configs

import "time"

// DIMSE configures the DICOM listener (SCP) and its acceptance policy.
type DIMSE struct {
	// Listen is HOST:PORT of the DICOM listener.
	Listen string `yaml:"listen"`
	// AETitle is our application entity title.
	AETitle string `yaml:"ae_title"`
	// CheckCalledAE rejects associations whose called AE is not AETitle.
	CheckCalledAE bool `yaml:"check_called_ae"`
	// MaxAssociations bounds concurrent associations.
	MaxAssociations int `yaml:"max_associations"`
	// MaxPDU is the largest PDU we accept (bytes).
	MaxPDU uint32 `yaml:"max_pdu"`
	// ARTIMTimeout, IdleTimeout and DIMSETimeout are the upper-layer timers.
	ARTIMTimeout time.Duration `yaml:"artim_timeout"`
	IdleTimeout  time.Duration `yaml:"idle_timeout"`
	DIMSETimeout time.Duration `yaml:"dimse_timeout"`
}

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
}

func (d *DIMSE) validate(p *problems, path string) {
	if len(d.AETitle) > 16 {
		p.add(path+".ae_title", "at most 16 characters, got %d", len(d.AETitle))
	}
	if d.MaxPDU < 4096 {
		p.add(path+".max_pdu", "must be at least 4096, got %d", d.MaxPDU)
	}
	if d.MaxAssociations < 1 {
		p.add(path+".max_associations", "must be at least 1")
	}
}
