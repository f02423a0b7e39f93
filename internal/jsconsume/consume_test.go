package jsconsume

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// consumer starts an embedded JetStream holding n messages on a work-queue
// stream and returns a consumer of it with the given AckWait (0: default).
func consumer(t *testing.T, n int, ackWait time.Duration) jetstream.Consumer {
	t.Helper()
	srv, err := server.NewServer(&server.Options{JetStream: true, StoreDir: t.TempDir(), DontListen: true, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("embedded NATS did not start")
	}
	nc, err := nats.Connect("", nats.InProcessServer(srv))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close(); srv.Shutdown(); srv.WaitForShutdown() })
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "W", Subjects: []string{"w.>"}, Retention: jetstream.WorkQueuePolicy})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := js.Publish(ctx, "w.x", []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	cons, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "c", AckPolicy: jetstream.AckExplicitPolicy, AckWait: ackWait})
	if err != nil {
		t.Fatal(err)
	}
	return cons
}

// TestRunDeliversInOrderAndStops: both pull modes hand every message to the
// handler once, in stream order, and return nil when ctx ends.
func TestRunDeliversInOrderAndStops(t *testing.T) {
	for _, prefetch := range []int{1, 64} {
		t.Run(fmt.Sprint("prefetch=", prefetch), func(t *testing.T) {
			const n = 10
			cons := consumer(t, n, 0)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var mu sync.Mutex
			var got []string
			done := make(chan error, 1)
			go func() {
				done <- Run(ctx, cons, Options{Name: "test", Prefetch: prefetch, FetchWait: 100 * time.Millisecond, Log: zerolog.Nop()},
					func(ctx context.Context, msg jetstream.Msg) {
						mu.Lock()
						got = append(got, string(msg.Data()))
						if len(got) == n {
							cancel()
						}
						mu.Unlock()
						_ = msg.Ack()
					})
			}()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("Run did not stop after its context ended")
			}
			mu.Lock()
			defer mu.Unlock()
			if len(got) != n {
				t.Fatalf("handled %d messages, want %d: %v", len(got), n, got)
			}
			for i, s := range got {
				if s != fmt.Sprint(i) {
					t.Fatalf("message %d is %q, want %d (order %v)", i, s, i, got)
				}
			}
		})
	}
}

// TestKeepInProgressHoldsMessage: a handler slower than AckWait keeps its
// message (no redelivery) while KeepInProgress runs.
func TestKeepInProgressHoldsMessage(t *testing.T) {
	cons := consumer(t, 1, 300*time.Millisecond)
	ctx := context.Background()
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	msg := <-batch.Messages()
	if msg == nil {
		t.Fatal("no message")
	}
	hctx, stop := context.WithCancel(ctx)
	go KeepInProgress(hctx, msg, 100*time.Millisecond)
	// Three AckWaits pass while the message is held.
	again, err := cons.Fetch(1, jetstream.FetchMaxWait(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range again.Messages() {
		t.Fatalf("message redelivered while in progress: %q", m.Data())
	}
	stop()
	// Without the heartbeat it comes back after AckWait.
	later, err := cons.Fetch(1, jetstream.FetchMaxWait(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for range later.Messages() {
		n++
	}
	if n != 1 {
		t.Fatalf("after the heartbeat stopped, %d redeliveries, want 1", n)
	}
}
