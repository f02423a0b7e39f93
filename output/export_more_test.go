package output

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"anomalynode/dimse"
)

// scriptedSCP answers the n-th C-STORE with script[n] (the last entry repeats).
// A nil entry panics in the handler, which aborts the association after it
// was accepted: the SCU saw an association but no response.
type scriptedSCP struct {
	script []*dimse.Status
	calls  atomic.Int32
}

func (s *scriptedSCP) ServeStore(ctx context.Context, req *dimse.StoreRequest) (dimse.Status, error) {
	n := int(s.calls.Add(1)) - 1
	st := s.script[min(n, len(s.script)-1)]
	if st == nil {
		panic("scripted abort")
	}
	return *st, nil
}

func status(s dimse.Status) *dimse.Status { return &s }

func TestCStoreStatuses(t *testing.T) {
	tests := []struct {
		name                   string
		script                 []*dimse.Status
		wantCalls              int32
		wantRetried, wantDelay float64
	}{
		{"success", []*dimse.Status{status(dimse.StatusSuccess)}, 1, 0, 0},
		{"warning counts as delivered", []*dimse.Status{status(dimse.StatusWarningCoercion)}, 1, 0, 0},
		{"an association without a response is not delivered", []*dimse.Status{nil, status(dimse.StatusSuccess)}, 2, 1, 0},
		{"cannot understand is retried", []*dimse.Status{status(dimse.StatusCannotUnderstand), status(dimse.StatusSuccess)}, 2, 1, 0},
	}
	obj := fakeObject(1)
	obj.SOPClassUID = SegmentationStorage
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			scp := &scriptedSCP{script: tc.script}
			addr := startSCP(t, scp)
			q, err := NewQueue(context.Background(), openJS(t), QueueConfig{Prefix: "T", BackoffInitial: 20 * time.Millisecond, BackoffMax: 50 * time.Millisecond},
				[]Destination{{Name: "pacs", Sender: &CStore{Addr: addr, Config: dimse.ClientConfig{CalledAE: "FULLSCP", DialTimeout: 2 * time.Second, DIMSETimeout: 2 * time.Second}}, Timeout: 5 * time.Second}},
				testLogger(t), prometheus.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			runQueue(t, q)
			if err := q.Enqueue(context.Background(), obj, "pacs"); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "delivery", 15*time.Second, func() bool { return value(q.m.delivered.WithLabelValues("pacs")) == 1 })
			time.Sleep(100 * time.Millisecond)
			if got := scp.calls.Load(); got != tc.wantCalls {
				t.Errorf("SCP answered %d C-STOREs, want %d", got, tc.wantCalls)
			}
			if got := value(q.m.retried.WithLabelValues("pacs")); got != tc.wantRetried {
				t.Errorf("retried %v, want %v", got, tc.wantRetried)
			}
			if got := value(q.m.delivered.WithLabelValues("pacs")); got != 1 {
				t.Errorf("delivered %v, want 1", got)
			}
		})
	}
}

func TestQueueMaxAgeAndConcurrency(t *testing.T) {
	js := openJS(t)
	var inFlight, peak atomic.Int32
	var mu sync.Mutex
	slow := SenderFunc(func(ctx context.Context, o *Object) error {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		mu.Lock()
		if n > peak.Load() {
			peak.Store(n)
		}
		mu.Unlock()
		time.Sleep(60 * time.Millisecond)
		return nil
	})
	failing := SenderFunc(func(context.Context, *Object) error { return errors.New("connection refused") })
	q, err := NewQueue(context.Background(), js, QueueConfig{Prefix: "T", MaxAttempts: 1000, MaxAge: 300 * time.Millisecond, BackoffInitial: 50 * time.Millisecond, BackoffMax: 100 * time.Millisecond},
		[]Destination{{Name: "slow", Sender: slow, Concurrency: 3}, {Name: "down", Sender: failing, Concurrency: 1}}, testLogger(t), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	runQueue(t, q)
	for i := 0; i < 12; i++ {
		if err := q.Enqueue(context.Background(), fakeObject(100+i), "slow"); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Enqueue(context.Background(), fakeObject(200), "down"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "12 deliveries", 20*time.Second, func() bool { return value(q.m.delivered.WithLabelValues("slow")) == 12 })
	if p := peak.Load(); p != 3 {
		t.Errorf("peak concurrency %d, want exactly the limit 3", p)
	}
	waitFor(t, "the too-old job to be dead-lettered", 20*time.Second, func() bool { return value(q.m.dead.WithLabelValues("down")) == 1 })
	dead, err := q.DeadLetters(context.Background())
	if err != nil || len(dead) != 1 || dead[0].Job.Attempts >= 1000 {
		t.Fatalf("dead letters %+v, %v", dead, err)
	}
	t.Logf("dead-lettered by age after %d attempts", dead[0].Job.Attempts)
}
