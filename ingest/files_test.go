package ingest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"
	"time"
)

// TestInstanceFileLeftoverReplaced: a file left by a crash before its flush
// (cut short, garbage or empty) is replaced by the next copy, which reads
// back whole (that a complete copy is kept: TestInlineInstance).
func TestInstanceFileLeftoverReplaced(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	svc, _ := newTestService(t, cfg)
	if svc.files == nil || svc.files.segs == nil {
		t.Fatal("an embedded node should store instance files (and segments) by default")
	}
	svc.files.segs = nil // a file per instance (segments: segments_test.go)
	for i, leftover := range []func(full []byte) []byte{
		func(full []byte) []byte { return full[:len(full)/2] },
		func(full []byte) []byte { return []byte("not an instance file") },
		func(full []byte) []byte { return nil },
	} {
		in := inst{series: "8.1", sop: "8.1." + itoa(i+1), pixels: 64 * 64 * 2}
		// The file as a complete write would leave it, then cut.
		if _, _, err := svc.files.put(fileMeta{SOPInstanceUID: in.sop, TransferSyntaxUID: in.ts()}, in.dataSet()); err != nil {
			t.Fatal(err)
		}
		_, path := svc.files.path(in.sop)
		full, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, leftover(full), 0o640); err != nil {
			t.Fatal(err)
		}
		if r := accept(t, svc, in); r.Outcome != Stored || r.Size != int64(len(in.dataSet())) {
			t.Fatalf("leftover %d: outcome %v size %d", i, r.Outcome, r.Size)
		}
		data, ts := readBack(t, svc, in.sop)
		if ts != in.ts() || !bytes.Equal(data, in.dataSet()) {
			t.Fatalf("leftover %d: read back %d bytes (%s), want the new copy", i, len(data), ts)
		}
	}
}

// TestInstanceFileDamaged: a stored file whose bytes changed on disk is an
// error naming the damage when read, at once, never a "not found" retried
// or data handed on.
func TestInstanceFileDamaged(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	svc, _ := newTestService(t, cfg)
	svc.files.segs = nil // a file per instance (segments: segments_test.go)
	in := inst{series: "8.2", sop: "8.2.1", pixels: 64 * 64 * 2}
	accept(t, svc, in)
	_, path := svc.files.path(in.sop)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-10] ^= 0xff
	if err := os.WriteFile(path, b, 0o640); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, _, err = svc.OpenInstance(context.Background(), in.sop)
	if !errors.Is(err, errBadFile) {
		t.Fatalf("damaged file: %v, want errBadFile", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("damaged file: the error took %v (retried as a replication race?)", d)
	}
}

