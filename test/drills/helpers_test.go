// Package drills holds the reliability drills of the whole node: the real
// anomalynode binary run as a child process (serve), driven by real peers
// (dcmtk, Orthanc) and by raw sockets, and killed, starved and fed garbage.
// See docs/drills.md.
package drills

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"anomalynode/dimse"
	"anomalynode/internal/peers"
)

// SOP classes the drills look for in the outputs.
const (
	segClass = "1.2.840.10008.5.1.4.1.1.66.4"
	mrClass  = "1.2.840.10008.5.1.4.1.1.4"
	nodeAE   = "ANOMALYNODE"
)

// fixture is made once per test binary run: the binary, a tiny model with the
// DINOv2 contract and a DPMM fitted on small synthetic normal series (the
// recipe of scripts/demo.sh at a smaller size).
var fx struct {
	once           sync.Once
	err            error
	dir, bin, ort  string
	model, embed   string
	rows, cols     int
	synthCounter   int
	synthCounterMu sync.Mutex
}

func TestMain(m *testing.M) {
	code := m.Run()
	if fx.dir != "" {
		os.RemoveAll(fx.dir)
	}
	os.Exit(code)
}

// scale is DRILLS_SCALE (default 1): bigger runs multiply the drills' sizes.
func scale() int {
	if s, err := strconv.Atoi(os.Getenv("DRILLS_SCALE")); err == nil && s > 0 {
		return s
	}
	return 1
}

func setup(t testing.TB) {
	t.Helper()
	fx.once.Do(func() {
		fx.err = func() error {
			dir, err := os.MkdirTemp("", "drills-")
			if err != nil {
				return err
			}
			fx.dir = dir
			fx.rows, fx.cols = 64, 64
			fx.ort = peers.ORTLibrary()
			if _, err := os.Stat(fx.ort); err != nil {
				return fmt.Errorf("ONNX Runtime library (run make deps or set ONNXRUNTIME_LIB): %w", err)
			}
			if fx.bin, err = peers.BuildBinary(dir); err != nil {
				return err
			}
			fx.embed = filepath.Join(dir, "tiny.onnx")
			fx.model = filepath.Join(dir, "model.dpmm")
			if _, err := runBin("mkvit", "--out", fx.embed, "--preset", "tiny", "--seed", "1"); err != nil {
				return err
			}
			size := []string{"--rows", strconv.Itoa(fx.rows), "--cols", strconv.Itoa(fx.cols)}
			if _, err := runBin(append([]string{"synth", "--out", filepath.Join(dir, "normal"), "--series", "2", "--slices", "8", "--seed", "100"}, size...)...); err != nil {
				return err
			}
			if _, err := runBin(append([]string{"synth", "--out", filepath.Join(dir, "val"), "--series", "1", "--slices", "8", "--seed", "200"}, size...)...); err != nil {
				return err
			}
			cfg := filepath.Join(dir, "fit.yaml")
			if err := os.WriteFile(cfg, []byte(fmt.Sprintf("node:\n  data_dir: %s\ninference:\n  threads: 2\n  ort_library: %s\n", filepath.Join(dir, "fitdata"), fx.ort)), 0o644); err != nil {
				return err
			}
			_, err = runBin("fit", "--config", cfg, "--normal", filepath.Join(dir, "normal"), "--val", filepath.Join(dir, "val"),
				"--embedder", fx.embed, "--out", fx.model, "--components", "20", "--epochs", "4", "--batch", "8", "--seed", "1", "--cache", filepath.Join(dir, "cache"))
			return err
		}()
	})
	if fx.err != nil {
		t.Fatalf("drills: setup: %v", fx.err)
	}
}

func runBin(args ...string) (string, error) {
	cmd := exec.Command(fx.bin, args...)
	cmd.Env = append(os.Environ(), "ONNXRUNTIME_LIB="+fx.ort)
	b, err := cmd.CombinedOutput()
	if err != nil {
		return string(b), fmt.Errorf("anomalynode %s: %w\n%s", strings.Join(args, " "), err, tailStr(string(b), 3000))
	}
	return string(b), nil
}

