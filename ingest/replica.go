package ingest

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Reads of a replicated bucket can race replication: the object buckets are
// created with allow_direct, so a read may be answered by a replica that has
// not stored a just-written object yet (not found), or has stored only part
// of it (digest mismatch). Such an answer is not the truth about the object,
// so it is retried for a short while before anyone acts on it.

// DefaultReadRaceBudget is how long ReadRetrying keeps retrying a read that
// may have raced replication. Replication between healthy peers takes
// milliseconds; a replica catching up after a restart may take seconds.
const DefaultReadRaceBudget = 10 * time.Second

var readRaceBudget atomic.Int64

func init() { readRaceBudget.Store(int64(DefaultReadRaceBudget)) }

// SetReadRaceBudget changes the retry budget of ReadRetrying (tests shorten
// it) and returns the previous one.
func SetReadRaceBudget(d time.Duration) time.Duration {
	return time.Duration(readRaceBudget.Swap(int64(d)))
}

// MayBeReplicationRace reports whether err is an answer a lagging replica
// gives for an object that exists (not found, digest mismatch, a message or
// key not found): worth retrying, never a reason to give up at once.
func MayBeReplicationRace(err error) bool {
	return errors.Is(err, jetstream.ErrObjectNotFound) || errors.Is(err, jetstream.ErrDigestMismatch) ||
		errors.Is(err, jetstream.ErrMsgNotFound) || errors.Is(err, jetstream.ErrKeyNotFound)
}

// ReadRetrying runs read until it succeeds, fails with an error that is not
// a replication race, ctx is done, or the read race budget (SetReadRaceBudget) has passed; between
// attempts it waits 20 ms, doubling up to 1 s. It returns the last error, and
// how many attempts it took.
func ReadRetrying[T any](ctx context.Context, read func(context.Context) (T, error)) (T, int, error) {
	deadline := time.Now().Add(time.Duration(readRaceBudget.Load()))
	wait := 20 * time.Millisecond
	for attempt := 1; ; attempt++ {
		v, err := read(ctx)
		if err == nil || !MayBeReplicationRace(err) || time.Now().Add(wait).After(deadline) {
			return v, attempt, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return v, attempt, err
		case <-t.C:
		}
		wait = min(2*wait, time.Second)
	}
}
