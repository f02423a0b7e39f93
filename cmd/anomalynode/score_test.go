package main

import (
	"anomalynode/internal/peers"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"anomalynode/inference"
	"anomalynode/inference/findings"
	"anomalynode/inference/vit"
	"anomalynode/internal/npy"
	"anomalynode/internal/synth"
	"anomalynode/output"
)

// scoreFixture writes a tiny ViT, a model file fitted "for" it (random
// prototypes, real embedder sha256) and a config naming both.
func scoreFixture(t *testing.T) (cfgPath, modelPath string) {
	t.Helper()
	return scoreFixtureWith(t, map[string]float32{"0.01": 0.9, "0.05": 0.8, "0.10": 0.7}, nil)
}

// scoreFixtureWith is scoreFixture with given pixel thresholds and finding
// calibrations.
func scoreFixtureWith(t *testing.T, thresholds map[string]float32, calib map[string]*findings.Calibration) (cfgPath, modelPath string) {
	t.Helper()
	dir := t.TempDir()
	c, err := vit.Preset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	c.Registers = 4
	onnx := filepath.Join(dir, "tiny.onnx")
	sum, _, err := vit.WriteFile(onnx, c)
	if err != nil {
		t.Fatal(err)
	}
	k, d := 6, c.Dim
	m := &inference.Model{K: k, D: d, Means: make([]float32, k*d), Variances: make([]float32, k*d), LogWeights: make([]float32, k)}
	for i := range m.Means {
		m.Means[i] = float32((i*7919)%13) - 6
		m.Variances[i] = 1
	}
	for i := range m.LogWeights {
		m.LogWeights[i] = -1.791759 // log(1/6)
	}
	m.Meta = inference.ModelMeta{
		FormatVersion: inference.ModelFormatVersion, Resolution: 112, PatchSize: 14, Tau: inference.DefaultTau,
		Embedder:      inference.EmbedderInfo{Name: "tiny", SHA256: sum, InputName: vit.InputName, OutputName: vit.OutputName},
		Preprocessing: inference.PreprocessSpec{VOI: inference.VOIPercentile, PercentileLo: 0.5, PercentileHi: 99.5},
		Thresholds:    thresholds,
		Findings:      calib,
	}
	modelPath = filepath.Join(dir, "model.safetensors")
	if err := inference.SaveModel(modelPath, m); err != nil {
		t.Fatal(err)
	}
	lib := peers.ORTLibrary()
	cfgPath = filepath.Join(dir, "node.yaml")
	cfg := fmt.Sprintf("inference:\n  ort_library: %s\n  threads: 1\n  batch: 3\nmodels:\n  brain:\n    path: %s\n    embedder: %s\n    fpr: 0.05\n", lib, modelPath, onnx)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfgPath, modelPath
}

