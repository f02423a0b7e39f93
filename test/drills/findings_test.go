package drills

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"anomalynode/internal/peers"
	out "anomalynode/output"
)

// The findings drills run the signal backbone (mkvit --preset signal: fixed
// image features, not DINOv2) with a DPMM fitted on synthetic normal series
// and its finding calibration, at a size where the painted lesions span
// several patches.
const findingsSize = 128

var sigFx struct {
	once         sync.Once
	err          error
	embed, model string
}

// signalModel makes the signal backbone and fits the findings drills' model
// once per test binary run.
func signalModel(t *testing.T) (embed, model string) {
	t.Helper()
	setup(t)
	sigFx.once.Do(func() {
		sigFx.err = func() error {
			dir := filepath.Join(fx.dir, "signal")
			sigFx.embed, sigFx.model = filepath.Join(dir, "signal.onnx"), filepath.Join(dir, "model.dpmm")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			if _, err := runBin("mkvit", "--out", sigFx.embed, "--preset", "signal"); err != nil {
				return err
			}
			size := []string{"--rows", strconv.Itoa(findingsSize), "--cols", strconv.Itoa(findingsSize), "--slices", "16"}
			if _, err := runBin(append([]string{"synth", "--out", filepath.Join(dir, "normal"), "--series", "4", "--seed", "300"}, size...)...); err != nil {
				return err
			}
			if _, err := runBin(append([]string{"synth", "--out", filepath.Join(dir, "val"), "--series", "4", "--seed", "400"}, size...)...); err != nil {
				return err
			}
			cfg := filepath.Join(dir, "fit.yaml")
			if err := os.WriteFile(cfg, []byte(fmt.Sprintf("node:\n  data_dir: %s\ninference:\n  threads: 2\n  ort_library: %s\n", filepath.Join(dir, "fitdata"), fx.ort)), 0o644); err != nil {
				return err
			}
			_, err := runBin("fit", "--config", cfg, "--normal", filepath.Join(dir, "normal"), "--val", filepath.Join(dir, "val"),
				"--embedder", sigFx.embed, "--out", sigFx.model, "--components", "40", "--epochs", "6", "--batch", "8", "--seed", "1",
				"--cache", filepath.Join(dir, "cache"))
			return err
		}()
	})
	if sigFx.err != nil {
		t.Fatalf("findings drills: setup: %v", sigFx.err)
	}
	return sigFx.embed, sigFx.model
}

// startSignalNode starts a node like startNode, serving the signal model
// with findings at the pixel threshold of FPR 0.01 (the other drills' 0.05
// grows a finding well beyond its lesion).
func startSignalNode(t *testing.T, c nodeConfig) *node {
	t.Helper()
	embed, model := signalModel(t)
	dir := t.TempDir()
	n := &node{t: t, cfg: c, cfgPath: filepath.Join(dir, "node.yaml"), logPath: filepath.Join(dir, "node.log")}
	y := strings.NewReplacer(fx.model, model, fx.embed, embed, "seg_all_slices: true", "seg_all_slices: false",
		perPixel, "findings: true", "fpr: 0.05", "fpr: 0.01").Replace(c.yaml())
	if err := os.WriteFile(n.cfgPath, []byte(y), 0o644); err != nil {
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

// synthDir writes one synthetic series with the given extra synth flags and
// returns its folder.
func synthDir(t *testing.T, seed int, extra ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "series")
	args := append([]string{"synth", "--out", dir, "--seed", strconv.Itoa(seed), "--slices", "16",
		"--rows", strconv.Itoa(findingsSize), "--cols", strconv.Itoa(findingsSize)}, extra...)
	if _, err := runBin(args...); err != nil {
		t.Fatal(err)
	}
	return dir
}

// finalisedLine waits for the node's "series finalised" log line of a series
// and returns it as JSON fields.
func finalisedLine(t *testing.T, n *node, seriesUID string) map[string]any {
	t.Helper()
	var line map[string]any
	waitFor(t, 120*time.Second, func() string { return "no 'series finalised' line for " + seriesUID }, func() bool {
		f, err := os.Open(n.logPath)
		if err != nil {
			return false
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<16), 1<<22)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "series finalised") && strings.Contains(sc.Text(), seriesUID) {
				line = map[string]any{}
				return json.Unmarshal(sc.Bytes(), &line) == nil
			}
		}
		return false
	})
	return line
}

