package configs

import (
	"testing"
	"time"
)

// TestDIMSEDefaults checks the listener defaults the node relies on.
func TestDIMSEDefaults(t *testing.T) {
	c, err := Parse([]byte("node:\n  name: x\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	d := c.DIMSE
	if d.Listen != ":11112" || d.AETitle != "ANOMALYNODE" || d.MaxAssociations != 32 || d.MaxPDU != 1<<20 ||
		d.ARTIMTimeout != 30*time.Second || d.IdleTimeout != 5*time.Minute || d.DIMSETimeout != 2*time.Minute ||
		d.ShutdownGrace != 10*time.Second || d.TLS.Enabled() || d.CheckCalledAE || len(d.AllowedCallers) != 0 {
		t.Fatalf("unexpected defaults: %+v", d)
	}
}

// TestDIMSEFull checks that every key of the full example is read.
func TestDIMSEFull(t *testing.T) {
	c, err := Load("testdata/dimse_full.good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	d := c.DIMSE
	if len(d.AllowedCallers) != 3 || d.AllowedCallers[0] != (AllowedCaller{AETitle: "CT_SCANNER", Host: "10.0.0.17"}) ||
		len(d.SOPClasses) != 3 || len(d.TransferSyntaxes) != 3 || d.IdleTimeout != 2*time.Minute ||
		!d.TLS.RequireClientCert || d.TLS.CA == "" || !d.CheckCalledAE || d.MaxPDU != 262144 {
		t.Fatalf("full example read as %+v", d)
	}
}
