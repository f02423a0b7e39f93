package ingest

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// segFiles lists a store's segment files (index files and spares too).
func segFiles(t *testing.T, dir string) (segs, idx []string) {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(dir, "[0-9]*[0-9]"))
	if err != nil {
		t.Fatal(err)
	}
	idx, err = filepath.Glob(filepath.Join(dir, "*.idx"))
	if err != nil {
		t.Fatal(err)
	}
	return segs, idx
}

// TestSegmentRecords: through Accept, data sets go into segments (no file of
// their own) and read back whole; a second copy keeps the first; once the
// spares are used up the rest go to files of their own and nothing is lost;
// the upkeep makes spares again and the index files of full segments.
func TestSegmentRecords(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	svc, _ := newTestService(t, cfg)
	segs := svc.files.segs
	if _, spares := segs.counts(); spares != minSpares {
		t.Fatalf("%d spares at start, want %d", spares, minSpares)
	}
	// 512 KiB slices: 7 per 4 MiB segment, so 2 spares take 14.
	var ins []inst
	for i := range 20 {
		ins = append(ins, inst{series: "9.1", sop: "9.1." + itoa(i+1), number: i + 1, pixels: 512 << 10})
	}
	first := ins[0]
	first.implicit = true
	if r := accept(t, svc, first); r.Outcome != Stored {
		t.Fatalf("first: %v", r.Outcome)
	}
	// The same instance again, in another syntax, before its work item is
	// taken: the stored record is kept (and the work item is a duplicate).
	if r := accept(t, svc, ins[0]); r.Outcome != Duplicate {
		t.Fatalf("second copy: %v, want duplicate", r.Outcome)
	}
	for _, in := range ins[1:] {
		if r := accept(t, svc, in); r.Outcome != Stored {
			t.Fatalf("%s: %v", in.sop, r.Outcome)
		}
	}
	records, spares := segs.counts()
	if records != 14 || spares != 0 {
		t.Fatalf("%d records, %d spares; want 14 in the two spares, then files", records, spares)
	}
	files, err := filepath.Glob(filepath.Join(svc.files.dir, "[0-9a-f][0-9a-f]", "*"))
	if err != nil || len(files) != 6 {
		t.Fatalf("%d files of their own (%v), want 6", len(files), err)
	}
	for i, in := range ins {
		data, ts := readBack(t, svc, in.sop)
		if i == 0 {
			in = first
		}
		if ts != in.ts() || !bytes.Equal(data, in.dataSet()) {
			t.Fatalf("%s read back %d bytes (%s), want %d (%s)", in.sop, len(data), ts, len(in.dataSet()), in.ts())
		}
	}
	if _, err := segs.maintain(time.Time{}, true); err != nil {
		t.Fatal(err)
	}
	if _, spares := segs.counts(); spares != minSpares {
		t.Fatalf("%d spares after the upkeep, want %d", spares, minSpares)
	}
	// Both segments are full and flushed: their index files are written.
	if _, idx := segFiles(t, segs.dir); len(idx) != 2 {
		t.Fatalf("index files %v, want the two full segments'", idx)
	}
	more := inst{series: "9.1", sop: "9.1.99", pixels: 512 << 10}
	accept(t, svc, more)
	if r, ok := segs.lookup(more.sop); !ok || r.seg.num < 2 {
		t.Fatalf("after the upkeep: indexed %v in segment %d, want a new spare", ok, r.seg.num)
	}
}

