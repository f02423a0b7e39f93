// Package jsconsume is the one loop the node's JetStream consumers run (the
// ingest slice and completion consumers, each export destination's workers):
// pull messages, hand each to the stage's handler, wait and pull again after
// a failed pull, and stop when the context ends. What a handler does with a
// message (ack, nak with a delay, dead-letter) stays the stage's own.
package jsconsume

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Options says how Run pulls.
type Options struct {
	// Name prefixes Run's errors and log lines ("ingest: consume slices").
	Name string
	// Prefetch above 1 streams messages, keeping up to Prefetch pulled
	// ahead of the handler: throughput for quick handlers. 0 or 1 fetches
	// one message only when the handler is free, so a slow handler (a
	// destination taking minutes) never holds a message it has not started
	// while its AckWait runs.
	Prefetch int
	// FetchWait bounds one fetch (one message at a time); default 1s.
	FetchWait time.Duration
	// RetryDelay is the wait after a failed fetch before the next; default 1s.
	RetryDelay time.Duration
	// Log receives failed fetches.
	Log zerolog.Logger
}

// Handler handles one message; ctx is Run's.
type Handler func(ctx context.Context, msg jetstream.Msg)

// Run pulls from cons and calls handle for each message, one at a time, until
// ctx is done (then it returns nil). One message at a time, a failed fetch is
// logged and retried after RetryDelay: a fetch is one request, and a broken
// connection heals. Streaming, the iterator re-pulls through transient
// failures itself, so an error it returns is final and is Run's error.
func Run(ctx context.Context, cons jetstream.Consumer, o Options, handle Handler) error {
	if o.Prefetch > 1 {
		return stream(ctx, cons, o, handle)
	}
	return fetch(ctx, cons, o, handle)
}

func stream(ctx context.Context, cons jetstream.Consumer, o Options, handle Handler) error {
	it, err := cons.Messages(jetstream.PullMaxMessages(o.Prefetch))
	if err != nil {
		return fmt.Errorf("%s: %w", o.Name, err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer func() {
		if stop() {
			it.Stop()
		}
	}()
	for {
		msg, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) || ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("%s: %w", o.Name, err)
		}
		handle(ctx, msg)
	}
}

func fetch(ctx context.Context, cons jetstream.Consumer, o Options, handle Handler) error {
	wait, retry := o.FetchWait, o.RetryDelay
	if wait <= 0 {
		wait = time.Second
	}
	if retry <= 0 {
		retry = time.Second
	}
	for ctx.Err() == nil {
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(wait))
		if err != nil {
			if ctx.Err() == nil {
				o.Log.Warn().Err(err).Msg(o.Name + ": fetch failed")
				sleep(ctx, retry)
			}
			continue
		}
		for msg := range batch.Messages() {
			handle(ctx, msg)
		}
	}
	return nil
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// KeepInProgress tells the server every interval that msg is still being
// worked on, until ctx is done, so a handler slower than AckWait keeps its
// message instead of seeing it redelivered to another worker. Run it in its
// own goroutine; interval is typically AckWait/3.
func KeepInProgress(ctx context.Context, msg jetstream.Msg, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = msg.InProgress()
		}
	}
}
