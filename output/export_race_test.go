package output

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"anomalynode/ingest"
)

// TestQueueObjectLagsJob is the view of a replica that has not stored the
// object yet when the job is fetched (allow_direct reads on a cluster): the
// job is published first and its object only 400 ms later. The delivery must
// wait for the object, not dead-letter the job on the first "not found". A
// job whose object never appears is dead-lettered, but only after several
// deliveries.
func TestQueueObjectLagsJob(t *testing.T) {
	js := openJS(t)
	dir := t.TempDir()
	q, err := NewQueue(context.Background(), js, QueueConfig{Prefix: "T", BackoffInitial: 20 * time.Millisecond, BackoffMax: 40 * time.Millisecond},
		[]Destination{{Name: "folder", Sender: &Folder{Dir: dir}, Concurrency: 1}}, testLogger(t), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	runQueue(t, q)
	ctx := context.Background()
	job := func(o *Object) Job {
		return Job{ID: "folder/" + o.SOPInstanceUID, Destination: "folder", SOPClassUID: o.SOPClassUID, SOPInstanceUID: o.SOPInstanceUID,
			TransferSyntaxUID: o.TransferSyntaxUID, StudyInstanceUID: o.StudyInstanceUID, SeriesInstanceUID: o.SeriesInstanceUID,
			Enqueued: time.Now().UTC(), Object: fmt.Sprintf("folder/%s#%016x", o.SOPInstanceUID, rand.Uint64())}
	}
	late := fakeObject(500)
	lj := job(late)
	if _, err := q.publishJob(ctx, lj); err != nil {
		t.Fatal(err)
	}
	time.Sleep(400 * time.Millisecond)
	if _, err := q.objects.PutBytes(ctx, lj.Object, late.Part10); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the late object to be delivered", 10*time.Second, func() bool { return value(q.m.delivered.WithLabelValues("folder")) == 1 })
	if _, err := os.Stat(filepath.Join(dir, late.StudyInstanceUID, late.SeriesInstanceUID, late.SOPInstanceUID+".dcm")); err != nil {
		t.Fatal(err)
	}
	if d := value(q.m.dead.WithLabelValues("folder")); d != 0 {
		t.Fatalf("%v jobs dead-lettered, want 0", d)
	}

	// An object that never appears: each delivery retries its read for the
	// budget, and the job is given up on at delivery objectGoneAttempts.
	old := ingestBudget(t, 150*time.Millisecond)
	defer old()
	gone := job(fakeObject(501))
	if _, err := q.publishJob(ctx, gone); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the job without an object to be dead-lettered", 20*time.Second, func() bool { return value(q.m.dead.WithLabelValues("folder")) == 1 })
	dl, err := q.DeadLetters(ctx)
	if err != nil || len(dl) != 1 {
		t.Fatalf("dead letters %v, %v", dl, err)
	}
	if dl[0].Job.Attempts != objectGoneAttempts {
		t.Errorf("dead-lettered at attempt %d, want %d", dl[0].Job.Attempts, objectGoneAttempts)
	}
}

// ingestBudget sets ingest's read race budget for a test and returns its undo.
func ingestBudget(t *testing.T, d time.Duration) func() {
	t.Helper()
	old := ingest.SetReadRaceBudget(d)
	return func() { ingest.SetReadRaceBudget(old) }
}
