package ingest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// poisonConsumer panics on one SOP Instance UID every time and acknowledges
// the others.
type poisonConsumer struct {
	recorder
	poison string
}

func (p *poisonConsumer) ConsumeSlice(ctx context.Context, s *Slice) error {
	p.mu.Lock()
	poison := p.poison
	p.mu.Unlock()
	if s.SOPInstanceUID == poison {
		var m map[string]int
		m["boom"]++ // a nil map write: a real runtime panic
	}
	return p.recorder.ConsumeSlice(ctx, s)
}

// TestPoisonSliceSetAside: a slice whose consumer panics on every delivery
// does not stop Run; it is retried a bounded number of times, then set aside
// (listed, counted), and its series completes with the other slices.
func TestPoisonSliceSetAside(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.Ingest.MaxDeliver = 3
	svc, js := newTestService(t, cfg)
	svc.retryDelay = func(int) time.Duration { return 10 * time.Millisecond }
	for i := 1; i <= 3; i++ {
		accept(t, svc, inst{series: "1.9", sop: fmt.Sprintf("1.9.%d", i), number: i, z: float64(i), images: 3})
	}
	rec := &poisonConsumer{poison: "1.9.2"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- svc.Run(ctx, Consumers{Slices: rec, Completions: rec}) }()
	waitFor(t, 15*time.Second, "the series to complete without the poison slice", func() bool { _, c := rec.counts(); return c == 1 })
	if n := rec.ackedCount(); n != 2 {
		t.Fatalf("%d slices acknowledged, want 2", n)
	}
	select {
	case err := <-runErr:
		t.Fatalf("Run stopped: %v", err)
	default:
	}
	dead, err := ListDeadWork(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 || dead[0].SOPInstanceUID != "1.9.2" || dead[0].Stage != StageSlice || dead[0].Attempts != 3 ||
		dead[0].Seq == 0 || dead[0].SeriesInstanceUID != "1.9" {
		t.Fatalf("dead work: %+v", dead)
	}
	if got := counterValue(svc.m.deadLettered.WithLabelValues(StageSlice)); got != 1 {
		t.Fatalf("dead-lettered slices counted %v, want 1", got)
	}
	rec.mu.Lock()
	c := rec.completions[0]
	rec.mu.Unlock()
	if len(c.Instances) != 3 {
		t.Fatalf("completion lists %d instances, want 3", len(c.Instances))
	}

	// The cause fixed, the operator replays it: the slice is processed and
	// its series completes again as version 2.
	rec.mu.Lock()
	rec.poison = ""
	rec.mu.Unlock()
	if n, err := svc.ReplayDeadWork(ctx); err != nil || n != 1 {
		t.Fatalf("replayed %d, %v", n, err)
	}
	waitFor(t, 15*time.Second, "the replayed slice and the series' second version", func() bool {
		_, c := rec.counts()
		return c == 2 && rec.ackedCount() == 3
	})
	rec.mu.Lock()
	c = rec.completions[1]
	rec.mu.Unlock()
	if c.Version != 2 || len(c.Instances) != 3 {
		t.Fatalf("second completion: version %d, %d instances", c.Version, len(c.Instances))
	}
	if dead, err := ListDeadWork(ctx, js); err != nil || len(dead) != 0 {
		t.Fatalf("dead work after replay: %+v, %v", dead, err)
	}
}

// failingCompletions fails every completion.
type failingCompletions struct{ n int }

func (f *failingCompletions) ConsumeCompletion(ctx context.Context, c *SeriesCompletion) error {
	f.n++
	return errors.New("finaliser failed")
}

// TestPoisonCompletionSetAside: a completion that always fails is set aside
// after its bounded deliveries instead of being retried for ever.
func TestPoisonCompletionSetAside(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.Ingest.MaxDeliver = 2
	svc, js := newTestService(t, cfg)
	svc.retryDelay = func(int) time.Duration { return 10 * time.Millisecond }
	accept(t, svc, inst{series: "1.10", sop: "1.10.1", images: 1})
	fc := &failingCompletions{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go svc.Run(ctx, Consumers{Slices: &recorder{}, Completions: fc})
	waitFor(t, 15*time.Second, "the completion set aside", func() bool {
		return counterValue(svc.m.deadLettered.WithLabelValues(StageCompletion)) == 1
	})
	dead, err := ListDeadWork(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 || dead[0].Stage != StageCompletion || dead[0].SeriesInstanceUID != "1.10" || dead[0].Attempts != 2 {
		t.Fatalf("dead work: %+v", dead)
	}
}
