package ingest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"anomalynode/dimse"
	"anomalynode/internal/peers"
	"anomalynode/internal/synth"
)

// The crash test re-executes this test binary as the node (childEnv set):
// a dimse.Server with this package's store as its handler, plus a fake
// inference consumer that appends every processed SOP Instance UID to a file
// (fsync) before acknowledging, and a fake finaliser that logs completions.
const childEnv = "ANOMALYNODE_INGEST_CRASH_CHILD"

func TestMain(m *testing.M) {
	// Small segments: a few records each, so the tests cross segments and
	// make spares quickly (BenchmarkStorescuSteps sets the default).
	segmentSize = 4 << 20
	if os.Getenv(childEnv) != "" {
		os.Exit(runCrashChild())
	}
	os.Exit(m.Run())
}

// appendSync appends one line to a file and fsyncs it.
func appendSync(path, line string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(line + "\n"); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func readLines(path string) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func runCrashChild() int {
	dir, addr := os.Getenv("CHILD_DIR"), os.Getenv("CHILD_ADDR")
	log := zerolog.New(os.Stderr).With().Timestamp().Logger()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	cfg := testConfig(nopTB{}, filepath.Join(dir, "data"))
	cfg.Routes[0].Match.Modality = []string{"CT", "MR"}
	js, err := OpenJetStream(ctx, cfg.NATS, cfg.Node.DataDir, log)
	if err != nil {
		log.Error().Err(err).Msg("child: open")
		return 1
	}
	defer js.Close()
	svc, err := NewService(ctx, js, cfg, log, nil)
	if err != nil {
		log.Error().Err(err).Msg("child: service")
		return 1
	}
	svc.tickEvery = 20 * time.Millisecond
	processedPath := filepath.Join(dir, "processed.log")
	deliveriesPath := filepath.Join(dir, "deliveries.log")
	completionsPath := filepath.Join(dir, "completions.log")
	// The consumer's effect is idempotent, as the real inference stage's is
	// (deterministic outputs): a redelivered slice it already processed is
	// acknowledged without processing it again.
	var mu sync.Mutex
	done := map[string]bool{}
	for _, l := range readLines(processedPath) {
		done[l] = true
	}
	slices := SliceConsumerFunc(func(ctx context.Context, s *Slice) error {
		mu.Lock()
		defer mu.Unlock()
		if err := appendSync(deliveriesPath, fmt.Sprintf("%s %d %d", s.SOPInstanceUID, s.Delivery, s.WorkSequence)); err != nil {
			return err
		}
		time.Sleep(2 * time.Millisecond) // some work, so kills land mid-processing too
		if !done[s.SOPInstanceUID] {
			if err := appendSync(processedPath, s.SOPInstanceUID); err != nil {
				return err
			}
			done[s.SOPInstanceUID] = true
		}
		return s.Ack(ctx)
	})
	completions := CompletionConsumerFunc(func(ctx context.Context, c *SeriesCompletion) error {
		b, _ := json.Marshal(c)
		if err := appendSync(completionsPath, string(b)); err != nil {
			return err
		}
		return c.Ack(ctx)
	})
	srv := dimse.NewServer(dimse.ServerConfig{AETitle: "NODE"}, svc, log, nil)
	errc := make(chan error, 2)
	go func() { errc <- srv.ListenAndServe(ctx, addr) }()
	go func() { errc <- svc.Run(ctx, Consumers{Slices: slices, Completions: completions}) }()
	if err := <-errc; err != nil {
		log.Error().Err(err).Msg("child: stopped")
		return 1
	}
	return 0
}

// nopTB lets the child reuse testConfig outside a test.
type nopTB struct{ testing.TB }

func (nopTB) Helper()                   {}
func (nopTB) Fatal(args ...any)         { panic(fmt.Sprint(args...)) }
func (nopTB) Fatalf(f string, a ...any) { panic(fmt.Sprintf(f, a...)) }

type child struct {
	cmd  *exec.Cmd
	addr string
}

func startChild(t *testing.T, dir string) *child {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", peers.FreePort(t))
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1", "CHILD_DIR="+dir, "CHILD_ADDR="+addr)
	logf, err := os.OpenFile(filepath.Join(dir, "child.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, addr: addr}
	t.Cleanup(func() { c.kill(); logf.Close() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		cl, err := dimse.Dial(ctx, addr, dimse.ClientConfig{CalledAE: "NODE", CallingAE: "CT1", DialTimeout: time.Second})
		if err == nil {
			err = cl.Echo(ctx)
			cl.Release(ctx)
		}
		cancel()
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "child.log"))
			t.Fatalf("child did not come up: %v\n%s", err, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *child) kill() {
	if c.cmd.ProcessState == nil {
		_ = c.cmd.Process.Signal(syscall.SIGKILL)
		_ = c.cmd.Wait()
	}
}

// sendAll sends files over one association; after killAfter successes (when
// > 0) it SIGKILLs the child and keeps sending until the association fails.
// It returns the SOP Instance UIDs that got a success response.
func sendAll(t *testing.T, c *child, files []string, sops map[string]string, killAfter int) []string {
	t.Helper()
	ctx := context.Background()
	cl, err := dimse.Dial(ctx, c.addr, dimse.ClientConfig{CalledAE: "NODE", CallingAE: "CT1"})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	var ok []string
	for _, f := range files {
		if killAfter > 0 && len(ok) == killAfter {
			// Kill while the SCU keeps sending: the next store is in flight.
			go func() { time.Sleep(3 * time.Millisecond); c.kill() }()
		}
		st, err := cl.StoreFile(ctx, f)
		if err != nil {
			if killAfter > 0 {
				return ok
			}
			t.Fatalf("store %s: %v", f, err)
		}
		if st != dimse.StatusSuccess {
			t.Fatalf("store %s: status %v", f, st)
		}
		ok = append(ok, sops[f])
	}
	cl.Release(ctx)
	if killAfter > 0 {
		c.kill()
	}
	return ok
}

// TestCrashSafety SIGKILLs the node in the middle of a multi-series C-STORE
// run at several points, restarts it, re-sends everything (as an SCU would
// retry), and checks that every instance that got a success response was
// processed exactly once, that no instance produced a second work item, and
// that every series completed with all of its instances.
func TestCrashSafety(t *testing.T) {
	peers.Tool(t, "dcmdump") // the run is validated against real files below
	base := t.TempDir()
	var files []string
	sops := map[string]string{}
	seriesOf := map[string]string{}
	for s := 0; s < 3; s++ {
		dir := filepath.Join(base, "series", strconv.Itoa(s))
		man, err := synth.WriteSeries(dir, synth.Options{Seed: uint64(100 + s), Slices: 12, Rows: 32, Cols: 32, Source: synth.SourcePhantom})
		if err != nil {
			t.Fatal(err)
		}
		for _, sl := range man.Slices {
			p := filepath.Join(dir, sl.File)
			files = append(files, p)
			sops[p] = sl.SOPInstanceUID
			seriesOf[sl.SOPInstanceUID] = man.SeriesInstanceUID
		}
	}
	for _, killAfter := range []int{1, 11, 23} {
		t.Run(fmt.Sprintf("kill-after-%d", killAfter), func(t *testing.T) {
			dir := t.TempDir()
			c := startChild(t, dir)
			acked := sendAll(t, c, files, sops, killAfter)
			if len(acked) < killAfter {
				t.Fatalf("only %d successes before the kill point %d", len(acked), killAfter)
			}
			// A second kill right after restart, while redeliveries are in flight.
			c = startChild(t, dir)
			time.Sleep(30 * time.Millisecond)
			c.kill()
			c = startChild(t, dir)
			resent := sendAll(t, c, files, sops, 0)
			if len(resent) != len(files) {
				t.Fatalf("re-send: %d of %d succeeded", len(resent), len(files))
			}
			waitFor(t, 60*time.Second, "all instances processed and series completed", func() bool {
				return len(readLines(filepath.Join(dir, "processed.log"))) >= len(files) && completeSeries(dir, seriesOf) == 3
			})
			time.Sleep(500 * time.Millisecond) // let any stray duplicate show up
			c.cmd.Process.Signal(syscall.SIGTERM)
			c.cmd.Wait()

			processed := map[string]int{}
			for _, l := range readLines(filepath.Join(dir, "processed.log")) {
				processed[l]++
			}
			for _, sop := range acked {
				if processed[sop] != 1 {
					t.Errorf("instance %s acknowledged before the crash was processed %d times", sop, processed[sop])
				}
			}
			for sop, n := range processed {
				if n != 1 {
					t.Errorf("instance %s processed %d times", sop, n)
				}
			}
			if len(processed) != len(files) {
				t.Errorf("%d distinct instances processed, want %d", len(processed), len(files))
			}
			// One work item per instance: every delivery of an instance
			// carries the same work item sequence.
			items := map[string]map[string]bool{}
			redeliveries := 0
			for _, l := range readLines(filepath.Join(dir, "deliveries.log")) {
				f := strings.Fields(l)
				if len(f) != 3 {
					continue
				}
				if items[f[0]] == nil {
					items[f[0]] = map[string]bool{}
				}
				if items[f[0]][f[2]] {
					redeliveries++
				}
				items[f[0]][f[2]] = true
			}
			for sop, seqs := range items {
				if len(seqs) > 1 {
					t.Errorf("instance %s queued as %d work items %v (duplicate work)", sop, len(seqs), seqs)
				}
			}
			t.Logf("kill after %d successes: %d acknowledged before the kill, %d redeliveries after restarts", killAfter, len(acked), redeliveries)
		})
	}
}

// completeSeries counts series whose latest completion lists all their instances.
func completeSeries(dir string, seriesOf map[string]string) int {
	want := map[string]int{}
	for _, s := range seriesOf {
		want[s]++
	}
	best := map[string]int{}
	for _, l := range readLines(filepath.Join(dir, "completions.log")) {
		var c SeriesCompletion
		if json.Unmarshal([]byte(l), &c) != nil {
			continue
		}
		uniq := map[string]bool{}
		for _, s := range c.Instances {
			uniq[s] = true
		}
		if len(uniq) > best[c.SeriesInstanceUID] {
			best[c.SeriesInstanceUID] = len(uniq)
		}
	}
	n := 0
	keys := make([]string, 0, len(want))
	for s := range want {
		keys = append(keys, s)
	}
	sort.Strings(keys)
	for _, s := range keys {
		if best[s] == want[s] {
			n++
		}
	}
	return n
}