// sendSeries C-STOREs every image of a synthetic series folder.
func sendSeries(t *testing.T, n *node, dirs ...string) {
	t.Helper()
	var files []string
	for _, d := range dirs {
		f, _ := filepath.Glob(filepath.Join(d, "images", "*.dcm"))
		files = append(files, f...)
	}
	sort.Strings(files)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if r := storeFiles(ctx, n.cfg.dimse, "MODALITY", files); r.err != nil || len(r.acked) != len(files) {
		t.Fatalf("C-STORE: %d of %d acknowledged: %v", len(r.acked), len(files), r.err)
	}
}

// seriesOutputs waits until the folder destination holds the objects the
// node built for a series (the "objects" of its finalised line) and returns
// them.
func seriesOutputs(t *testing.T, dir, study string, objects int) []output {
	t.Helper()
	var mine []output
	waitFor(t, 60*time.Second, func() string { return fmt.Sprintf("%d of %d objects delivered", len(mine), objects) }, func() bool {
		mine = nil
		for _, o := range readOutputs(t, dir) {
			if o.study == study {
				mine = append(mine, o)
			}
		}
		return len(mine) >= objects
	})
	return mine
}

// TestFindingsThroughNode: the node, serving the signal backbone with a
// finding calibration, reaches the same findings for a lesion series as the
// offline `score` of the same model and configuration (count, segments and
// voxels of its SEG), and for a healthy series sent after it returns no SEG,
// only the one "no finding" page. The lesion series has one hyper-intense
// lesion (seed 7008) that this model finds at its calibrated limits: the
// node's SEG must cover it (Dice >= 0.5, centroid within 5 mm). That is one
// chosen lesion: at these limits the signal backbone separates few of the
// synthetic lesions from healthy hot spots (at 128 px 1 of 8 hyper-intense
// ones; issue 19, measured by `anomalynode eval`; docs/fit-eval.md).
func TestFindingsThroughNode(t *testing.T) {
	c, folder := defaultConfig(t)
	// The archive gets every output too: the reports must arrive next to the SEG.
	archive := peers.StartOrthanc(t, nil, nil)
	c.dests = append(c.dests, dest{name: "archive", address: fmt.Sprintf("127.0.0.1:%d", archive.DicomPort), calledAE: archive.AET})
	n := startSignalNode(t, c)
	lesion := synthDir(t, 7008, "--lesions", "--polarity", "hyper", "--lesion-count", "1")
	healthy := synthDir(t, 7002)
	lm, err := out.ReadManifest(lesion)
	if err != nil {
		t.Fatal(err)
	}
	hm, err := out.ReadManifest(healthy)
	if err != nil {
		t.Fatal(err)
	}

	sendSeries(t, n, lesion)
	fin := finalisedLine(t, n, lm.SeriesInstanceUID)
	found, ok := fin["findings"].(float64)
	if !ok {
		t.Fatalf("the node masks per pixel: its model has no finding calibration (log: %v)", fin)
	}
	outs := seriesOutputs(t, folder, lm.StudyInstanceUID, int(fin["objects"].(float64)))
	var segs [][]byte
	var reports []*out.SR
	for _, o := range outs {
		if o.sopClass == out.Comprehensive3DSRStorage {
			reports = append(reports, readSR(t, o.path))
		}
		if o.sopClass == segClass {
			b, err := os.ReadFile(o.path)
			if err != nil {
				t.Fatal(err)
			}
			if errs := dciodvfyErrors(t, o.path); len(errs) > 0 {
				t.Errorf("dciodvfy SEG:\n%s", strings.Join(errs, "\n"))
			}
			segs = append(segs, b)
		}
	}
	rep, err := out.CompareLesions(lesion, segs, out.DefaultMinLesionMM3)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("lesion series: %v findings, %d SEG(s) with %d segments; lesions >= 0.5 cm3 detected %d/%d (%d smaller); Dice %.3f",
		found, rep.SEGs, rep.Segments, rep.Detected, len(rep.Lesions), rep.Small, rep.Dice)
	for i, l := range rep.Lesions {
		t.Logf("  lesion %d: %.0f mm3, detected %v, Dice %.3f, centroid off by %.1f mm", i+1, l.VolumeMM3, l.Detected, l.Dice, l.DistanceMM)
	}
	if len(rep.Lesions) != 1 {
		t.Fatalf("the lesion series has %d painted lesions of 0.5 cm3, want 1", len(rep.Lesions))
	}
	if l := rep.Lesions[0]; !l.Detected || l.Dice < 0.5 || l.DistanceMM > 5 {
		t.Errorf("the node's SEG does not show the painted lesion: detected %v, Dice %.3f (min 0.5), centroid off by %.1f mm (max 5)", l.Detected, l.Dice, l.DistanceMM)
	}
	checkOffline(t, n, lesion, lm.SeriesInstanceUID, int(found), segs)
	// The measurement report: one per analysed series, its findings those of
	// the SEG (segments that exist, volumes that match their voxels).
	if len(reports) != 1 {
		t.Fatalf("lesion series: %d measurement reports, want 1", len(reports))
	}
	if len(reports[0].Groups) != int(found) || reports[0].NoAbnormality != (found == 0) {
		t.Errorf("lesion series: the report has %d findings (no abnormality %v), the node found %v", len(reports[0].Groups), reports[0].NoAbnormality, found)
	}
	if len(segs) == 1 {
		if err := out.CheckSRAgainstSEG(reports[0], segs[0]); err != nil {
			t.Errorf("report against SEG: %v", err)
		}
	}
	inArchive(t, archive, fin, "sr", "seg")

	sendSeries(t, n, healthy)
	fin = finalisedLine(t, n, hm.SeriesInstanceUID)
	if f, _ := fin["findings"].(float64); f != 0 {
		t.Errorf("healthy series: %v findings, want none", fin["findings"])
	}
	outs = seriesOutputs(t, folder, hm.StudyInstanceUID, 2)
	var page, report *output
	for i, o := range outs {
		switch o.sopClass {
		case out.SecondaryCaptureImageStorage:
			page = &outs[i]
		case out.Comprehensive3DSRStorage:
			report = &outs[i]
		}
	}
	if len(outs) != 2 || page == nil || report == nil {
		t.Fatalf("healthy series: %d outputs (%v), want only the 'no finding' page and its report", len(outs), outs)
	}
	if errs := dciodvfyErrors(t, page.path); len(errs) > 0 {
		t.Errorf("dciodvfy 'no finding' page:\n%s", strings.Join(errs, "\n"))
	}
	b, err := os.ReadFile(page.path)
	if err != nil || !strings.Contains(string(b), "no finding") {
		t.Errorf("the healthy series' page does not say 'no finding' (%v)", err)
	}
	if sr := readSR(t, report.path); !sr.NoAbnormality || len(sr.Groups) != 0 {
		t.Errorf("healthy series: the report has %d findings, no abnormality %v", len(sr.Groups), sr.NoAbnormality)
	}
	inArchive(t, archive, fin, "sr")
	if v := n.metrics().Sum("anomalynode_series_findings_count"); v != 2 {
		t.Errorf("anomalynode_series_findings observed %v series, want 2", v)
	}
}

