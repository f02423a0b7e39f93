//go:build linux

package inference

import (
	"context"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"anomalynode/inference/pixel"
	"anomalynode/internal/nice"
)

// nicedAt lists the process's threads at exactly niceness n.
func nicedAt(t *testing.T, n int) map[int]bool {
	t.Helper()
	all, err := nice.Threads()
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]bool{}
	for tid, v := range all {
		if v == n {
			out[tid] = true
		}
	}
	return out
}

// probeScorer records the niceness of the thread each Score runs on: the
// engine scores on the thread that has just run the backbone.
type probeScorer struct {
	inner Scorer
	mu    sync.Mutex
	seen  []int
}

func (p *probeScorer) Score(tokens []float32, n int, out []float32) {
	all, _ := nice.Threads()
	p.mu.Lock()
	p.seen = append(p.seen, all[unix.Gettid()])
	p.mu.Unlock()
	p.inner.Score(tokens, n, out)
}

// TestOpenModelNice checks ModelSetup.Nice where it matters: ONNX Runtime's
// intra-op threads, created with the session, and the thread that runs the
// model run at the niceness; the thread that opened the model does not.
func TestOpenModelNice(t *testing.T) {
	const n, threads = 13, 3 // an unusual value; 3 intra-op threads: 2 in ORT's pool
	if cur, _ := nice.Current(); cur != 0 {
		t.Skipf("the test runs at niceness %d, want 0", cur)
	}
	onnx := testViT(t, "tiny", 0)
	path := writeServedModel(t, 48, onnx)
	before := nicedAt(t, n)
	var probe *probeScorer
	s, err := OpenModel(ModelSetup{ModelPath: path, EmbedderPath: onnx, VerifyEmbedder: true, ORTLibrary: ortLib(),
		Threads: threads, FPR: 0.05, Nice: n,
		NewScorer: func(m *Model) (Scorer, error) {
			inner, err := NewDPMMScorer(m)
			probe = &probeScorer{inner: inner}
			return probe, err
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.NiceErr != nil {
		t.Fatalf("nice not applied: %v", s.NiceErr)
	}
	// The thread that created the session has ended; its pool remains.
	var pool []int
	for tid := range nicedAt(t, n) {
		if !before[tid] {
			pool = append(pool, tid)
		}
	}
	if len(pool) < threads-1 {
		t.Errorf("%d new threads at niceness %d after opening the model (%v), want ONNX Runtime's %d pool threads", len(pool), n, pool, threads-1)
	}
	if me, _ := nice.Current(); me != 0 {
		t.Errorf("the caller's thread is at niceness %d after OpenModel, want 0", me)
	}

	slice := &pixel.Slice{Rows: 30, Cols: 40, Slope: 1, Photometric: "MONOCHROME2", MinStored: 0, MaxStored: 255, Stored: make([]int32, 1200)}
	res, err := s.Engine.Process(context.Background(), []Input{{Slices: []*pixel.Slice{slice}}, {Slices: []*pixel.Slice{slice}}})
	if err != nil || len(res) != 2 || res[0].Err != nil {
		t.Fatalf("process: %v %v", err, res)
	}
	if len(probe.seen) != 2 {
		t.Fatalf("scorer called %d times, want 2", len(probe.seen))
	}
	for i, v := range probe.seen {
		if v != n {
			t.Errorf("slice %d: model run and scored on a thread at niceness %d, want %d", i, v, n)
		}
	}
	if me, _ := nice.Current(); me != 0 {
		t.Errorf("the caller's thread is at niceness %d after Process, want 0", me)
	}
}
