package ingest

import (
	"context"
	"sync"
	"time"
)

// Receiving comes first. A scored slice's results and acknowledgement are
// synced writes on the same disk as the instances being received (about
// three times their bytes), and a sender waits on every instance's flush
// while nobody waits on a result's. So the stages behind ingest wait at the
// Gate before their writes while instances are being stored, for at most a
// bound, so scoring slows but never stops under a sender that never pauses.

// Gate tells the stages behind ingest when receiving is quiet.
type Gate struct {
	// quiet is how long after the last stored instance receiving counts as
	// paused (a sender's gap between two instances is well below it);
	// bound is the longest one Wait lasts.
	quiet, bound time.Duration

	mu     sync.Mutex
	active int
	last   time.Time
	// idle is closed when active drops to 0, then replaced.
	idle chan struct{}
}

// Gate defaults: a standard sender's gap between a response and its next
// instance is about a millisecond.
const (
	defaultGateQuiet = 20 * time.Millisecond
	defaultGateBound = 250 * time.Millisecond
)

func newGate(quiet, bound time.Duration) *Gate {
	return &Gate{quiet: quiet, bound: bound, idle: make(chan struct{})}
}

func (g *Gate) enter() {
	g.mu.Lock()
	g.active++
	g.mu.Unlock()
}

func (g *Gate) leave() {
	g.mu.Lock()
	g.active--
	g.last = time.Now()
	if g.active == 0 {
		close(g.idle)
		g.idle = make(chan struct{})
	}
	g.mu.Unlock()
}

// Wait returns once no instance has been stored for the quiet time, after
// the bound at the latest, or when ctx is done; it reports how long it
// waited. A nil Gate never waits.
func (g *Gate) Wait(ctx context.Context) time.Duration {
	if g == nil {
		return 0
	}
	start := time.Now()
	deadline := start.Add(g.bound)
	for {
		g.mu.Lock()
		active, last, idle := g.active, g.last, g.idle
		g.mu.Unlock()
		now := time.Now()
		if active == 0 && now.Sub(last) >= g.quiet || !now.Before(deadline) {
			return now.Sub(start)
		}
		wake := deadline.Sub(now)
		if active == 0 {
			wake = min(wake, g.quiet-now.Sub(last))
		}
		t := time.NewTimer(wake)
		select {
		case <-ctx.Done():
			t.Stop()
			return time.Since(start)
		case <-idle:
		case <-t.C:
		}
		t.Stop()
	}
}
