package output

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"

	"anomalynode/dimse"
)

// openJS starts an embedded JetStream with its store in a temp folder.
func openJS(t *testing.T) jetstream.JetStream {
	t.Helper()
	js, stop := openJSAt(t, t.TempDir())
	t.Cleanup(stop)
	return js
}

// openJSAt starts an embedded JetStream storing under dir; stop shuts it down.
func openJSAt(t *testing.T, dir string) (jetstream.JetStream, func()) {
	t.Helper()
	srv, err := server.NewServer(&server.Options{JetStream: true, StoreDir: dir, DontListen: true, NoSigs: true, NoLog: true})
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
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js, func() { nc.Close(); srv.Shutdown(); srv.WaitForShutdown() }
}

func testLogger(t *testing.T) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)
}

// runQueue runs q until the test ends.
func runQueue(t *testing.T, q *Queue) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = q.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("queue did not stop within 20s")
		}
	})
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func fakeObject(i int) *Object {
	uid := DeriveUID("fake", fmt.Sprint(i))
	s := makeSeriesOnce()
	o, _ := BuildSEG(s, SEGOptions{})
	cp := *o
	// Reuse the real SEG bytes under distinct UIDs: the queue does not look inside.
	cp.SOPInstanceUID = uid
	return &cp
}

var (
	onceSeries sync.Once
	theSeries  *SeriesResult
)

func makeSeriesOnce() *SeriesResult {
	onceSeries.Do(func() {
		tb := &testing.T{}
		theSeries = makeSeries(tb, 2, 8, 8, true, 9).res
	})
	return theSeries
}

func TestQueueFolderAndStuckDestination(t *testing.T) {
	js := openJS(t)
	reg := prometheus.NewRegistry()
	dir := t.TempDir()
	stuck := make(chan struct{})
	var stuckCalls atomic.Int32
	q, err := NewQueue(context.Background(), js, QueueConfig{Prefix: "T", BackoffInitial: 20 * time.Millisecond}, []Destination{
		{Name: "folder", Sender: &Folder{Dir: dir}, Concurrency: 1},
		{Name: "stuck", Sender: SenderFunc(func(ctx context.Context, o *Object) error {
			stuckCalls.Add(1)
			select {
			case <-stuck:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}), Concurrency: 1, Timeout: time.Minute},
	}, testLogger(t), reg)
	if err != nil {
		t.Fatal(err)
	}
	runQueue(t, q)
	var objs []*Object
	for i := 0; i < 4; i++ {
		o := fakeObject(i)
		objs = append(objs, o)
		if err := q.Enqueue(context.Background(), o, "folder", "stuck"); err != nil {
			t.Fatal(err)
		}
	}
	// Enqueueing again is deduplicated.
	if err := q.Enqueue(context.Background(), objs[0], "folder"); err != nil {
		t.Fatal(err)
	}
	if err := q.Enqueue(context.Background(), objs[0], "nowhere"); !errors.Is(err, ErrUnknownDestination) {
		t.Fatalf("unknown destination: %v", err)
	}
	waitFor(t, "4 folder deliveries while the other destination hangs", 10*time.Second, func() bool {
		return value(q.m.delivered.WithLabelValues("folder")) == 4
	})
	if n := stuckCalls.Load(); n != 1 {
		t.Errorf("stuck destination has %d deliveries in flight, its limit is 1", n)
	}
	for _, o := range objs {
		p := filepath.Join(dir, o.StudyInstanceUID, o.SeriesInstanceUID, o.SOPInstanceUID+".dcm")
		b, err := os.ReadFile(p)
		if err != nil || len(b) != len(o.Part10) {
			t.Fatalf("folder copy of %s: %v", o.SOPInstanceUID, err)
		}
	}
	waitFor(t, "the queue depth gauge to show the stuck destination's 4 jobs", 10*time.Second, func() bool {
		return value(q.m.depth.WithLabelValues("stuck")) == 4
	})
	close(stuck)
	waitFor(t, "the stuck destination to catch up", 10*time.Second, func() bool {
		return value(q.m.delivered.WithLabelValues("stuck")) == 4
	})
	time.Sleep(200 * time.Millisecond)
	if got := value(q.m.delivered.WithLabelValues("folder")); got != 4 {
		t.Errorf("folder deliveries %v after a duplicate enqueue, want 4", got)
	}
}

// a700SCP is a C-STORE SCP of ours that answers A700 (out of resources)
// while full is set, and records what it stored.
type a700SCP struct {
	full     atomic.Bool
	attempts atomic.Int32
	mu       sync.Mutex
	stored   map[string]int
}

func (s *a700SCP) ServeStore(ctx context.Context, req *dimse.StoreRequest) (dimse.Status, error) {
	s.attempts.Add(1)
	if s.full.Load() {
		return dimse.StatusOutOfResources, errors.New("disk full")
	}
	s.mu.Lock()
	s.stored[req.SOPInstanceUID]++
	s.mu.Unlock()
	return dimse.StatusSuccess, nil
}

func startSCP(t *testing.T, h dimse.StoreHandler) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := dimse.NewServer(dimse.ServerConfig{AETitle: "FULLSCP", SOPClasses: []string{SegmentationStorage, SecondaryCaptureImageStorage, dimse.VerificationSOPClass}}, h, zerolog.Nop(), nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = srv.Serve(ctx, l); close(done) }()
	t.Cleanup(func() { cancel(); _ = l.Close(); <-done })
	return l.Addr().String()
}