func tailStr(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// synthSeries writes series of slices (with painted lesions) under a fresh
// folder and returns the per-series lists of files; each call uses new seeds,
// so new patients and UIDs.
func synthSeries(t testing.TB, series, slices, rows, cols int) [][]string {
	t.Helper()
	fx.synthCounterMu.Lock()
	fx.synthCounter++
	seed := 1000 + 100*fx.synthCounter
	fx.synthCounterMu.Unlock()
	out := filepath.Join(t.TempDir(), "series")
	args := []string{"synth", "--out", out, "--series", strconv.Itoa(series), "--slices", strconv.Itoa(slices),
		"--seed", strconv.Itoa(seed), "--rows", strconv.Itoa(rows), "--cols", strconv.Itoa(cols), "--lesions"}
	if _, err := runBin(args...); err != nil {
		t.Fatal(err)
	}
	var res [][]string
	dirs := []string{out}
	if series > 1 {
		dirs = nil
		for i := 1; i <= series; i++ {
			dirs = append(dirs, filepath.Join(out, fmt.Sprintf("S%03d", i)))
		}
	}
	for _, d := range dirs {
		files, err := filepath.Glob(filepath.Join(d, "images", "*.dcm"))
		if err != nil || len(files) != slices {
			t.Fatalf("synth %s: %d files (want %d): %v", d, len(files), slices, err)
		}
		sort.Strings(files)
		res = append(res, files)
	}
	return res
}

// nodeConfig is what a drill's node looks like; yaml renders it.
type nodeConfig struct {
	dataDir, dimse, admin, natsListen string
	allowedCallers                    []string
	tlsCert, tlsKey, tlsCA            string
	seriesTimeout                     string
	idleTimeout                       string
	maxPDU                            int
	watch, watchDone, quarantine      string
	dests                             []dest
	maxAttempts                       int
	maxAge, backoffInitial, backoffMx string
	maxAssociations                   int
	syncInterval                      string
	// natsURL (an external cluster, comma-separated servers), replicas,
	// ackWait and storeTimeout: the scale-out drill's settings.
	natsURL, ackWait, storeTimeout string
	replicas                       int
	name                           string
}

type dest struct {
	name, address, calledAE, folder string
}

// perPixel is the model setting of the drills that do not test findings.
const perPixel = "findings: false"

func (c nodeConfig) yaml() string {
	var b strings.Builder
	w := func(f string, a ...any) { fmt.Fprintf(&b, f+"\n", a...) }
	name := c.name
	if name == "" {
		name = "drill"
	}
	w("node:\n  name: %s\n  data_dir: %s", name, c.dataDir)
	w("log:\n  level: info\n  format: json")
	w("admin:\n  listen: %s", c.admin)
	w("dimse:\n  listen: %s\n  ae_title: %s\n  check_called_ae: true", c.dimse, nodeAE)
	w("  max_associations: %d", c.maxAssociations)
	if c.maxPDU > 0 {
		w("  max_pdu: %d", c.maxPDU)
	}
	if c.idleTimeout != "" {
		w("  idle_timeout: %s\n  dimse_timeout: %s\n  artim_timeout: %s", c.idleTimeout, c.idleTimeout, c.idleTimeout)
	}
	if len(c.allowedCallers) > 0 {
		w("  allowed_callers:")
		for _, a := range c.allowedCallers {
			w("    - ae_title: %s", a)
		}
	}
	if c.tlsCert != "" {
		w("  tls:\n    cert: %s\n    key: %s\n    ca: %s\n    require_client_cert: true", c.tlsCert, c.tlsKey, c.tlsCA)
	}
	if c.natsListen != "" || c.syncInterval != "" || c.natsURL != "" {
		w("nats:")
		if c.natsURL != "" {
			w("  url: %s\n  replicas: %d", c.natsURL, max(c.replicas, 1))
		}
		if c.natsListen != "" {
			w("  listen: %s", c.natsListen)
		}
		if c.syncInterval != "" {
			w("  sync_interval: %s", c.syncInterval)
		}
	}
	w("ingest:\n  series_timeout: %s\n  min_free_bytes: 104857600", c.seriesTimeout)
	if c.ackWait != "" {
		w("  ack_wait: %s", c.ackWait)
	}
	if c.storeTimeout != "" {
		w("  store_timeout: %s", c.storeTimeout)
	}
	if c.watch != "" {
		w("  watch:\n    - path: %s\n      done_dir: %s\n      quarantine_dir: %s\n      stable_for: 500ms", c.watch, c.watchDone, c.quarantine)
	}
	w("inference:\n  threads: 2\n  batch: 4\n  ort_library: %s", fx.ort)
	// The fixture's random-weight backbone finds nothing real: these drills
	// test durability and delivery on the per-pixel outputs (a SEG of every
	// slice, a heat map per slice); the findings drills (findings_test.go)
	// serve the signal backbone with findings and reports.
	w("models:\n  mr-brain:\n    path: %s\n    embedder: %s\n    fpr: 0.05\n    %s", fx.model, fx.embed, perPixel)
	w("destinations:")
	var names []string
	for _, d := range c.dests {
		names = append(names, d.name)
		w("  %s:", d.name)
		if d.folder != "" {
			w("    folder: %s", d.folder)
		} else {
			w("    address: %s\n    called_ae: %s\n    calling_ae: %s\n    timeout: 10s", d.address, d.calledAE, nodeAE)
		}
	}
	w("export:\n  max_attempts: %d\n  backoff_initial: %s\n  backoff_max: %s", c.maxAttempts, c.backoffInitial, c.backoffMx)
	if c.maxAge != "" {
		w("  max_age: %s", c.maxAge)
	}
	w("output:\n  seg_all_slices: true")
	w("routes:\n  - name: mr-brain\n    match:\n      modality: [MR]\n    model: mr-brain\n    destinations: [%s]", strings.Join(names, ", "))
	w("  - name: everything-else\n    ignore: true")
	return b.String()
}

// defaultConfig is a node on free ports with its data in a temp folder and
// one folder destination ("folder") under out.
func defaultConfig(t testing.TB) (nodeConfig, string) {
	t.Helper()
	base := t.TempDir()
	out := filepath.Join(base, "out")
	return nodeConfig{
		dataDir:         filepath.Join(base, "data"),
		dimse:           fmt.Sprintf("127.0.0.1:%d", peers.FreePort(t)),
		admin:           fmt.Sprintf("127.0.0.1:%d", peers.FreePort(t)),
		seriesTimeout:   "2s",
		dests:           []dest{{name: "folder", folder: out}},
		maxAttempts:     50,
		backoffInitial:  "200ms",
		backoffMx:       "1s",
		maxAssociations: 32,
	}, out
}

// node is one anomalynode serve process (restartable on the same data).
type node struct {
	t       testing.TB
	cfg     nodeConfig
	cfgPath string
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{}
	starts  int
}

func startNode(t testing.TB, c nodeConfig) *node {
	t.Helper()
	setup(t)
	dir := t.TempDir()
	n := &node{t: t, cfg: c, cfgPath: filepath.Join(dir, "node.yaml"), logPath: filepath.Join(dir, "node.log")}
	if err := os.WriteFile(n.cfgPath, []byte(c.yaml()), 0o644); err != nil {
		t.Fatal(err)
	}
	n.start()
	t.Cleanup(func() {
		n.kill()
		if t.Failed() {
			t.Logf("node log (end):\n%s", n.logTail(6000))
		}
	})
	return n
}

// start runs serve and waits for /readyz.
func (n *node) start() {
	n.t.Helper()
	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		n.t.Fatal(err)
	}
	n.starts++
	fmt.Fprintf(logf, "{\"drill\":\"start %d\"}\n", n.starts)
	cmd := exec.Command(fx.bin, "serve", "--config", n.cfgPath)
	cmd.Env = append(os.Environ(), "ONNXRUNTIME_LIB="+fx.ort)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		n.t.Fatalf("start node: %v", err)
	}
	n.cmd = cmd
	n.exited = make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(n.exited) }()
	deadline := time.Now().Add(90 * time.Second)
	c := &http.Client{Timeout: 2 * time.Second}
	for time.Now().Before(deadline) {
		select {
		case <-n.exited:
			n.t.Fatalf("node exited at start:\n%s", n.logTail(4000))
		default:
		}
		if resp, err := c.Get("http://" + n.cfg.admin + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	n.t.Fatalf("node not ready in 90s:\n%s", n.logTail(4000))
}

func (n *node) pid() int { return n.cmd.Process.Pid }

// kill9 sends SIGKILL and waits for the process to be gone.
func (n *node) kill9() {
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.exited
	n.cmd = nil
}

func (n *node) kill() { n.kill9() }

// stop sends SIGTERM and waits (the graceful path).
func (n *node) stop() {
	n.t.Helper()
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exited:
	case <-time.After(40 * time.Second):
		n.t.Errorf("node did not exit 40s after SIGTERM")
		n.kill9()
	}
	n.cmd = nil
}

