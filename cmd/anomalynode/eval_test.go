package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"anomalynode/inference"
	"anomalynode/inference/eval"
	"anomalynode/inference/vit"
	"anomalynode/internal/peers"
)

// TestEvalFindingFlags runs eval's finding metrics from the command line: a
// model fitted on synthetic series with the tiny random-weight ViT, a lesion
// test series plus a healthy one (--healthy), the finding limits overridden
// (--fpr, --series-fpr, --min-volume, --min-lesion); then the same model
// without its finding calibration (an older model file).
func TestEvalFindingFlags(t *testing.T) {
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
	run := func(args ...string) (string, error) {
		t.Helper()
		e, out := quietEnv()
		err := commands[args[0]].run(t.Context(), e, args[1:])
		return out.String(), err
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := run(args...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		return out
	}
	size := []string{"--slices", "4", "--rows", "64", "--cols", "64"}
	must(append([]string{"synth", "--out", filepath.Join(dir, "train"), "--seed", "1"}, size...)...)
	must(append([]string{"synth", "--out", filepath.Join(dir, "val"), "--series", "2", "--seed", "3"}, size...)...)
	must(append([]string{"synth", "--out", filepath.Join(dir, "test"), "--lesions", "--seed", "9"}, size...)...)
	must(append([]string{"synth", "--out", filepath.Join(dir, "healthy"), "--seed", "11"}, size...)...)
	model := filepath.Join(dir, "model.safetensors")
	must("fit", "--normal", filepath.Join(dir, "train"), "--val", filepath.Join(dir, "val"), "--out", model,
		"--embedder", onnx, "--resolution", "56", "--components", "10", "--epochs", "2", "--batch", "2")
	m, err := inference.LoadModel(model)
	if err != nil {
		t.Fatal(err)
	}
	want, ok, err := m.FindingParams(0.05, ptrTo(0.5), ptrTo(50))
	if err != nil || !ok {
		t.Fatalf("model finding params: %v %v", ok, err)
	}

	evalArgs := func(model, out string, extra ...string) []string {
		return append([]string{"eval", "--model", model, "--images", filepath.Join(dir, "test", "images"), "--labels", filepath.Join(dir, "test", "labels"),
			"--out", out, "--embedder", onnx}, extra...)
	}
	summary := func(out string) *eval.Summary {
		t.Helper()
		var s eval.Summary
		b, err := os.ReadFile(filepath.Join(out, "summary.json"))
		if err != nil || json.Unmarshal(b, &s) != nil {
			t.Fatalf("summary.json: %v", err)
		}
		return &s
	}
	out := must(evalArgs(model, filepath.Join(dir, "e1"), "--healthy", filepath.Join(dir, "healthy"), "--fpr", "0.05",
		"--series-fpr", "0.5", "--min-volume", "50", "--min-lesion", "10")...)
	t.Log(out)
	s := summary(filepath.Join(dir, "e1"))
	f := s.Findings
	if f == nil {
		t.Fatalf("no finding metrics: %q\n%s", s.FindingsNote, out)
	}
	if f.PixelFPR != 0.05 || f.PixelThreshold != want.PixelThreshold || f.PeakThreshold != want.PeakThreshold || f.MinVolumeMM3 != 50 ||
		f.MinLesionMM3 != 10 || f.Series != 2 || f.HealthySeries != 1 || s.HealthyFiles != 4 || s.Slices != 8 ||
		f.Lesions+f.SmallLesions == 0 || len(f.LesionList) != f.Lesions {
		t.Errorf("finding metrics %+v (healthy files %d, slices %d)\n%s", f, s.HealthyFiles, s.Slices, out)
	}
	if !strings.Contains(out, "findings (pixel FPR 0.05: ") || !strings.Contains(out, "lesions >= 10 mm3 found: ") {
		t.Errorf("table:\n%s", out)
	}

	// An older model file: pixel metrics as before, findings not available.
	m.Meta.Findings = nil
	old := filepath.Join(dir, "old.safetensors")
	if err := inference.SaveModel(old, m); err != nil {
		t.Fatal(err)
	}
	out = must(evalArgs(old, filepath.Join(dir, "e2"))...)
	s = summary(filepath.Join(dir, "e2"))
	if s.Findings != nil || !strings.Contains(s.FindingsNote, "no finding calibration") || s.Metrics.AUROC == nil ||
		!strings.Contains(out, "findings: not available (the model file has no finding calibration") {
		t.Errorf("old model: %+v %q\n%s", s.Findings, s.FindingsNote, out)
	}

	for _, bad := range [][]string{{"--series-fpr", "2"}, {"--min-volume", "-1"}, {"--min-lesion", "NaN"}, {"--fpr", "0.02"}} {
		if _, err := run(evalArgs(model, filepath.Join(dir, "e3"), bad...)...); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

func ptrTo(v float64) *float64 { return &v }