// TestStacksThroughNode: a series with two orientations (the same synthetic
// subject written axial and oblique, in one series) is split into its two
// stacks, each with its own outputs, instead of being dropped.
func TestStacksThroughNode(t *testing.T) {
	c, dest := defaultConfig(t)
	n := startSignalNode(t, c)
	axial := synthDir(t, 7003)
	oblique := synthDir(t, 7003, "--tilt", "25")
	am, err := out.ReadManifest(axial)
	if err != nil {
		t.Fatal(err)
	}
	om, err := out.ReadManifest(oblique)
	if err != nil {
		t.Fatal(err)
	}
	if am.SeriesInstanceUID != om.SeriesInstanceUID || am.FrameOfReferenceUID != om.FrameOfReferenceUID {
		t.Fatal("synth wrote the two orientations into different series")
	}
	// New SOP Instance UIDs for the oblique slices (same seed, same UIDs).
	files, _ := filepath.Glob(filepath.Join(oblique, "images", "*.dcm"))
	for i, f := range files {
		cmd := exec.Command(peers.Tool(t, "dcmodify"), "-nb", "-m", "(0008,0018)="+out.DeriveUID("oblique", strconv.Itoa(i)), f)
		cmd.Env = peers.DcmtkEnv()
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("dcmodify: %v\n%s", err, b)
		}
	}
	sendSeries(t, n, axial, oblique)
	fin := finalisedLine(t, n, am.SeriesInstanceUID)
	if s, _ := fin["stacks"].(float64); s != 2 {
		t.Fatalf("%v stacks, want 2 (log: %v)", fin["stacks"], fin)
	}
	outs := seriesOutputs(t, dest, am.StudyInstanceUID, int(fin["objects"].(float64)))
	// Each stack has an output series of its own (heat maps or the page).
	series := map[string]bool{}
	for _, o := range outs {
		if o.sopClass == out.SecondaryCaptureImageStorage {
			series[o.series] = true
		}
	}
	if len(series) != 2 {
		t.Errorf("%d heat-map/page series, want one per stack (2)", len(series))
	}
	if n.logCount("series dropped") != 0 {
		t.Error("a series was dropped")
	}
}

