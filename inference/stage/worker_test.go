package stage

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"anomalynode/inference"
)

// TestWorkersShareMetrics builds two workers on one registry (as a process
// serving several model sets would) and checks that the second counts into
// the collectors the first registered, so its counts are exported.
func TestWorkersShareMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := WorkerOptions{Engines: map[string]*inference.Engine{"ct": {}}, Results: &ResultStore{}, Registerer: reg}
	w1, err := NewWorker(opts)
	if err != nil {
		t.Fatal(err)
	}
	w2, err := NewWorker(opts)
	if err != nil {
		t.Fatal(err)
	}
	w2.scored.WithLabelValues("ct").Add(3)
	w2.failed.WithLabelValues("ct", "decode").Inc()
	w2.waiting.Inc()
	w2.yielded.Add(0.5)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	series := 0
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			series++
			got[mf.GetName()] += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	// 1 scored + 4 failure reasons + 1 gauge + 1 yield counter, each once.
	if series != 7 {
		t.Fatalf("%d exported series, want 7", series)
	}
	want := map[string]float64{"anomalynode_slices_scored_total": 3, "anomalynode_slices_failed_total": 1, "anomalynode_inference_queue_depth": 1,
		"anomalynode_inference_yield_seconds_total": 0.5}
	for name, v := range want {
		if got[name] != v {
			t.Errorf("%s = %v, want %v (the second worker's counts are not exported)", name, got[name], v)
		}
	}
	if w1.scored != w2.scored {
		t.Error("second worker did not reuse the registered counter")
	}
}

// TestNewWorkerNeedsModelsAndStore checks the worker refuses to start half-wired.
func TestNewWorkerNeedsModelsAndStore(t *testing.T) {
	if _, err := NewWorker(WorkerOptions{Results: &ResultStore{}}); err == nil {
		t.Fatal("worker without models accepted")
	}
	if _, err := NewWorker(WorkerOptions{Engines: map[string]*inference.Engine{"ct": {}}}); err == nil {
		t.Fatal("worker without a result store accepted")
	}
}
