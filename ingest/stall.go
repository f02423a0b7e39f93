package ingest

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// ErrStoreTimeout: the store made no progress on an offered instance for
// ingest.store_timeout (JetStream slow or unreachable, e.g. while a cluster
// elects a new leader). It matches ErrUnavailable, so the sender gets A700
// and retries, instead of waiting for a response that never comes.
var ErrStoreTimeout = fmt.Errorf("%w: no progress within ingest.store_timeout", ErrUnavailable)

// errStalled is the cancel cause of a stall watchdog's context.
var errStalled = errors.New("ingest: stalled")

// stallWatch cancels its context once progress was not reported for d:
// reading the sender's bytes is progress (the object store takes them as
// they come), so a large instance arriving slowly is never cut off, while a
// store that stops answering (or stops taking bytes) is given up on after d.
type stallWatch struct {
	last atomic.Int64 // unix nanoseconds of the last progress
}

// withStallTimeout returns a context that is cancelled (cause errStalled)
// when progress has not been called for d, the progress function, and the
// release function that stops the watchdog.
func withStallTimeout(ctx context.Context, d time.Duration) (context.Context, func(), context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	w := &stallWatch{}
	progress := func() { w.last.Store(time.Now().UnixNano()) }
	progress()
	go func() {
		t := time.NewTimer(d)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			idle := time.Since(time.Unix(0, w.last.Load()))
			if idle >= d {
				cancel(errStalled)
				return
			}
			t.Reset(d - idle)
		}
	}()
	return ctx, progress, func() { cancel(context.Canceled) }
}

// stalled reports whether ctx was cancelled by its stall watchdog.
func stalled(ctx context.Context) bool { return errors.Is(context.Cause(ctx), errStalled) }