func TestScoreCommand(t *testing.T) {
	cfgPath, modelPath := scoreFixture(t)
	in, out := t.TempDir(), t.TempDir()
	var mans []*synth.Manifest
	for i, sub := range []string{"a", "nested/b"} {
		m, err := synth.WriteSeries(filepath.Join(in, sub), synth.Options{Seed: uint64(10 + i), Slices: 3, Rows: 60, Cols: 76, Source: synth.SourcePhantom})
		if err != nil {
			t.Fatal(err)
		}
		mans = append(mans, m)
	}
	os.WriteFile(filepath.Join(in, "README.txt"), []byte("not dicom"), 0o644)

	var stdout bytes.Buffer
	e := &env{log: zerolog.Nop(), stdout: &stdout, stderr: &stdout}
	if err := runScore(t.Context(), e, []string{"--config", cfgPath, "--model", modelPath, "--in", in, "--out", out}); err != nil {
		t.Fatalf("%v\n%s", err, stdout.String())
	}
	for _, m := range mans {
		b, err := os.ReadFile(filepath.Join(out, m.SeriesInstanceUID, "summary.json"))
		if err != nil {
			t.Fatal(err)
		}
		var sum inference.SeriesSummary
		if err := json.Unmarshal(b, &sum); err != nil {
			t.Fatal(err)
		}
		if len(sum.Slices) != 3 || sum.Errors != 0 || sum.FPR != "0.05" || sum.Threshold != 0.8 || sum.MeanMS.Model <= 0 {
			t.Fatalf("summary: %s", b)
		}
		for i, s := range sum.Slices {
			if s.SOPInstanceUID != m.Slices[i].SOPInstanceUID {
				t.Fatalf("slice %d is %s, want %s (InstanceNumber order)", i, s.SOPInstanceUID, m.Slices[i].SOPInstanceUID)
			}
			a, err := npy.Read(filepath.Join(out, m.SeriesInstanceUID, s.Map))
			if err != nil {
				t.Fatal(err)
			}
			if a.Dtype != npy.DtypeFloat32 || a.Shape[0] != 60 || a.Shape[1] != 76 {
				t.Fatalf("map %s: %v %v", s.Map, a.Dtype, a.Shape)
			}
			var mx float32
			for _, v := range a.F32 {
				mx = max(mx, v)
			}
			if mx != s.Max {
				t.Fatalf("map max %v, summary max %v", mx, s.Max)
			}
		}
		if !strings.Contains(stdout.String(), m.SeriesInstanceUID) {
			t.Fatalf("no line for %s in %q", m.SeriesInstanceUID, stdout.String())
		}
		// The node's builders: one SEG whose frames reference this series, one SC per slice.
		segs, _ := filepath.Glob(filepath.Join(out, m.SeriesInstanceUID, "SEG_*.dcm"))
		scs, _ := filepath.Glob(filepath.Join(out, m.SeriesInstanceUID, "SC_*.dcm"))
		if len(segs) != 1 || len(scs) != 3 {
			t.Fatalf("%d SEG and %d SC files, want 1 and 3", len(segs), len(scs))
		}
		seg := readSEGFile(t, segs[0])
		for _, f := range seg.Frames {
			if !slices.ContainsFunc(m.Slices, func(sl synth.ManifestSlice) bool { return sl.SOPInstanceUID == f.SourceSOPInstanceUID }) {
				t.Fatalf("SEG frame references %s, not a slice of the series", f.SourceSOPInstanceUID)
			}
		}
	}
}