// TestInstanceFilesSweep: files older than the retention are removed, newer
// ones stay readable.
func TestInstanceFilesSweep(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	svc, _ := newTestService(t, cfg)
	svc.files.segs = nil // a file per instance (segments: segments_test.go)
	old := inst{series: "8.3", sop: "8.3.1", pixels: 1024}
	young := inst{series: "8.3", sop: "8.3.2", pixels: 1024}
	accept(t, svc, old)
	accept(t, svc, young)
	now := time.Now()
	_, path := svc.files.path(old.sop)
	if err := os.Chtimes(path, now.Add(-73*time.Hour), now.Add(-73*time.Hour)); err != nil {
		t.Fatal(err)
	}
	n, err := svc.files.sweep(now, 72*time.Hour)
	if err != nil || n != 1 {
		t.Fatalf("sweep removed %d (%v), want 1", n, err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("expired file still there: %v", err)
	}
	if _, _, found, err := svc.files.get(young.sop); !found || err != nil {
		t.Fatalf("the young file: found %v, %v", found, err)
	}
}

// TestLostBytesQueuedAgain: a work item queued while its file's flush had
// not finished (the two run at once) can outlive its bytes in a power cut.
// The sender, never told success, sends again: that copy must be queued anew
// (the first item's message ID would drop it), and the slice is processed
// once.
func TestLostBytesQueuedAgain(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	svc, js := newTestService(t, cfg)
	svc.files.segs = nil // a file per instance (segments: segments_test.go)
	ctx := context.Background()
	in := inst{series: "8.4", sop: "8.4.1", pixels: 64 * 64 * 2}
	if r := accept(t, svc, in); r.Outcome != Stored {
		t.Fatalf("first copy: %v", r.Outcome)
	}
	// The power cut: the work item stays, the file is cut short.
	_, path := svc.files.path(in.sop)
	if err := os.Truncate(path, 100); err != nil {
		t.Fatal(err)
	}
	if r := accept(t, svc, in); r.Outcome != Stored {
		t.Fatalf("re-send after the lost bytes: %v, want stored (queued again)", r.Outcome)
	}
	st, err := js.JetStream.Stream(ctx, svc.workName)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := st.Info(ctx); err != nil || info.State.Msgs != 2 {
		t.Fatalf("work items: %+v (%v), want 2", info.State, err)
	}
	// A third copy, with the bytes stored, is a plain duplicate.
	if r := accept(t, svc, in); r.Outcome != Duplicate {
		t.Fatalf("third copy: %v, want duplicate", r.Outcome)
	}
	rec := &recorder{}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go svc.Run(rctx, Consumers{Slices: rec, Completions: &recorder{}})
	waitFor(t, 10*time.Second, "both work items answered", func() bool {
		info, err := st.Info(ctx)
		return err == nil && info.State.Msgs == 0
	})
	if n, _ := rec.counts(); n != 1 {
		t.Fatalf("slice handed to the consumer %d times, want once", n)
	}
}

// TestStreamCopyStillRead: a node upgraded to instance files still reads
// what the earlier version stored in the instance stream, and counts it as
// stored (a later copy too large for one message keeps it).
func TestStreamCopyStillRead(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	svc, _ := newTestService(t, cfg)
	ctx := context.Background()
	in := inst{series: "8.5", sop: "8.5.1", pixels: 64 * 64 * 2}
	files := svc.files
	svc.files = nil // the earlier version
	if _, _, err := svc.putInline(ctx, in.sop, in.ts(), ctImage, in.series, in.dataSet()); err != nil {
		t.Fatal(err)
	}
	svc.files = files
	data, ts := readBack(t, svc, in.sop)
	if ts != in.ts() || !bytes.Equal(data, in.dataSet()) {
		t.Fatalf("read back %d bytes (%s), want the stream's copy", len(data), ts)
	}
	if found, _, _, err := svc.inlineStored(ctx, in.sop); !found || err != nil {
		t.Fatalf("inlineStored: found %v, %v; want the stream's copy", found, err)
	}
}

// TestFilesOnlyForStoredCopies: only a complete copy that fits one file
// leaves an instance file: a copy too large (object store) and a truncated
// one leave none, and a stored one reads back whole.
func TestFilesOnlyForStoredCopies(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	svc, _ := newTestService(t, cfg)
	ctx := context.Background()
	big := inst{series: "8.6", sop: "8.6.1", pixels: int(svc.inlineLimit()) + 1<<20}
	if r := accept(t, svc, big); r.Outcome != Stored {
		t.Fatalf("large copy: %v", r.Outcome)
	}
	if n := storedInline(t, svc); n != 0 {
		t.Fatalf("%d instance files after a copy stored in the object store, want none", n)
	}
	cut := inst{series: "8.6", sop: "8.6.2", pixels: 64 * 64 * 2}
	ds := cut.dataSet()
	if _, err := svc.Accept(ctx, &Incoming{Source: Source{Kind: SourceNetwork}, TransferSyntaxUID: cut.ts(),
		DataSet: bytes.NewReader(ds[:len(ds)-100])}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("truncated copy: %v, want ErrMalformed", err)
	}
	if n := storedInline(t, svc); n != 0 {
		t.Fatalf("%d instance files after a truncated copy, want none", n)
	}
	if r := accept(t, svc, cut); r.Outcome != Stored {
		t.Fatalf("complete copy: %v", r.Outcome)
	}
	data, ts := readBack(t, svc, cut.sop)
	if ts != cut.ts() || !bytes.Equal(data, ds) {
		t.Fatalf("read back %d bytes (%s), want %d", len(data), ts, len(ds))
	}
	if n := storedInline(t, svc); n != 1 {
		t.Fatalf("%d instance files, want 1", n)
	}
}
