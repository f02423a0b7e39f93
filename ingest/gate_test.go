package ingest

import (
	"context"
	"testing"
	"time"
)

// TestGate: Wait passes at once while nothing is received, holds while an
// instance is being stored until the quiet time after it, and never longer
// than the bound.
func TestGate(t *testing.T) {
	const quiet, bound = 40 * time.Millisecond, 300 * time.Millisecond
	ctx := context.Background()
	g := newGate(quiet, bound)
	if d := g.Wait(ctx); d > 10*time.Millisecond {
		t.Fatalf("idle gate waited %v", d)
	}
	// An instance stored for 60 ms: Wait lasts until 40 ms after it.
	g.enter()
	go func() { time.Sleep(60 * time.Millisecond); g.leave() }()
	if d := g.Wait(ctx); d < 95*time.Millisecond || d >= bound {
		t.Fatalf("waited %v, want the store (60 ms) plus the quiet time (40 ms), below the bound", d)
	}
	// A sender that never pauses: Wait gives up at the bound.
	g.enter()
	if d := g.Wait(ctx); d < bound || d > bound+100*time.Millisecond {
		t.Fatalf("waited %v under a busy sender, want the bound %v", d, bound)
	}
	cctx, cancel := context.WithCancel(ctx)
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	if d := g.Wait(cctx); d > 150*time.Millisecond {
		t.Fatalf("waited %v after its context was cancelled", d)
	}
	g.leave()
	var none *Gate
	if d := none.Wait(ctx); d != 0 {
		t.Fatalf("nil gate waited %v", d)
	}
}
