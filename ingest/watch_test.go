package ingest

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"anomalynode/configs"
	"anomalynode/internal/dcm"
)

// startWatcher runs a Watcher on a real Service and a recorder consuming the
// slices; it returns the folders and the recorder.
func startWatcher(t *testing.T, before func(in string)) (in, done, quar string, rec *recorder, svc *Service) {
	in, done, quar, rec, svc, _ = startWatcherW(t, before)
	return
}

func startWatcherW(t *testing.T, before func(in string)) (in, done, quar string, rec *recorder, svc *Service, w *Watcher) {
	t.Helper()
	base := t.TempDir()
	in, done, quar = filepath.Join(base, "in"), filepath.Join(base, "done"), filepath.Join(base, "quarantine")
	if err := os.MkdirAll(in, 0o755); err != nil {
		t.Fatal(err)
	}
	if before != nil {
		before(in)
	}
	cfg := testConfig(t, filepath.Join(base, "data"))
	svc, _ = newTestService(t, cfg)
	rec = &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	w = NewWatcher(svc, configs.WatchFolder{Path: in, DoneDir: done, QuarantineDir: quar, StableFor: 150 * time.Millisecond, RescanInterval: time.Minute}, cfg.Node.DataDir, testLogger(t))
	wg.Add(2)
	go func() { defer wg.Done(); w.Run(ctx) }()
	go func() { defer wg.Done(); svc.Run(ctx, Consumers{Slices: rec}) }()
	return
}

func (r *recorder) sops() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := map[string]int{}
	for _, s := range r.slices {
		m[s.SOPInstanceUID]++
	}
	return m
}

func countFiles(t *testing.T, dir string) int {
	n := 0
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n++
		}
		return nil
	})
	return n
}

// TestWatchStartupAndFormats: files present before start-up are processed, in
// every accepted layout (Part-10, meta without preamble, bare explicit and
// implicit data sets), and moved to the done folder with their relative path.
func TestWatchStartupAndFormats(t *testing.T) {
	a := inst{series: "2.1", sop: "2.1.1"}
	b := inst{series: "2.1", sop: "2.1.2", implicit: true, z: 1}
	c := inst{series: "2.1", sop: "2.1.3", z: 2}
	d := inst{series: "2.1", sop: "2.1.4", z: 3}
	in, done, _, rec, _ := startWatcher(t, func(in string) {
		writeFile(t, filepath.Join(in, "a.dcm"), a.part10())
		writeFile(t, filepath.Join(in, "sub", "b.raw"), b.dataSet())
		writeFile(t, filepath.Join(in, "sub", "deeper", "c"), c.dataSet())
		writeFile(t, filepath.Join(in, "d.nopreamble"), d.part10()[128+4:]) // file meta, no preamble
	})
	waitFor(t, 15*time.Second, "4 slices", func() bool { return len(rec.sops()) == 4 })
	for _, f := range []string{"a.dcm", "sub/b.raw", "sub/deeper/c", "d.nopreamble"} {
		if _, err := os.Stat(filepath.Join(done, f)); err != nil {
			t.Errorf("done/%s: %v", f, err)
		}
	}
	waitFor(t, 5*time.Second, "input emptied", func() bool { return countFiles(t, in) == 0 })
}

// TestWatchGarbage: non-DICOM files and DICOMDIRs stay where they are;
// truncated DICOM goes to quarantine with a reason file; a good file next to
// them is ingested.
func TestWatchGarbage(t *testing.T) {
	good := inst{series: "2.2", sop: "2.2.1"}
	trunc := inst{series: "2.2", sop: "2.2.2", pixels: 4096}.part10()
	dicomdir := append(Part10Header(MediaStorageDirectory, "2.2.9", dcm.ExplicitVRLittleEndian), 0x04, 0, 0x30, 0x12, 'U', 'L', 4, 0, 0, 0, 0, 0)
	noise := make([]byte, 5000)
	rand.New(rand.NewSource(1)).Read(noise)
	in, _, quar, rec, _ := startWatcher(t, nil)
	writeFile(t, filepath.Join(in, "noise.bin"), noise)
	writeFile(t, filepath.Join(in, "README.txt"), []byte("these are scans from the CT\n"))
	writeFile(t, filepath.Join(in, "DICOMDIR"), dicomdir)
	writeFile(t, filepath.Join(in, "cut.dcm"), trunc[:len(trunc)-1000])
	writeFile(t, filepath.Join(in, "empty.dcm"), nil)
	writeFile(t, filepath.Join(in, "good.dcm"), good.part10())
	waitFor(t, 15*time.Second, "quarantine", func() bool {
		_, err := os.Stat(filepath.Join(quar, "cut.dcm.reason.txt"))
		return err == nil
	})
	reason, _ := os.ReadFile(filepath.Join(quar, "cut.dcm.reason.txt"))
	if !strings.Contains(string(reason), "truncated") {
		t.Errorf("reason %q does not say truncated", reason)
	}
	if _, err := os.Stat(filepath.Join(quar, "cut.dcm")); err != nil {
		t.Errorf("quarantined file: %v", err)
	}
	waitFor(t, 5*time.Second, "good slice", func() bool { return len(rec.sops()) == 1 })
	for _, f := range []string{"noise.bin", "README.txt", "DICOMDIR", "empty.dcm"} {
		if _, err := os.Stat(filepath.Join(in, f)); err != nil {
			t.Errorf("skipped file %s moved or deleted: %v", f, err)
		}
	}
	if n := countFiles(t, quar); n != 2 {
		t.Errorf("quarantine holds %d files, want 2 (file and reason)", n)
	}
}

