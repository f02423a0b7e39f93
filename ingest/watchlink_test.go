package ingest

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"anomalynode/configs"
)

// TestWatchSymlinks: a symbolic link to a file is followed (the instance is
// ingested, the link moved to done, its target left alone); links to a folder
// or to nothing are quarantined with the reason instead of staying in the
// inbox for ever.
func TestWatchSymlinks(t *testing.T) {
	outside := t.TempDir()
	target := filepath.Join(outside, "scan.dcm")
	writeFile(t, target, inst{series: "2.7", sop: "2.7.1"}.part10())
	in, done, quar, rec, _ := startWatcher(t, nil)
	for name, to := range map[string]string{"linked.dcm": target, "folder-link": outside, "dangling.dcm": filepath.Join(outside, "gone.dcm")} {
		if err := os.Symlink(to, filepath.Join(in, name)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 15*time.Second, "the linked file ingested", func() bool { return rec.sops()["2.7.1"] == 1 })
	waitFor(t, 15*time.Second, "the other links quarantined", func() bool {
		_, e1 := os.Lstat(filepath.Join(quar, "folder-link.reason.txt"))
		_, e2 := os.Lstat(filepath.Join(quar, "dangling.dcm.reason.txt"))
		return e1 == nil && e2 == nil
	})
	for name, want := range map[string]string{"folder-link": "folder", "dangling.dcm": "dangling"} {
		reason, _ := os.ReadFile(filepath.Join(quar, name+".reason.txt"))
		if !strings.Contains(string(reason), want) {
			t.Errorf("%s: reason %q does not say %q", name, reason, want)
		}
	}
	waitFor(t, 5*time.Second, "the link moved to done", func() bool {
		fi, err := os.Lstat(filepath.Join(done, "linked.dcm"))
		return err == nil && fi.Mode()&os.ModeSymlink != 0
	})
	if _, err := os.Stat(target); err != nil {
		t.Errorf("the link's target was touched: %v", err)
	}
	if entries, _ := os.ReadDir(in); len(entries) != 0 {
		t.Errorf("%d entries left in the inbox", len(entries))
	}
}

// TestIngestCounterIdentity: received = stored + duplicate + ignored + refused
// over offers of every kind (network and folder, a file refused before it
// reaches Accept included), and every label is exported before its first event.
func TestIngestCounterIdentity(t *testing.T) {
	in, _, quar, rec, svc := startWatcher(t, nil)
	m := svc.m
	if counterValue(m.received.WithLabelValues(SourceFolder)) != 0 || counterValue(m.refused.WithLabelValues("source")) != 0 {
		t.Fatal("counters do not start at 0")
	}
	good := inst{series: "2.8", sop: "2.8.1"}
	trunc := inst{series: "2.8", sop: "2.8.2", pixels: 4096}.part10()
	writeFile(t, filepath.Join(in, "good.dcm"), good.part10())
	writeFile(t, filepath.Join(in, "cut.dcm"), trunc[:len(trunc)-1000])
	writeFile(t, filepath.Join(in, "sr.dcm"), inst{series: "2.8", sop: "2.8.3", modality: "MR"}.part10())
	accept(t, svc, good) // a duplicate by network
	waitFor(t, 15*time.Second, "the broken file quarantined", func() bool {
		_, err := os.Stat(filepath.Join(quar, "cut.dcm.reason.txt"))
		return err == nil
	})
	waitFor(t, 5*time.Second, "the good slice", func() bool { return len(rec.sops()) == 1 })
	sum := func(names ...string) (s float64) {
		for _, n := range names {
			switch n {
			case "received":
				s += counterValue(m.received.WithLabelValues(SourceFolder)) + counterValue(m.received.WithLabelValues(SourceNetwork))
			case "refused":
				for _, r := range []string{"disk", "store", "malformed", "source"} {
					s += counterValue(m.refused.WithLabelValues(r))
				}
			case "stored":
				s += counterValue(m.stored)
			case "duplicate":
				s += counterValue(m.duplicate)
			case "ignored":
				s += counterValue(m.ignored)
			}
		}
		return s
	}
	waitFor(t, 5*time.Second, "the identity", func() bool {
		return sum("received") == sum("stored", "duplicate", "ignored", "refused")
	})
	if sum("stored") != 1 || sum("duplicate") != 1 || sum("ignored") != 1 || sum("refused") < 1 || counterValue(m.quarantined) != 1 {
		t.Fatalf("stored %v duplicate %v ignored %v refused %v quarantined %v", sum("stored"), sum("duplicate"), sum("ignored"), sum("refused"), counterValue(m.quarantined))
	}
}

// panicAcceptor panics on one file's instance and stores nothing.
type panicAcceptor struct {
	mu       sync.Mutex
	accepted []string
}

func (a *panicAcceptor) Accept(ctx context.Context, in *Incoming) (Result, error) {
	if strings.HasSuffix(in.Source.Path, "poison.dcm") {
		panic("header reader bug")
	}
	a.mu.Lock()
	a.accepted = append(a.accepted, in.Source.Path)
	a.mu.Unlock()
	_, err := io.Copy(io.Discard, in.DataSet)
	return Result{Outcome: Stored}, err
}

// TestWatchPanicQuarantines: a file the store panics on is quarantined with
// the reason, and the watcher goes on with the next file.
func TestWatchPanicQuarantines(t *testing.T) {
	base := t.TempDir()
	in, quar := filepath.Join(base, "in"), filepath.Join(base, "quarantine")
	acc := &panicAcceptor{}
	w := NewWatcher(acc, configs.WatchFolder{Path: in, QuarantineDir: quar, StableFor: 100 * time.Millisecond}, base, testLogger(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() { cancel(); <-done }()
	writeFile(t, filepath.Join(in, "poison.dcm"), inst{series: "2.9", sop: "2.9.1"}.part10())
	writeFile(t, filepath.Join(in, "good.dcm"), inst{series: "2.9", sop: "2.9.2"}.part10())
	waitFor(t, 10*time.Second, "the poison file quarantined and the good one accepted", func() bool {
		_, err := os.Stat(filepath.Join(quar, "poison.dcm.reason.txt"))
		acc.mu.Lock()
		defer acc.mu.Unlock()
		return err == nil && len(acc.accepted) == 1
	})
	reason, _ := os.ReadFile(filepath.Join(quar, "poison.dcm.reason.txt"))
	if !strings.Contains(string(reason), "header reader bug") {
		t.Errorf("reason %q", reason)
	}
}
