package configs

import (
	"testing"
	"time"
)

// TestIngestDefaults checks the defaults the ingest stage relies on.
func TestIngestDefaults(t *testing.T) {
	c, err := Parse([]byte("ingest:\n  watch:\n    - path: /in\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	in := c.Ingest
	if in.SeriesTimeout != 30*time.Second || in.AckWait != 5*time.Minute || in.MaxDeliver != -1 ||
		in.DuplicateWindow != 10*time.Minute || in.MaxHeaderBytes != 64<<20 {
		t.Errorf("unexpected defaults: %+v", in)
	}
	if w := in.Watch[0]; w.StableFor != 2*time.Second || w.RescanInterval != time.Minute {
		t.Errorf("unexpected watch defaults: %+v", w)
	}
	if c.NATS.Prefix != "ANOMALYNODE" || c.NATS.Replicas != 1 {
		t.Errorf("unexpected nats defaults: %+v", c.NATS)
	}
}

func TestMatchEmpty(t *testing.T) {
	var m Match
	if !m.Empty() {
		t.Fatal("zero Match must be empty")
	}
	m.Tags = map[string]string{"Modality": "CT"}
	if m.Empty() {
		t.Fatal("Match with tags must not be empty")
	}
}
