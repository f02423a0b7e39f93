package ingest

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestHeldSliceNotRedelivered: a consumer that holds a slice (Hold, then
// acknowledges 3.5 ack_waits later) is not redelivered meanwhile: the node
// signals progress. A completion whose consumer works for 3.5 ack_waits is
// not redelivered either. (TestUnackedRedelivered is the other half: a slice
// nobody holds is redelivered after ack_wait.)
func TestHeldSliceNotRedelivered(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.Ingest.AckWait = time.Second
	svc, _ := newTestService(t, cfg)
	accept(t, svc, inst{series: "8.1", sop: "8.1.1"})
	var mu sync.Mutex
	var slices, completions int
	held := 3500 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go svc.Run(ctx, Consumers{
		Slices: SliceConsumerFunc(func(ctx context.Context, s *Slice) error {
			mu.Lock()
			slices++
			mu.Unlock()
			s.Hold()
			go func() {
				time.Sleep(held)
				if err := s.Ack(ctx); err != nil {
					t.Error(err)
				}
			}()
			return nil
		}),
		Completions: CompletionConsumerFunc(func(ctx context.Context, c *SeriesCompletion) error {
			mu.Lock()
			completions++
			mu.Unlock()
			time.Sleep(held)
			return c.Ack(ctx)
		}),
	})
	waitFor(t, 20*time.Second, "the completion to be acknowledged", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return completions == 1 && svc.held.count() == 0
	})
	time.Sleep(1500 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if slices != 1 || completions != 1 {
		t.Fatalf("%d slice and %d completion deliveries, want 1 and 1", slices, completions)
	}
}
