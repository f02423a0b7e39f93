package ingest

import (
	"context"
	"encoding/json"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// queuedSOPs lists the SOP Instance UIDs of the work stream's messages.
func queuedSOPs(t *testing.T, js *JS, svc *Service) []string {
	t.Helper()
	ctx := context.Background()
	st, err := js.JetStream.Stream(ctx, svc.workName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var sops []string
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			continue // deleted
		}
		var it workItem
		if err := json.Unmarshal(m.Data, &it); err != nil {
			t.Fatal(err)
		}
		sops = append(sops, it.SOPInstanceUID)
	}
	sort.Strings(sops)
	return sops
}

// TestRequeueLostWorkItems: the work stream of a node with instance files
// flushes in batches; work items it lost (here: purged) are queued again at
// start from the data sets stored in the last requeueWindow, once each, and
// none older.
func TestRequeueLostWorkItems(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t, t.TempDir())
	svc, js := newTestService(t, cfg)
	st, err := js.JetStream.Stream(ctx, svc.workName)
	if err != nil {
		t.Fatal(err)
	}
	if !svc.workAsync || st.CachedInfo().Config.PersistMode != jetstream.AsyncPersistMode {
		t.Fatalf("work stream: workAsync %v, persist mode %v; want asynchronous", svc.workAsync, st.CachedInfo().Config.PersistMode)
	}
	// One data set stored long before the others, as a file of its own.
	segs := svc.files.segs
	svc.files.segs = nil
	old := inst{series: "9.7", sop: "9.7.0", pixels: 4096}
	accept(t, svc, old)
	svc.files.segs = segs
	_, path := svc.files.path(old.sop)
	long := time.Now().Add(-2 * requeueWindow)
	if err := os.Chtimes(path, long, long); err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range 5 {
		in := inst{series: "9.7", sop: "9.7." + itoa(i+1), z: float64(i + 1), pixels: 64 * 64 * 2}
		accept(t, svc, in)
		want = append(want, in.sop)
	}
	if m, _, found, err := svc.files.get(want[0]); !found || err != nil || len(m.Work) == 0 {
		t.Fatalf("record of %s: found %v, %v, work item kept %q", want[0], found, err, m.Work)
	}
	// The queue's last writes lost (a power cut before its flush).
	if err := st.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	js.Close()

	svc2, js2 := newTestService(t, cfg)
	if got := queuedSOPs(t, js2, svc2); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("queued after restart %v, want %v (the data sets of the last %v)", got, want, requeueWindow)
	}
	js2.Close()
	// A restart with nothing lost queues nothing twice.
	svc3, js3 := newTestService(t, cfg)
	if got := queuedSOPs(t, js3, svc3); len(got) != len(want) {
		t.Fatalf("queued after a second restart %v, want %v once each", got, want)
	}
	rec := &recorder{}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go svc3.Run(rctx, Consumers{Slices: rec})
	waitFor(t, 10*time.Second, "the queued again slices acknowledged", func() bool { return rec.ackedCount() == len(want) })
}

// TestWorkStreamPersistMode: a work stream made synced by an earlier version
// stays synced (no work item kept with the data set); one made for instance
// files cannot serve a node that keeps the data sets in the instance stream.
func TestWorkStreamPersistMode(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t, t.TempDir())
	js, err := OpenJetStream(ctx, cfg.NATS, cfg.Node.DataDir, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.JetStream.CreateStream(ctx, jetstream.StreamConfig{
		Name: js.Name("WORK"), Subjects: []string{js.Subject("work.slice")},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage, Duplicates: cfg.Ingest.DuplicateWindow,
	}); err != nil {
		t.Fatal(err)
	}
	js.Close()
	svc, _ := newTestService(t, cfg)
	if svc.workAsync {
		t.Fatal("a work stream made synced became asynchronous")
	}
	in := inst{series: "9.8", sop: "9.8.1", pixels: 4096}
	if r := accept(t, svc, in); r.Outcome != Stored {
		t.Fatalf("accept: %v", r.Outcome)
	}
	if m, _, _, err := svc.files.get(in.sop); err != nil || len(m.Work) != 0 {
		t.Fatalf("record with a synced work stream: %v, work item %q (want none)", err, m.Work)
	}

	cfg2 := testConfig(t, t.TempDir())
	_, js2 := newTestService(t, cfg2)
	js2.Close()
	cfg2.Ingest.InstanceStore = "stream"
	js3, err := OpenJetStream(ctx, cfg2.NATS, cfg2.Node.DataDir, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer js3.Close()
	_, err = NewService(ctx, js3, cfg2, testLogger(t), prometheus.NewRegistry())
	if err == nil || !strings.Contains(err.Error(), "made for instance files") {
		t.Fatalf("instance stream on a work stream made for files: %v, want an error saying so", err)
	}
}
