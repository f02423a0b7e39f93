package main

import (
	"anomalynode/internal/peers"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"anomalynode/inference"
	"anomalynode/inference/eval"
	"anomalynode/inference/pixel"
	"anomalynode/inference/vit"
	"anomalynode/internal/npy"
	"anomalynode/output"
)

func quietEnv() (*env, *bytes.Buffer) {
	var out bytes.Buffer
	return &env{log: zerolog.Nop(), stdout: &out, stderr: &out}, &out
}

// writeMixtureNPY writes slices x patches unit vectors around a few centres.
func writeMixtureNPY(t *testing.T, path string, rng *rand.Rand, centres [][]float64, slices, patches int) {
	t.Helper()
	d := len(centres[0])
	x := make([]float32, slices*patches*d)
	for i := 0; i < slices*patches; i++ {
		c := centres[rng.IntN(len(centres))]
		norm := 0.0
		row := make([]float64, d)
		for j := range row {
			row[j] = c[j] + 0.05*rng.NormFloat64()
			norm += row[j] * row[j]
		}
		for j := range row {
			x[i*d+j] = float32(row[j] / math.Sqrt(norm))
		}
	}
	if err := npy.Write(path, &npy.Array{Shape: []int{slices * patches, d}, Dtype: npy.DtypeFloat32, F32: x}); err != nil {
		t.Fatal(err)
	}
}

func TestFitNPY(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	var centres [][]float64
	for i := 0; i < 6; i++ {
		c := make([]float64, 32)
		for j := range c {
			c[j] = rng.NormFloat64()
		}
		centres = append(centres, c)
	}
	train, val := filepath.Join(dir, "train.npy"), filepath.Join(dir, "val.npy")
	writeMixtureNPY(t, train, rng, centres, 30, 64)
	writeMixtureNPY(t, val, rng, centres, 6, 64)
	// The model's folder does not exist yet: fit makes it.
	model := filepath.Join(dir, "models", "v1", "m.safetensors")
	e, out := quietEnv()
	err := runFit(t.Context(), e, []string{"--normal", train, "--val", val, "--out", model,
		"--components", "20", "--epochs", "4", "--batch", "3", "--patches-per-slice", "64", "--seed", "5"})
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	t.Log(out.String())
	if n := strings.Count(out.String(), "\nepoch ") + strings.Count(out.String()[:6], "epoch"); n != 4 {
		t.Errorf("%d epoch lines, want 4", n)
	}
	m, err := inference.LoadModel(model)
	if err != nil {
		t.Fatal(err)
	}
	if m.K != 20 || m.D != 32 || m.Meta.Fit.BestEpoch < 1 || len(m.Meta.Thresholds) != 3 {
		t.Fatalf("model K=%d D=%d fit %+v thresholds %v", m.K, m.D, m.Meta.Fit, m.Meta.Thresholds)
	}
	if a := m.ActiveComponents(m.Meta.Tau); a < 6 || a > 20 {
		t.Errorf("%d active components for 6 clusters", a)
	}
	// .npy embeddings know no series or plane: no finding calibration, said so.
	if m.Meta.Findings != nil || !strings.Contains(out.String(), "warning: the validation slices have no series and plane geometry") {
		t.Errorf("findings %v; output:\n%s", m.Meta.Findings, out)
	}
	for _, f := range []string{"m.training.png", "m.history.json"} {
		if _, err := os.Stat(filepath.Join(filepath.Dir(model), f)); err != nil {
			t.Error(err)
		}
	}
	if _, err := os.Stat(model + ".ckpt"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("checkpoint left behind: %v", err)
	}
	// A folder that cannot be made is refused before any input is read.
	e, _ = quietEnv()
	err = runFit(t.Context(), e, []string{"--normal", filepath.Join(dir, "missing.npy"), "--val", val, "--out", filepath.Join(train, "m.safetensors")})
	if err == nil || !strings.Contains(err.Error(), "--out "+filepath.Join(train, "m.safetensors")) {
		t.Errorf("--out below a file: %v", err)
	}
}

func TestFitEvalErrors(t *testing.T) {
	cases := [][]string{
		{"fit", "--val", "x.npy", "--out", "m"},
		{"fit", "--normal", "x.npy", "--out", "m"},
		{"fit", "--normal", "missing.npy", "--val", "missing.npy", "--out", "m"},
		{"fit", "--normal", "a", "--val", "b", "--out", "m", "--schedule", "cosine"},
		{"eval", "--images", "a", "--labels", "b", "--out", "c"},
		{"eval", "--model", "missing", "--images", "a", "--labels", "b", "--out", "c"},
	}
	for _, c := range cases {
		e, _ := quietEnv()
		if err := commands[c[0]].run(t.Context(), e, c[1:]); err == nil {
			t.Errorf("%v: no error", c)
		}
	}
	e, _ := quietEnv()
	if err := runFit(t.Context(), e, []string{"--help"}); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("--help: %v", err)
	}
}

