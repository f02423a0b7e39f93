package configs

import (
	"testing"
	"time"
)

// TestOutputDefaults checks the defaults the output stage relies on.
func TestOutputDefaults(t *testing.T) {
	c, err := Parse([]byte("destinations:\n  pacs:\n    address: h:104\n    called_ae: PACS\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !c.Output.SCEnabled() || c.Output.ContentLabel != "ANOMALY" || c.Output.SegmentType.Value != "52988006" || c.Output.HeatmapOpacity != 0.6 {
		t.Errorf("unexpected output defaults: %+v", c.Output)
	}
	if d := c.Destinations["pacs"]; d.Concurrency != 2 || d.Timeout != 2*time.Minute {
		t.Errorf("unexpected destination defaults: %+v", d)
	}
	if e := c.Export; e.MaxAttempts != 10 || e.MaxAge != 24*time.Hour || e.BackoffInitial != 2*time.Second || e.BackoffMax != 10*time.Minute {
		t.Errorf("unexpected export defaults: %+v", e)
	}
	off, err := Parse([]byte("output:\n  sc: false\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if off.Output.SCEnabled() {
		t.Error("sc: false still enables heat maps")
	}
}
