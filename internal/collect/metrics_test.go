package collect

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func TestRegisterReusesExisting(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := prometheus.CounterOpts{Name: "x_total", Help: "x"}
	a := prometheus.NewCounter(opts)
	if err := Register(reg, &a); err != nil {
		t.Fatal(err)
	}
	b := prometheus.NewCounter(opts)
	if err := Register(reg, &b); err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Fatal("second registration did not return the first collector")
	}
	// The second caller's counts reach the registry.
	b.Inc()
	var m dto.Metric
	if err := a.Write(&m); err != nil {
		t.Fatal(err)
	}
	if got := m.GetCounter().GetValue(); got != 1 {
		t.Fatalf("shared counter = %v, want 1", got)
	}
	// Same name, different help: a conflict, not a share.
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x_total", Help: "other"})
	if err := Register(reg, &c); err == nil {
		t.Fatal("conflicting registration succeeded")
	}
}

func TestRegisterNilRegistry(t *testing.T) {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "y_total", Help: "y"})
	orig := c
	if err := Register(nil, &c); err != nil || c != orig {
		t.Fatalf("nil registry: err %v, collector replaced %v", err, c != orig)
	}
}
