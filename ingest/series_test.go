package ingest

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// lostReplyKV is a series bucket whose first Update is applied by the server
// but whose answer never arrives (the client waits until its context ends):
// what a request sees when the NATS server it went through is shut down
// before replying.
type lostReplyKV struct {
	jetstream.KeyValue
	lost atomic.Int32
}

func (kv *lostReplyKV) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	n, err := kv.KeyValue.Update(ctx, key, value, rev)
	if err != nil || kv.lost.Add(1) > 1 {
		return n, err
	}
	<-ctx.Done()
	return 0, ctx.Err()
}

// TestSeriesUpdateLostReply: a series update whose answer is lost is retried
// after one round-trip bound (and found applied), instead of waiting out the
// caller's whole deadline: the inference worker gives an Ack a minute, and a
// minute lost per slice on every NATS failover left series open that long.
func TestSeriesUpdateLostReply(t *testing.T) {
	svc, _ := newTestService(t, testConfig(t, t.TempDir()))
	svc.roundTrip = 200 * time.Millisecond
	ctx := context.Background()
	it := &workItem{SOPInstanceUID: "9.1.1", SeriesInstanceUID: "9.1", Frames: 1}
	if _, _, err := svc.trackInstance(ctx, it); err != nil {
		t.Fatal(err)
	}
	kv := &lostReplyKV{KeyValue: svc.series}
	svc.series = kv
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	start := time.Now()
	if err := svc.markDone(ctx, "9.1", "9.1.1"); err != nil {
		t.Fatalf("markDone after a lost reply: %v", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("markDone took %v after a lost reply, want about one round-trip bound (%v)", took, svc.roundTrip)
	}
	if kv.lost.Load() < 1 {
		t.Fatal("no update went through the lossy bucket")
	}
	_, done, err := svc.trackInstance(ctx, it)
	if err != nil {
		t.Fatal(err)
	}
	if !done {
		t.Fatal("the instance is not marked done in its series")
	}
}
