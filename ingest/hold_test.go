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

// TestFailedAckRedelivered: a slice whose Ack fails (its series update never
// answered: a KV round trip lost while a NATS server of the cluster
// restarted) is no longer held, so it comes back and its series completes.
// The heartbeat used to go on signalling progress for it for maxHold (10
// minutes), leaving the series open long after the failure.
func TestFailedAckRedelivered(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.Ingest.AckWait = time.Second
	svc, _ := newTestService(t, cfg)
	accept(t, svc, inst{series: "8.2", sop: "8.2.1"})
	var mu sync.Mutex
	var deliveries []int
	var ackErr error
	rec := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go svc.Run(ctx, Consumers{
		Slices: SliceConsumerFunc(func(ctx context.Context, s *Slice) error {
			mu.Lock()
			deliveries = append(deliveries, s.Delivery)
			first := len(deliveries) == 1
			mu.Unlock()
			if !first {
				return s.Ack(ctx)
			}
			// Queued for a model, then the acknowledgement fails: the
			// stand-in for a series update whose answer never came.
			s.Hold()
			go func() {
				dead, stop := context.WithCancel(ctx)
				stop()
				err := s.Ack(dead)
				mu.Lock()
				ackErr = err
				mu.Unlock()
			}()
			return nil
		}),
		Completions: rec,
	})
	waitFor(t, 10*time.Second, "the slice to be redelivered after its failed Ack and its series to complete", func() bool {
		_, c := rec.counts()
		return c == 1
	})
	mu.Lock()
	defer mu.Unlock()
	if ackErr == nil {
		t.Fatal("Ack with a cancelled context succeeded")
	}
	if len(deliveries) != 2 || deliveries[1] != 2 {
		t.Fatalf("deliveries %v, want [1 2]", deliveries)
	}
	if n := svc.held.count(); n != 0 {
		t.Fatalf("%d items still held", n)
	}
}
