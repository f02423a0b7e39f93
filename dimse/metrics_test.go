package dimse

import (
	"context"
	"net"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestMetricsShareAndConflict: two servers on one registry count into the
// same collectors; a registry holding a conflicting collector of the same
// name makes Serve fail instead of running unmonitored.
func TestMetricsShareAndConflict(t *testing.T) {
	reg := prometheus.NewRegistry()
	a := NewServer(ServerConfig{}, newRecorder(), testLogger(t), reg)
	b := NewServer(ServerConfig{}, newRecorder(), testLogger(t), reg)
	if a.metricsErr != nil || b.metricsErr != nil {
		t.Fatalf("registration: %v, %v", a.metricsErr, b.metricsErr)
	}
	if a.m.stores != b.m.stores || a.m.active != b.m.active {
		t.Fatal("second server did not reuse the registered collectors")
	}

	conflict := prometheus.NewRegistry()
	conflict.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "anomalynode_dimse_associations_active", Help: "something else"}))
	s := NewServer(ServerConfig{}, newRecorder(), testLogger(t), conflict)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(context.Background(), l); err == nil {
		t.Fatal("Serve ran with a metric that could not be registered")
	}
}