// TestWatchSlowWriter: a file written in chunks with pauses shorter than
// stable_for is read only once complete.
func TestWatchSlowWriter(t *testing.T) {
	in, _, quar, rec, svc := startWatcher(t, nil)
	data := inst{series: "2.3", sop: "2.3.1", pixels: 64 << 10}.part10()
	f, err := os.Create(filepath.Join(in, "slow.dcm"))
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(data); off += 8 << 10 {
		end := min(off+8<<10, len(data))
		f.Write(data[off:end])
		time.Sleep(40 * time.Millisecond)
	}
	f.Close()
	waitFor(t, 15*time.Second, "slice", func() bool { return len(rec.sops()) == 1 })
	r, _, err := svc.OpenInstance(context.Background(), "2.3.1")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	n, _ := r.Read(make([]byte, 1)) // readable
	if n != 1 {
		t.Fatal("stored instance unreadable")
	}
	if countFiles(t, quar) != 0 {
		t.Fatal("slow file was quarantined")
	}
}

// TestWatchManyFilesNewFolder: 1000 files dropped at once into a new
// sub-folder are all ingested exactly once.
func TestWatchManyFilesNewFolder(t *testing.T) {
	n := 1000
	if testing.Short() {
		n = 200
	}
	in, done, _, rec, _ := startWatcher(t, nil)
	stage := filepath.Join(filepath.Dir(in), "stage", "batch")
	for i := 0; i < n; i++ {
		series := fmt.Sprintf("2.4.%d", i%10)
		writeFile(t, filepath.Join(stage, fmt.Sprintf("f%04d.dcm", i)), inst{series: series, sop: fmt.Sprintf("%s.%d", series, i), z: float64(i)}.part10())
	}
	// Dropped at once: one rename of a full folder into the watched tree.
	if err := os.Rename(stage, filepath.Join(in, "batch")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 90*time.Second, fmt.Sprintf("%d slices", n), func() bool { return len(rec.sops()) == n })
	for sop, c := range rec.sops() {
		if c != 1 {
			t.Fatalf("%s delivered %d times", sop, c)
		}
	}
	waitFor(t, 10*time.Second, "done folder", func() bool { return countFiles(t, done) == n })
}

// TestWatchDeletedBeforeRead: a file removed before it is stable is forgotten
// without error; a later file is still processed.
func TestWatchDeletedBeforeRead(t *testing.T) {
	in, _, quar, rec, _ := startWatcher(t, nil)
	p := filepath.Join(in, "gone.dcm")
	writeFile(t, p, inst{series: "2.5", sop: "2.5.1"}.part10())
	time.Sleep(30 * time.Millisecond)
	os.Remove(p)
	writeFile(t, filepath.Join(in, "stays.dcm"), inst{series: "2.5", sop: "2.5.2"}.part10())
	waitFor(t, 15*time.Second, "slice", func() bool { return len(rec.sops()) == 1 })
	if rec.sops()["2.5.2"] != 1 || countFiles(t, quar) != 0 {
		t.Fatalf("sops %v, quarantine %d", rec.sops(), countFiles(t, quar))
	}
}

// TestWatchOverflowRescan blocks the watcher's event loop while far more
// events than the kernel queue holds are generated; the overflow triggers a
// rescan that finds the DICOM file whose events were dropped.
func TestWatchOverflowRescan(t *testing.T) {
	in, _, _, rec, _, w := startWatcherW(t, nil)
	junk := filepath.Join(in, "junk")
	os.MkdirAll(junk, 0o755)
	time.Sleep(200 * time.Millisecond) // the new folder is watched
	w.mu.Lock()
	for i := 0; i < 12000; i++ {
		os.WriteFile(filepath.Join(junk, strconv.Itoa(i)), []byte{1}, 0o644)
	}
	writeFile(t, filepath.Join(junk, "lost.dcm"), inst{series: "2.6", sop: "2.6.1"}.part10())
	time.Sleep(100 * time.Millisecond)
	w.mu.Unlock()
	waitFor(t, 60*time.Second, "the file whose events were dropped", func() bool { return rec.sops()["2.6.1"] == 1 })
	if w.overflows.Load() == 0 {
		t.Fatal("no kernel queue overflow was reported")
	}
}
