package ingest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"anomalynode/internal/dcm"
)

// TestInlineInstance: a slice is stored as one message of the instance
// stream (nothing in the object store), reads back byte for byte with its
// syntax, and a second copy in another syntax leaves the first one as it
// was, the work item naming the stored syntax.
func TestInlineInstance(t *testing.T) { forEachStore(t, testInlineInstance) }

func testInlineInstance(t *testing.T, store string) {
	cfg := testConfig(t, t.TempDir())
	cfg.Ingest.InstanceStore = store
	svc, _ := newTestService(t, cfg)
	ctx := context.Background()
	in := inst{series: "7.1", sop: "7.1.1", pixels: 512 * 512 * 2}
	if r := accept(t, svc, in); r.Outcome != Stored || r.Size != int64(len(in.dataSet())) {
		t.Fatalf("outcome %v size %d", r.Outcome, r.Size)
	}
	if _, err := svc.objects.GetInfo(ctx, in.sop); !errors.Is(err, jetstream.ErrObjectNotFound) {
		t.Fatalf("object store: %v, want not found", err)
	}
	if n := storedInline(t, svc); n != 1 {
		t.Fatalf("%s: %d data sets stored, want 1", store, n)
	}
	second := in
	second.implicit = true
	if r := accept(t, svc, second); r.Outcome != Duplicate {
		t.Fatalf("second copy: outcome %v, want duplicate (queued by message ID)", r.Outcome)
	}
	data, ts := readBack(t, svc, in.sop)
	if ts != dcm.ExplicitVRLittleEndian || !bytes.Equal(data, in.dataSet()) {
		t.Fatalf("read back %d bytes in %s, want the first copy (%d bytes, explicit VR)", len(data), ts, len(in.dataSet()))
	}
	checkStoredSyntax(t, svc, 1)
}

// TestInlineTruncatedRefused: a data set whose pixel data is shorter than
// declared is refused before anything is stored, and a complete re-send is
// stored.
func TestInlineTruncatedRefused(t *testing.T) { forEachStore(t, testInlineTruncatedRefused) }

func testInlineTruncatedRefused(t *testing.T, store string) {
	cfg := testConfig(t, t.TempDir())
	cfg.Ingest.InstanceStore = store
	svc, _ := newTestService(t, cfg)
	in := inst{series: "7.2", sop: "7.2.1", pixels: 4096}
	ds := in.dataSet()
	_, err := svc.Accept(context.Background(), &Incoming{Source: Source{Kind: SourceNetwork}, TransferSyntaxUID: in.ts(),
		DataSet: bytes.NewReader(ds[:len(ds)-100])})
	if !errors.Is(err, ErrMalformed) {
		t.Fatalf("truncated: %v, want ErrMalformed", err)
	}
	if n := storedInline(t, svc); n != 0 {
		t.Fatalf("%s: %d data sets stored after a refused copy, want none", store, n)
	}
	if r := accept(t, svc, in); r.Outcome != Stored {
		t.Fatalf("complete re-send: %v", r.Outcome)
	}
}

// TestLargeAfterInline: a copy too large for one message (uncompressed)
// after a copy stored as one message (say, compressed) keeps the first: the
// object store gets nothing.
func TestLargeAfterInline(t *testing.T) { forEachStore(t, testLargeAfterInline) }

func testLargeAfterInline(t *testing.T, store string) {
	cfg := testConfig(t, t.TempDir())
	cfg.Ingest.InstanceStore = store
	svc, _ := newTestService(t, cfg)
	small := inst{series: "7.3", sop: "7.3.1", pixels: 1024}
	ctx := context.Background()
	if _, _, err := svc.putInline(ctx, small.sop, small.ts(), ctImage, small.series, small.dataSet()); err != nil {
		t.Fatal(err)
	}
	big := small
	big.pixels = int(svc.inlineLimit()) + 1<<20
	big.implicit = true
	if r := accept(t, svc, big); r.Outcome != Stored || r.Size != int64(len(small.dataSet())) {
		t.Fatalf("outcome %v size %d, want stored with the kept copy's size %d", r.Outcome, r.Size, len(small.dataSet()))
	}
	if _, err := svc.objects.GetInfo(ctx, small.sop); !errors.Is(err, jetstream.ErrObjectNotFound) {
		t.Fatalf("object store: %v, want not found", err)
	}
	checkStoredSyntax(t, svc, 1)
}

// forEachStore runs a test with the instance files (an embedded node's
// default) and with the instance stream (nats.url's).
func forEachStore(t *testing.T, test func(t *testing.T, store string)) {
	for _, store := range []string{"files", "stream"} {
		t.Run(store, func(t *testing.T) { test(t, store) })
	}
}

// storedInline counts the data sets stored as one file, record or message.
func storedInline(t *testing.T, svc *Service) int {
	t.Helper()
	si, err := svc.inst.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n := int(si.State.Msgs)
	if svc.files != nil {
		if n != 0 {
			t.Fatalf("%d messages in the instance stream of a node storing files", n)
		}
		files, err := filepath.Glob(filepath.Join(svc.files.dir, "[0-9a-f][0-9a-f]", "*"))
		if err != nil {
			t.Fatal(err)
		}
		n = len(files)
		if svc.files.segs != nil {
			records, _ := svc.files.segs.counts()
			n += records
		}
	}
	return n
}

// readBack reads a stored instance's data set and transfer syntax.
func readBack(t *testing.T, svc *Service, sop string) ([]byte, string) {
	t.Helper()
	rc, ts, err := svc.OpenInstance(context.Background(), sop)
	if err != nil {
		t.Fatalf("open %s: %v", sop, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", sop, err)
	}
	return data, ts
}