func TestScoreCommandErrors(t *testing.T) {
	cfgPath, modelPath := scoreFixture(t)
	e := &env{log: zerolog.Nop(), stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}}
	if err := runScore(t.Context(), e, []string{"--help"}); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
	if err := runScore(t.Context(), e, []string{"--model", modelPath}); err == nil {
		t.Fatal("missing --in/--out accepted")
	}
	// An embedder that is not the one the model was fitted with.
	other := filepath.Join(t.TempDir(), "other.onnx")
	c, _ := vit.Preset("tiny")
	c.Seed = 99
	if _, _, err := vit.WriteFile(other, c); err != nil {
		t.Fatal(err)
	}
	err := runScore(t.Context(), e, []string{"--config", cfgPath, "--model", modelPath, "--embedder", other, "--in", t.TempDir(), "--out", t.TempDir()})
	if !errors.Is(err, inference.ErrEmbedderMismatch) {
		t.Fatalf("wrong embedder: %v", err)
	}
	// A series with one JPEG 2000 instance: the rest is scored and the summary
	// marks that slice unsupported; the command reports the failure.
	in, out := t.TempDir(), t.TempDir()
	m, err := synth.WriteSeries(in, synth.Options{Seed: 3, Slices: 2, Rows: 40, Cols: 40, Source: synth.SourcePhantom})
	if err != nil {
		t.Fatal(err)
	}
	j2k := filepath.Join(in, m.Slices[1].File)
	ds, err := dicom.ParseFile(j2k, nil)
	if err != nil {
		t.Fatal(err)
	}
	ts, _ := ds.FindElementByTag(tag.TransferSyntaxUID)
	ts.Value, _ = dicom.NewValue([]string{"1.2.840.10008.1.2.4.90"})
	var buf bytes.Buffer
	if err := dicom.Write(&buf, ds, dicom.SkipVRVerification()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(j2k, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	err = runScore(t.Context(), e, []string{"--config", cfgPath, "--model", "brain", "--in", in, "--out", out})
	if err == nil || !strings.Contains(err.Error(), "1 slices or files could not be scored") {
		t.Fatalf("err = %v", err)
	}
	b, err := os.ReadFile(filepath.Join(out, m.SeriesInstanceUID, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	var sum inference.SeriesSummary
	if err := json.Unmarshal(b, &sum); err != nil {
		t.Fatal(err)
	}
	if sum.Errors != 1 || len(sum.Slices) != 2 || sum.Slices[0].Map == "" || !sum.Slices[1].Quarantine {
		t.Fatalf("summary: %s", b)
	}
}

// TestScoreFindings scores with a finding calibration: a model whose healthy
// series had a region stronger than any score gets no finding and so no SEG,
// only the "no finding" page; a model whose pixel and peak thresholds are 0
// sees the whole volume as one finding, with its SEG segment and heat maps.
func TestScoreFindings(t *testing.T) {
	in := t.TempDir()
	m, err := synth.WriteSeries(in, synth.Options{Seed: 31, Slices: 3, Rows: 60, Cols: 76, Source: synth.SourcePhantom})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		threshold float32
		peak      float32
		want      int
	}{{"none", 0.8, 1e6, 0}, {"whole", 0, 0, 1}} {
		t.Run(tc.name, func(t *testing.T) {
			series := []findings.SeriesRegions{{Voxels: 1000, Regions: []findings.Region{{VolumeMM3: 1e9, Peak: tc.peak, Voxels: 1000}}}}
			calib, err := findings.Calibrate(series, 0.05, tc.threshold, 0, 100)
			if err != nil {
				t.Fatal(err)
			}
			cfgPath, modelPath := scoreFixtureWith(t, map[string]float32{"0.05": tc.threshold}, map[string]*findings.Calibration{"0.05": calib})
			out := t.TempDir()
			var stdout bytes.Buffer
			e := &env{log: zerolog.Nop(), stdout: &stdout, stderr: &stdout}
			if err := runScore(t.Context(), e, []string{"--config", cfgPath, "--model", modelPath, "--in", in, "--out", out}); err != nil {
				t.Fatalf("%v\n%s", err, stdout.String())
			}
			dir := filepath.Join(out, m.SeriesInstanceUID)
			b, err := os.ReadFile(filepath.Join(dir, "summary.json"))
			if err != nil {
				t.Fatal(err)
			}
			var sum inference.SeriesSummary
			if err := json.Unmarshal(b, &sum); err != nil {
				t.Fatal(err)
			}
			if !sum.FindingCalibration || sum.Stacks != 1 || sum.FindingCount != tc.want || len(sum.Findings) != tc.want {
				t.Fatalf("summary: calibrated %v, %d stacks, %d findings; want %d\n%s", sum.FindingCalibration, sum.Stacks, sum.FindingCount, tc.want, b)
			}
			if !strings.Contains(stdout.String(), fmt.Sprintf("findings %d", tc.want)) {
				t.Errorf("stdout does not say 'findings %d': %s", tc.want, stdout.String())
			}
			segs, _ := filepath.Glob(filepath.Join(dir, "SEG_*.dcm"))
			scs, _ := filepath.Glob(filepath.Join(dir, "SC_*.dcm"))
			if tc.want == 0 {
				if len(segs) != 0 || len(scs) != 1 {
					t.Fatalf("%d SEG and %d SC files, want no SEG and the one 'no finding' page", len(segs), len(scs))
				}
				return
			}
			f := sum.Findings[0]
			if f.ID != 1 || f.Segment != 1 || f.FirstSlice != 0 || f.LastSlice != 2 || f.Voxels != 3*60*76 || f.VolumeMM3 <= 0 {
				t.Errorf("finding %+v, want the whole 3x60x76 volume", f)
			}
			if len(segs) != 1 || len(scs) != 3 {
				t.Fatalf("%d SEG and %d SC files, want 1 and 3", len(segs), len(scs))
			}
			seg := readSEGFile(t, segs[0])
			if len(seg.Frames) != 3 {
				t.Fatalf("%d SEG frames, want 3", len(seg.Frames))
			}
			for _, fr := range seg.Frames {
				if fr.SegmentNumber != 1 || slices.Contains(fr.Mask, false) {
					t.Fatalf("frame of segment %d does not cover the slice", fr.SegmentNumber)
				}
			}
		})
	}
}

// readSEGFile reads the SEG written at path.
func readSEGFile(t *testing.T, path string) *output.SEG {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	seg, err := output.ReadSEG(data)
	if err != nil {
		t.Fatalf("SEG %s does not read back: %v", path, err)
	}
	return seg
}