func TestParseWithLists(t *testing.T) {
	e, _ := quietEnv()
	fs := newFlagSet(e, "x", "")
	var a, b listFlag
	fs.Var(&a, "normal", "")
	fs.Var(&b, "val", "")
	out := fs.String("out", "", "")
	if err := parseWithLists(fs, []string{"--normal", "p", "q", "r", "--val=v,w", "--out", "o"}, map[string]*listFlag{"normal": &a, "val": &b}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(a, " ") != "p q r" || strings.Join(b, " ") != "v w" || *out != "o" {
		t.Fatalf("normal %v val %v out %q", a, b, *out)
	}
	if err := parseWithLists(fs, []string{"--out", "o", "stray"}, map[string]*listFlag{"normal": &a}); err == nil {
		t.Fatal("stray argument accepted")
	}
}

// TestFitEvalDICOM runs the whole model side on real files: synthetic MR
// series (synth), a DINOv2-architecture ONNX model with random weights (tiny
// preset) in ONNX Runtime, fit on healthy series with an embedding cache,
// then eval of lesion series with all three scorers.
func TestFitEvalDICOM(t *testing.T) {
	t.Setenv("ONNXRUNTIME_LIB", peers.ORTLibrary())
	dir := t.TempDir()
	onnx := filepath.Join(dir, "tiny.onnx")
	c, err := vit.Preset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := vit.WriteFile(onnx, c); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		e, out := quietEnv()
		if err := commands[args[0]].run(t.Context(), e, args[1:]); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		return out.String()
	}
	run("synth", "--out", filepath.Join(dir, "train"), "--series", "2", "--slices", "6", "--rows", "96", "--cols", "112", "--seed", "1")
	// The validation folder holds label masks too (labels/IMnnnn.npy, uint8):
	// fit (and eval --val, below) must leave them out, not take them for
	// embeddings.
	run("synth", "--out", filepath.Join(dir, "val"), "--labels", "--slices", "4", "--rows", "96", "--cols", "112", "--seed", "7")
	run("synth", "--out", filepath.Join(dir, "test"), "--lesions", "--slices", "6", "--rows", "96", "--cols", "112", "--seed", "9")
	model := filepath.Join(dir, "model.safetensors")
	cache := filepath.Join(dir, "cache")
	fitArgs := []string{"fit", "--normal", filepath.Join(dir, "train"), "--val", filepath.Join(dir, "val"), "--out", model,
		"--embedder", onnx, "--resolution", "112", "--components", "40", "--epochs", "3", "--batch", "4", "--cache", cache}
	out := run(fitArgs...)
	t.Log(out)
	if !strings.Contains(out, "pixel scores of the healthy") {
		t.Errorf("thresholds not calibrated on pixels: %s", out)
	}
	for _, want := range []string{"skipped 4 label mask file(s)", "findings (from 1 healthy validation series; volume >= 100 mm3, at most 0.05 of series with a finding)",
		"pixel FPR 0.01: peak >= ", "0/1 healthy series with a finding"} {
		if !strings.Contains(out, want) {
			t.Errorf("fit output lacks %q:\n%s", want, out)
		}
	}
	// Refitting from the cache folders as .npy inputs keeps the pixel geometry
	// (the .json sidecars), so calibration is still on pixels, with the same
	// thresholds.
	model2 := filepath.Join(dir, "model-npy.safetensors")
	out2 := run("fit", "--normal", filepath.Join(cache, "normal"), "--val", filepath.Join(cache, "val"), "--out", model2,
		"--resolution", "112", "--components", "40", "--epochs", "3", "--batch", "4")
	if !strings.Contains(out2, "43008 pixel scores") || !strings.Contains(out, "43008 pixel scores") {
		t.Errorf("fit from the cache did not calibrate on the same pixels:\n%s\n%s", out, out2)
	}
	// ... and their series and planes (the sidecars), so findings too.
	if !strings.Contains(out2, "findings (from 1 healthy validation series") {
		t.Errorf("fit from the cache did not calibrate findings:\n%s", out2)
	}
	cachedTrain, _ := filepath.Glob(filepath.Join(cache, "normal", "*.npy"))
	cachedVal, _ := filepath.Glob(filepath.Join(cache, "val", "*.npy"))
	if len(cachedTrain) != 12 || len(cachedVal) != 4 {
		t.Fatalf("%d + %d cached embedding files, want 12 train + 4 val slices", len(cachedTrain), len(cachedVal))
	}
	// A second fit reads the cache: same model bytes.
	first, _ := os.ReadFile(model)
	run(fitArgs...)
	second, _ := os.ReadFile(model)
	if !bytes.Equal(first, second) {
		t.Error("refit from the cache gave a different model")
	}
	m, err := inference.LoadModel(model)
	if err != nil {
		t.Fatal(err)
	}
	if m.Meta.Embedder.SHA256 == "" || m.Meta.Resolution != 112 {
		t.Errorf("model meta %+v", m.Meta)
	}
	// The node's limits: none of the one healthy series shows a finding.
	for _, f := range []float64{0.01, 0.05, 0.10} {
		p, ok, err := m.FindingParams(f, nil, nil)
		c := m.Meta.Findings[inference.FPRKey(f)]
		if err != nil || !ok || p.MinVolumeMM3 != 100 || c.SeriesWithFindings(p) != 0 || len(c.Series) != 1 {
			t.Errorf("FPR %v: finding limits %+v ok=%v err=%v", f, p, ok, err)
		}
	}
	test := filepath.Join(dir, "test")
	for _, sc := range [][]string{{"--scorer", "dpmm"}, {"--scorer", "knn", "--bank", filepath.Join(cache, "normal")}, {"--scorer", "coreset", "--bank", filepath.Join(cache, "normal"), "--coreset-size", "50", "--val", filepath.Join(dir, "val")}} {
		outDir := filepath.Join(dir, "eval-"+sc[1])
		args := append([]string{"eval", "--model", model, "--images", filepath.Join(test, "images"), "--labels", filepath.Join(test, "labels"), "--out", outDir, "--embedder", onnx}, sc...)
		out := run(args...)
		t.Log(out)
		var sum eval.Summary
		b, err := os.ReadFile(filepath.Join(outDir, "summary.json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &sum); err != nil {
			t.Fatal(err)
		}
		if sum.Slices != 6 || sum.Pixels != 6*96*112 || sum.LesionSlices == 0 || sum.UnlabelledFiles != 0 {
			t.Errorf("%s: summary %+v", sc[1], sum)
		}
		if sum.Metrics.AUROC == nil || *sum.Metrics.AUROC < 0 || *sum.Metrics.AUROC > 1 || sum.Metrics.AUPR == nil {
			t.Errorf("%s: metrics %+v", sc[1], sum.Metrics)
		}
		// 96 x 112 at resolution 112: 112 x 130, cropped to 112 x 126 = 8 x 9 patches.
		if sc[1] == "knn" && sum.References != 12*8*9 {
			t.Errorf("knn bank holds %d vectors, want the 12 training slices' %d", sum.References, 12*8*9)
		}
		if sc[1] != "knn" && len(sum.Metrics.Dice) != 3 {
			t.Errorf("%s: %d Dice entries", sc[1], len(sum.Metrics.Dice))
		}
		if sum.Time.Mean <= 0 || sum.PeakRSSMiB <= 0 {
			t.Errorf("%s: time %+v rss %v", sc[1], sum.Time, sum.PeakRSSMiB)
		}
		if _, err := os.Stat(filepath.Join(outDir, "curves.png")); err != nil {
			t.Error(err)
		}
	}

	// The same test series labelled by a DICOM SEG (built by the output
	// package from the synth masks) gives the same pixel labels.
	segDir := filepath.Join(dir, "seg")
	writeSEGLabels(t, filepath.Join(test, "images"), filepath.Join(test, "labels"), segDir)
	var byMask, bySEG eval.Summary
	for i, lab := range []string{filepath.Join(test, "labels"), segDir} {
		outDir := filepath.Join(dir, fmt.Sprintf("eval-labels-%d", i))
		run("eval", "--model", model, "--images", filepath.Join(test, "images"), "--labels", lab, "--out", outDir, "--embedder", onnx)
		b, _ := os.ReadFile(filepath.Join(outDir, "summary.json"))
		s := &byMask
		if i == 1 {
			s = &bySEG
		}
		if err := json.Unmarshal(b, s); err != nil {
			t.Fatal(err)
		}
	}
	if bySEG.Metrics.Positives == 0 || bySEG.Metrics.Positives != byMask.Metrics.Positives || *bySEG.Metrics.AUROC != *byMask.Metrics.AUROC || bySEG.UnlabelledFiles != 0 {
		t.Errorf("SEG labels: %d positives, AUROC %v, %d unlabelled; mask files: %d, %v",
			bySEG.Metrics.Positives, *bySEG.Metrics.AUROC, bySEG.UnlabelledFiles, byMask.Metrics.Positives, *byMask.Metrics.AUROC)
	}
}

// writeSEGLabels builds one binary SEG for the series in images whose masks are
// labels/NAME.npy, and writes it to segDir.
func writeSEGLabels(t *testing.T, images, labels, segDir string) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(images, "*.dcm"))
	res := &output.SeriesResult{Model: output.ModelIdentity{Name: "truth", Version: "1", SHA256: "00"}, Version: 1, Threshold: 0.5}
	for _, f := range files {
		sl, err := pixel.DecodeFile(f)
		if err != nil {
			t.Fatal(err)
		}
		s := sl[0]
		a, err := npy.Read(filepath.Join(labels, strings.TrimSuffix(filepath.Base(f), ".dcm")+".npy"))
		if err != nil {
			t.Fatal(err)
		}
		n := s.Rows * s.Cols
		src := output.SourceSlice{Header: s.Header, Rows: s.Rows, Cols: s.Cols, Scores: make([]float32, n), Mask: make([]bool, n), Display: make([]uint8, n)}
		for i, v := range a.U8 {
			src.Mask[i] = v != 0
			if v != 0 {
				src.Scores[i] = 1
			}
		}
		res.Sources = append(res.Sources, src)
	}
	obj, err := output.BuildSEG(res, output.SEGOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(segDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(segDir, "seg.dcm"), obj.Part10, 0o644); err != nil {
		t.Fatal(err)
	}
}