// checkOffline scores a series folder with `anomalynode score` under the
// node's own configuration and checks that it finds what the node found: the
// same number of findings and, segment by segment, SEG masks of the same
// size (within 1 %: the node batches slices, the offline path does not, so
// the scores may differ in their last bits).
func checkOffline(t *testing.T, n *node, dir, seriesUID string, found int, segs [][]byte) {
	t.Helper()
	outDir := t.TempDir()
	if _, err := runBin("score", "--config", n.cfgPath, "--model", "mr-brain", "--in", filepath.Join(dir, "images"), "--out", outDir); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(outDir, seriesUID, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	var sum struct {
		FindingCount int `json:"finding_count"`
	}
	if err := json.Unmarshal(b, &sum); err != nil {
		t.Fatal(err)
	}
	if sum.FindingCount != found {
		t.Fatalf("the node found %d findings, the offline score of the same model %d", found, sum.FindingCount)
	}
	offline, _ := filepath.Glob(filepath.Join(outDir, seriesUID, "SEG_*.dcm"))
	if len(offline) != len(segs) {
		t.Fatalf("the node returned %d SEG(s), the offline score wrote %d", len(segs), len(offline))
	}
	if len(segs) == 0 {
		return
	}
	ob, err := os.ReadFile(offline[0])
	if err != nil {
		t.Fatal(err)
	}
	nodeVox, err := segmentVoxels(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	offVox, err := segmentVoxels(ob)
	if err != nil {
		t.Fatal(err)
	}
	if len(nodeVox) != len(offVox) {
		t.Fatalf("node SEG segments %v, offline %v", nodeVox, offVox)
	}
	for k, v := range nodeVox {
		if d := math.Abs(float64(v - offVox[k])); d > 0.01*float64(max(v, offVox[k])) {
			t.Errorf("segment %d: %d voxels in the node's SEG, %d in the offline one", k, v, offVox[k])
		}
	}
}

// segmentVoxels counts the set voxels of each segment of a SEG.
func segmentVoxels(part10 []byte) (map[int]int, error) {
	seg, err := out.ReadSEG(part10)
	if err != nil {
		return nil, err
	}
	vox := map[int]int{}
	for _, f := range seg.Frames {
		for _, m := range f.Mask {
			if m {
				vox[f.SegmentNumber]++
			}
		}
	}
	return vox, nil
}

// readSR reads a measurement report the node delivered.
func readSR(t *testing.T, path string) *out.SR {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sr, err := out.ReadSR(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return sr
}

// inArchive waits until Orthanc holds every object the finalised log line
// names under the given keys ("sr", "seg": lists of SOP Instance UIDs), and
// checks that each report it holds agrees with the SEG it holds.
func inArchive(t *testing.T, o *peers.Orthanc, fin map[string]any, keys ...string) {
	t.Helper()
	files := map[string][]byte{}
	for _, k := range keys {
		uids, _ := fin[k].([]any)
		if k == "sr" && len(uids) != 1 {
			t.Fatalf("the node built %d reports for the series, want 1 (%v)", len(uids), fin)
		}
		for _, u := range uids {
			uid := u.(string)
			waitFor(t, 60*time.Second, func() string { return "Orthanc has no " + k + " " + uid }, func() bool {
				var found []struct{ ID string }
				b, err := o.Post("/tools/lookup", uid)
				if err != nil || json.Unmarshal(b, &found) != nil || len(found) != 1 {
					return false
				}
				files[k], err = o.Get("/instances/" + found[0].ID + "/file")
				return err == nil
			})
		}
	}
	sr, err := out.ReadSR(files["sr"])
	if err != nil {
		t.Fatalf("the report in the archive: %v", err)
	}
	if seg, ok := files["seg"]; ok {
		if err := out.CheckSRAgainstSEG(sr, seg); err != nil {
			t.Errorf("the archive's report against its SEG: %v", err)
		}
	}
}
