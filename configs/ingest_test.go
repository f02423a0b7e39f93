package configs

import (
	"strings"
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
	if in.SeriesTimeout != 30*time.Second || in.AckWait != 30*time.Second || in.StoreTimeout != 10*time.Second || in.MaxDeliver != -1 ||
		in.DuplicateWindow != 10*time.Minute || in.MaxHeaderBytes != 64<<20 {
		t.Errorf("unexpected defaults: %+v", in)
	}
	if w := in.Watch[0]; w.StableFor != 2*time.Second || w.RescanInterval != time.Minute {
		t.Errorf("unexpected watch defaults: %+v", w)
	}
	if c.NATS.Prefix != "ANOMALYNODE" || c.NATS.Replicas != 1 {
		t.Errorf("unexpected nats defaults: %+v", c.NATS)
	}
	if c.Node.Role != RoleAll || !c.Node.Receives() || !c.Node.Works() {
		t.Errorf("unexpected node role default: %+v", c.Node)
	}
}

// TestNodeRole: receiver and worker need an external NATS; other names are
// refused with their line.
func TestNodeRole(t *testing.T) {
	for _, tc := range []struct {
		yaml, err       string
		receives, works bool
	}{
		{yaml: "node: {role: receiver}\nnats: {url: nats://a:4222}\n", receives: true},
		{yaml: "node: {role: worker}\nnats: {url: nats://a:4222}\n", works: true},
		{yaml: "node: {role: worker}\n", err: "t.yaml:1: node.role: \"worker\" shares its work"},
		{yaml: "node: {role: gpu}\n", err: "node.role: must be all, receiver or worker"},
	} {
		c, err := Parse([]byte(tc.yaml), "t.yaml")
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.yaml, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.yaml, err)
			continue
		}
		if c.Node.Receives() != tc.receives || c.Node.Works() != tc.works {
			t.Errorf("%q: receives %v works %v", tc.yaml, c.Node.Receives(), c.Node.Works())
		}
	}
}

// TestImpliedSettle: absent means the default (but never above
// series_timeout), an explicit 0s stays 0 (disabled), a value is kept.
func TestImpliedSettle(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       time.Duration
	}{
		{"absent", "ingest: {}\n", DefaultImpliedSettle},
		{"absent, short timeout", "ingest: {series_timeout: 2s}\n", 2 * time.Second},
		{"disabled", "ingest: {implied_settle: 0s}\n", 0},
		{"set", "ingest: {series_timeout: 1m, implied_settle: 500ms}\n", 500 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.yaml), "t.yaml")
			if err != nil {
				t.Fatal(err)
			}
			if d := c.Ingest.ImpliedSettle; d == nil || *d != tc.want {
				t.Fatalf("implied_settle %s, want %v", durPtr(d), tc.want)
			}
		})
	}
	c, err := Load("testdata/ingest_implied.good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if d := c.Ingest.ImpliedSettle; d == nil || *d != 0 {
		t.Fatalf("golden: implied_settle %s, want 0s", durPtr(d))
	}
	if d := Default().Ingest.ImpliedSettle; d == nil || *d != 3*time.Second {
		t.Fatalf("Default(): implied_settle %s, want 3s", durPtr(d))
	}
}

func durPtr(d *time.Duration) string {
	if d == nil {
		return "absent"
	}
	return d.String()
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