// storeRecords appends and flushes records into a segment store.
func storeRecords(t *testing.T, s *segments, ins []inst) {
	t.Helper()
	for _, in := range ins {
		p, ok, err := s.append(fileMeta{SOPInstanceUID: in.sop, TransferSyntaxUID: in.ts(), SeriesInstanceUID: in.series}, in.dataSet())
		if err != nil || !ok {
			t.Fatalf("append %s: ok %v, %v", in.sop, ok, err)
		}
		if err := s.commit(p); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSegmentsReopen: at start the index is rebuilt. A full segment's index
// file is used (a record damaged since is then reported when read, not
// taken for missing); a segment without one is read: records cut short by a
// crash (torn data, torn header) are skipped, and a record written after
// them by another association is still found.
func TestSegmentsReopen(t *testing.T) {
	dir := t.TempDir()
	log := zerolog.Nop()
	s, err := openSegments(dir, true, true, log)
	if err != nil {
		t.Fatal(err)
	}
	var ins []inst
	for i := range 10 {
		ins = append(ins, inst{series: "9.2", sop: "9.2." + itoa(i+1), pixels: 512 << 10})
	}
	storeRecords(t, s, ins) // 7 in the first segment, 3 in the second
	if _, err := s.maintain(time.Time{}, true); err != nil {
		t.Fatal(err)
	}
	ref := func(sop string) recordRef {
		r, ok := s.lookup(sop)
		if !ok {
			t.Fatalf("%s not indexed", sop)
		}
		return r
	}
	r0, r7, r8 := ref(ins[0].sop), ref(ins[7].sop), ref(ins[8].sop)
	if r0.seg == r7.seg || r7.seg != r8.seg {
		t.Fatalf("records in segments %d, %d, %d; want 7 in the first", r0.seg.num, r7.seg.num, r8.seg.num)
	}
	if _, idx := segFiles(t, dir); len(idx) != 1 {
		t.Fatalf("index files %v, want one (the full segment)", idx)
	}
	// The crash: record 8's data cut short, record 7's header torn; record
	// 9 (after them) was written and acknowledged.
	f, err := os.OpenFile(r7.seg.path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(make([]byte, 100<<10), r8.off+300<<10); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(make([]byte, 16), r7.off+4); err != nil {
		t.Fatal(err)
	}
	f.Close()
	// Damage in the first segment, after its index file was written.
	d, err := os.OpenFile(r0.seg.path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.WriteAt([]byte{0xff, 0xff}, r0.off+recHeaderLen+1000); err != nil {
		t.Fatal(err)
	}
	d.Close()

	s2, err := openSegments(dir, true, true, log)
	if err != nil {
		t.Fatal(err)
	}
	for i, in := range ins {
		r, ok := s2.lookup(in.sop)
		switch i {
		case 7, 8:
			if ok {
				t.Fatalf("%s (cut short) indexed after the restart", in.sop)
			}
			continue
		}
		if !ok {
			t.Fatalf("%s not indexed after the restart", in.sop)
		}
		m, data, found, err := s2.read(r)
		if i == 0 {
			if !errors.Is(err, errBadFile) || found {
				t.Fatalf("damaged record: found %v, %v; want errBadFile", found, err)
			}
			continue
		}
		if err != nil || !found || m.SOPInstanceUID != in.sop || !bytes.Equal(data, in.dataSet()) {
			t.Fatalf("%s after the restart: found %v, %v, %d bytes", in.sop, found, err, len(data))
		}
	}
	// New records go to a spare, not over the torn ones.
	storeRecords(t, s2, ins[7:8])
	if r, _ := s2.lookup(ins[7].sop); r.seg.num == r7.seg.num {
		t.Fatalf("a record written into segment %d after the restart, want a spare", r.seg.num)
	}
}

// TestSegmentsRecycle: segments whose records all expired are reused (no
// new file) and their records are gone, also after a restart (the new
// generation); past maxSpares expired segments are removed.
func TestSegmentsRecycle(t *testing.T) {
	dir := t.TempDir()
	log := zerolog.Nop()
	s, err := openSegments(dir, true, true, log)
	if err != nil {
		t.Fatal(err)
	}
	var old []inst
	for i := range 14 {
		old = append(old, inst{series: "9.3", sop: "9.3." + itoa(i+1), pixels: 512 << 10})
	}
	storeRecords(t, s, old[:7])
	if _, err := s.maintain(time.Time{}, true); err != nil { // a new spare
		t.Fatal(err)
	}
	storeRecords(t, s, old[7:])
	// Not expired yet: nothing happens (but a new spare is made).
	if n, err := s.maintain(time.Now().Add(-time.Hour), true); err != nil || n != 0 {
		t.Fatalf("recycled %d (%v) before the cut", n, err)
	}
	before, _ := segFiles(t, dir)
	n, err := s.maintain(time.Now().Add(time.Minute), true)
	if err != nil || n != 2 {
		t.Fatalf("recycled %d (%v), want the two full segments", n, err)
	}
	if records, _ := s.counts(); records != 0 {
		t.Fatalf("%d records indexed after the cut, want 0", records)
	}
	young := []inst{{series: "9.3", sop: "9.3.100", pixels: 512 << 10}}
	storeRecords(t, s, young)
	after, _ := segFiles(t, dir)
	if len(after) != len(before) {
		t.Fatalf("segment files %d after recycling, %d before: want them reused", len(after), len(before))
	}
	s2, err := openSegments(dir, true, true, log)
	if err != nil {
		t.Fatal(err)
	}
	if records, _ := s2.counts(); records != 1 {
		t.Fatalf("%d records after the restart, want only the young one", records)
	}
	if _, ok := s2.lookup(old[0].sop); ok {
		t.Fatal("an expired record came back after the restart")
	}
	// Past maxSpares, expired segments are removed.
	s2.mu.Lock()
	for len(s2.spares) < maxSpares {
		s2.spares = append(s2.spares, s2.spares[0])
	}
	s2.mu.Unlock()
	if n, err := s2.maintain(time.Now().Add(time.Minute), true); err != nil || n != 1 {
		t.Fatalf("recycled %d (%v), want the young record's segment", n, err)
	}
	if left, _ := segFiles(t, dir); len(left) != len(after)-1 {
		t.Fatalf("%d segment files, want %d (one removed)", len(left), len(after)-1)
	}
}

// TestSegmentLostBytesQueuedAgain: a record whose flush a power cut undid is
// not in the index after the restart (TestSegmentsReopen); the re-send is
// then queued anew, as with a file of its own (TestLostBytesQueuedAgain).
func TestSegmentLostBytesQueuedAgain(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	svc, _ := newTestService(t, cfg)
	in := inst{series: "9.4", sop: "9.4.1", pixels: 64 * 64 * 2}
	if r := accept(t, svc, in); r.Outcome != Stored {
		t.Fatalf("first copy: %v", r.Outcome)
	}
	if !svc.files.segs.drop(in.sop) {
		t.Fatal("the first copy was not a segment record")
	}
	if r := accept(t, svc, in); r.Outcome != Stored {
		t.Fatalf("re-send after the lost bytes: %v, want stored (queued again)", r.Outcome)
	}
	if r := accept(t, svc, in); r.Outcome != Duplicate {
		t.Fatalf("third copy: %v, want duplicate", r.Outcome)
	}
}

// TestSegmentFlushFailure: a record whose flush fails is taken out of the
// index (the sender, refused, sends again) and its segment takes no more
// records: the next one goes to a spare and reads back.
func TestSegmentFlushFailure(t *testing.T) {
	s, err := openSegments(t.TempDir(), true, true, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	a := inst{series: "9.5", sop: "9.5.1", pixels: 4096}
	p, ok, err := s.append(fileMeta{SOPInstanceUID: a.sop, TransferSyntaxUID: a.ts()}, a.dataSet())
	if err != nil || !ok {
		t.Fatalf("append: ok %v, %v", ok, err)
	}
	p.seg.f.Close() // its fdatasync fails (EBADF)
	if err := s.commit(p); err == nil {
		t.Fatal("commit of a record whose flush failed succeeded")
	}
	if _, ok := s.lookup(a.sop); ok {
		t.Fatal("a record whose flush failed is still indexed")
	}
	b := inst{series: "9.5", sop: "9.5.2", pixels: 4096}
	storeRecords(t, s, []inst{b})
	r, ok := s.lookup(b.sop)
	if !ok || r.seg == p.seg {
		t.Fatalf("next record: indexed %v, in the failed segment %v", ok, ok && r.seg == p.seg)
	}
	if _, data, found, err := s.read(r); !found || err != nil || !bytes.Equal(data, b.dataSet()) {
		t.Fatalf("next record read back: found %v, %v", found, err)
	}
}