func (n *node) alive() bool {
	if n.cmd == nil {
		return false
	}
	select {
	case <-n.exited:
		return false
	default:
		return true
	}
}

func (n *node) metrics() peers.Metrics {
	n.t.Helper()
	m, err := peers.ScrapeMetrics("http://" + n.cfg.admin + "/metrics")
	if err != nil {
		n.t.Fatalf("metrics: %v", err)
	}
	return m
}

func (n *node) logTail(max int) string {
	b, _ := os.ReadFile(n.logPath)
	return tailStr(string(b), max)
}

// logCount counts log lines containing every one of subs.
func (n *node) logCount(subs ...string) int {
	f, err := os.Open(n.logPath)
	if err != nil {
		return 0
	}
	defer f.Close()
	c := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
outer:
	for sc.Scan() {
		for _, s := range subs {
			if !strings.Contains(sc.Text(), s) {
				continue outer
			}
		}
		c++
	}
	return c
}

// waitFor polls cond until it holds or the timeout passes (then fails with
// what(), which describes the state seen).
func waitFor(t testing.TB, timeout time.Duration, what func() string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s: %s", timeout, what())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// sendResult is what a C-STORE client saw.
type sendResult struct {
	acked []string // SOP Instance UIDs answered with success or warning
	err   error    // what stopped the association early, if anything
}

// sopUID reads a file's SOP Instance UID from its meta header.
func fileMeta(t testing.TB, path string) dimse.FileMeta {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, _, err := dimse.ReadFileMeta(bufio.NewReader(f))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

// storeFiles sends files on one association with the dimse client and
// records which instances got a success (or warning) response.
func storeFiles(ctx context.Context, addr, calling string, files []string) sendResult {
	return storePaced(ctx, addr, calling, files, 0)
}

// storePaced is storeFiles with a pause after each instance.
func storePaced(ctx context.Context, addr, calling string, files []string, pause time.Duration) sendResult {
	var res sendResult
	if len(files) == 0 {
		return res
	}
	cfg := dimse.ClientConfig{CallingAE: calling, CalledAE: nodeAE, DialTimeout: 10 * time.Second, DIMSETimeout: 60 * time.Second,
		Contexts: dimse.ContextsFor([][2]string{{mrClass, "1.2.840.10008.1.2.1"}})}
	c, err := dimse.Dial(ctx, addr, cfg)
	if err != nil {
		res.err = err
		return res
	}
	for _, f := range files {
		st, err := c.StoreFile(ctx, f)
		if err != nil {
			var se *dimse.StatusError
			if !errors.As(err, &se) {
				_ = c.Abort()
				res.err = err
				return res
			}
			continue
		}
		if st.IsSuccess() || st.IsWarning() {
			res.acked = append(res.acked, f)
		}
		if pause > 0 {
			time.Sleep(pause)
		}
	}
	res.err = c.Release(ctx)
	return res
}

// output is one object found in a folder destination.
type output struct {
	path, sopClass, sopInstance, series, study string
	instanceNumber                             int
	refs                                       []string // every ReferencedSOPInstanceUID inside
}

// readOutputs parses every .dcm under dir (pixel data skipped).
func readOutputs(t testing.TB, dir string) []output {
	t.Helper()
	var outs []output
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".dcm") {
			return err
		}
		ds, err := dicom.ParseFile(p, nil, dicom.SkipPixelData())
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		o := output{path: p}
		str := func(tg tag.Tag) string {
			e, err := ds.FindElementByTag(tg)
			if err != nil {
				return ""
			}
			v, ok := e.Value.GetValue().([]string)
			if !ok || len(v) == 0 {
				return ""
			}
			return strings.TrimRight(v[0], " \x00")
		}
		o.sopClass, o.sopInstance = str(tag.SOPClassUID), str(tag.SOPInstanceUID)
		o.series, o.study = str(tag.SeriesInstanceUID), str(tag.StudyInstanceUID)
		o.instanceNumber, _ = strconv.Atoi(strings.TrimSpace(str(tag.InstanceNumber)))
		for e := range ds.FlatIterator() {
			if e.Tag == tag.ReferencedSOPInstanceUID {
				if v, ok := e.Value.GetValue().([]string); ok && len(v) > 0 {
					o.refs = append(o.refs, strings.TrimRight(v[0], " \x00"))
				}
			}
		}
		outs = append(outs, o)
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatalf("read outputs: %v", err)
	}
	return outs
}

// dciodvfyErrors runs dciodvfy -new on path and returns its Error lines.
func dciodvfyErrors(t testing.TB, path string) []string {
	t.Helper()
	out, _ := exec.Command(peers.Tool(t, "dciodvfy"), "-new", path).CombinedOutput()
	var errs []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "Error") {
			errs = append(errs, l)
		}
	}
	return errs
}