func TestQueueA700RetriedDeadLetteredReplayed(t *testing.T) {
	js := openJS(t)
	scp := &a700SCP{stored: map[string]int{}}
	scp.full.Store(true)
	addr := startSCP(t, scp)
	reg := prometheus.NewRegistry()
	dest := Destination{Name: "pacs", Sender: &CStore{Addr: addr, Config: dimse.ClientConfig{CallingAE: "ANOMALYNODE", CalledAE: "FULLSCP"}}, Concurrency: 2, Timeout: 10 * time.Second}
	q, err := NewQueue(context.Background(), js, QueueConfig{Prefix: "T", MaxAttempts: 3, BackoffInitial: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond}, []Destination{dest}, testLogger(t), reg)
	if err != nil {
		t.Fatal(err)
	}
	runQueue(t, q)
	obj, err := BuildSEG(makeSeries(t, 3, 37, 29, true, 5).res, SEGOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Enqueue(context.Background(), obj, "pacs"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the A700 job to be dead-lettered", 15*time.Second, func() bool {
		return value(q.m.dead.WithLabelValues("pacs")) == 1
	})
	if got := scp.attempts.Load(); got != 3 {
		t.Errorf("SCP saw %d attempts, want 3 (max_attempts)", got)
	}
	if got := value(q.m.retried.WithLabelValues("pacs")); got != 2 {
		t.Errorf("retried %v, want 2", got)
	}
	if got := value(q.m.delivered.WithLabelValues("pacs")); got != 0 {
		t.Errorf("delivered %v after A700 only, want 0", got)
	}
	dead, err := q.DeadLetters(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 || dead[0].Job.SOPInstanceUID != obj.SOPInstanceUID || dead[0].Job.Attempts != 3 {
		t.Fatalf("dead letters %+v", dead)
	}
	t.Logf("dead letter: %+v", dead[0].Job)

	// The operator frees the disk and replays: it is delivered, once.
	scp.full.Store(false)
	n, err := q.Replay(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("replay: %d, %v", n, err)
	}
	waitFor(t, "the replayed job to be delivered", 15*time.Second, func() bool {
		return value(q.m.delivered.WithLabelValues("pacs")) == 1
	})
	scp.mu.Lock()
	defer scp.mu.Unlock()
	if scp.stored[obj.SOPInstanceUID] != 1 || len(scp.stored) != 1 {
		t.Errorf("SCP stored %v", scp.stored)
	}
	if dead, _ := q.DeadLetters(context.Background()); len(dead) != 0 {
		t.Errorf("dead letters after replay: %+v", dead)
	}
}

func TestBackoff(t *testing.T) {
	q := &Queue{cfg: QueueConfig{BackoffInitial: time.Second, BackoffMax: 10 * time.Second}.withDefaults()}
	for attempt, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 8 * time.Second, 5: 10 * time.Second, 30: 10 * time.Second} {
		for i := 0; i < 50; i++ {
			if d := q.backoff(attempt); d < want/2 || d > want {
				t.Fatalf("attempt %d: backoff %v outside [%v, %v]", attempt, d, want/2, want)
			}
		}
	}
}

// value reads a counter or gauge.
func value(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

// TestQueueSurvivesRestart enqueues jobs, stops JetStream before any
// delivery, starts it again from the same store, and delivers them all.
func TestQueueSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	js, stop := openJSAt(t, dir)
	q, err := NewQueue(context.Background(), js, QueueConfig{Prefix: "T"}, nil, zerolog.Nop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if err := q.Enqueue(context.Background(), fakeObject(300+i), "share"); err != nil {
			t.Fatal(err)
		}
	}
	stop()

	js, stop = openJSAt(t, dir)
	defer stop()
	out := t.TempDir()
	q, err = NewQueue(context.Background(), js, QueueConfig{Prefix: "T"}, []Destination{{Name: "share", Sender: &Folder{Dir: out}}}, testLogger(t), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	runQueue(t, q)
	waitFor(t, "3 deliveries after the restart", 10*time.Second, func() bool { return value(q.m.delivered.WithLabelValues("share")) == 3 })
	files, _ := filepath.Glob(filepath.Join(out, "*", "*", "*.dcm"))
	if len(files) != 3 {
		t.Fatalf("%d files delivered, want 3", len(files))
	}
}

// TestEnqueueTwiceLeavesNoObject enqueues an object twice (a retried
// enqueue): it is delivered once and the object store ends up empty.
func TestEnqueueTwiceLeavesNoObject(t *testing.T) {
	js := openJS(t)
	q, err := NewQueue(context.Background(), js, QueueConfig{Prefix: "T"}, []Destination{{Name: "share", Sender: &Folder{Dir: t.TempDir()}}}, testLogger(t), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	o := fakeObject(400)
	for i := 0; i < 2; i++ {
		if err := q.Enqueue(context.Background(), o, "share"); err != nil {
			t.Fatal(err)
		}
	}
	runQueue(t, q)
	waitFor(t, "delivery", 10*time.Second, func() bool { return value(q.m.delivered.WithLabelValues("share")) == 1 })
	// Enqueued again after delivery, inside the duplicate window: nothing
	// new is queued and nothing is left behind.
	if err := q.Enqueue(context.Background(), o, "share"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if got := value(q.m.delivered.WithLabelValues("share")); got != 1 {
		t.Errorf("delivered %v times, want 1", got)
	}
	lister, err := q.objects.List(context.Background())
	if err != nil && !errors.Is(err, jetstream.ErrNoObjectsFound) {
		t.Fatal(err)
	}
	if len(lister) != 0 {
		t.Errorf("object store still holds %d objects", len(lister))
	}
}
