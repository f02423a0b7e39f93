package ingest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func TestReadRetrying(t *testing.T) {
	ctx := context.Background()
	// Not found twice, a digest mismatch once, then the object: four reads.
	answers := []error{jetstream.ErrObjectNotFound, fmt.Errorf("wrapped: %w", jetstream.ErrObjectNotFound), jetstream.ErrDigestMismatch, nil}
	i := 0
	v, n, err := ReadRetrying(ctx, func(context.Context) (int, error) {
		err := answers[i]
		i++
		if err != nil {
			return 0, err
		}
		return 42, nil
	})
	if err != nil || v != 42 || n != 4 {
		t.Fatalf("got %v after %d attempts, %v; want 42 after 4", v, n, err)
	}
	// Another error is returned at once.
	boom := errors.New("boom")
	_, n, err = ReadRetrying(ctx, func(context.Context) (int, error) { return 0, boom })
	if !errors.Is(err, boom) || n != 1 {
		t.Fatalf("other error: %d attempts, %v", n, err)
	}
	// A race that never resolves ends with the budget.
	old := SetReadRaceBudget(200 * time.Millisecond)
	defer SetReadRaceBudget(old)
	start := time.Now()
	_, n, err = ReadRetrying(ctx, func(context.Context) (int, error) { return 0, jetstream.ErrObjectNotFound })
	if !errors.Is(err, jetstream.ErrObjectNotFound) || n < 3 || time.Since(start) > 2*time.Second {
		t.Fatalf("unresolved race: %d attempts in %v, %v", n, time.Since(start), err)
	}
}
