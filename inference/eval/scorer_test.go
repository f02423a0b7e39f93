package eval

import (
	"context"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"anomalynode/inference"
	"anomalynode/inference/findings"
	"anomalynode/inference/fitjob"
	"anomalynode/inference/pixel"
	"anomalynode/internal/npy"
	"anomalynode/internal/synth"
)

// pixelGeometry maps a rows x cols grid of one-pixel patches onto the slice
// one to one, so a test's patch values are its pixel scores.
func pixelGeometry(rows, cols int) inference.Geometry {
	return inference.Geometry{SrcRows: rows, SrcCols: cols, ResizedRows: rows, ResizedCols: cols,
		Rows: rows, Cols: cols, Patch: 1, GridRows: rows, GridCols: cols}
}

// configModel is a 2-D model with three prototypes, pixel thresholds 0.3,
// 0.2, 0.1 at FPR 1, 5, 10 %, and (withFindings) a finding calibration at 1 %:
// 20 healthy series, series i with one 200 mm3 region of peak 0.3+(i+1)/10.
func configModel(t *testing.T, withFindings bool) *inference.Model {
	m := &inference.Model{K: 3, D: 2, Means: []float32{1, 0, 0, 1, 0.6, 0.8}, Variances: []float32{1, 1, 1, 1, 1, 1},
		LogWeights: []float32{float32(math.Log(0.5)), float32(math.Log(0.3)), float32(math.Log(0.2))}}
	m.Meta.FormatVersion, m.Meta.Tau = inference.ModelFormatVersion, inference.DefaultTau
	m.Meta.Thresholds = map[string]float32{"0.01": 0.3, "0.05": 0.2, "0.10": 0.1}
	if withFindings {
		var series []findings.SeriesRegions
		for i := 0; i < 20; i++ {
			series = append(series, findings.SeriesRegions{Voxels: 1000,
				Regions: []findings.Region{{VolumeMM3: 200, Peak: 0.3 + float32(i+1)/10, Voxels: 20}}})
		}
		c, err := findings.Calibrate(series, 0.01, 0.3, 0.05, 100)
		if err != nil {
			t.Fatal(err)
		}
		m.Meta.Findings = map[string]*findings.Calibration{"0.01": c}
	}
	return m
}

// blobEmbedder embeds a DICOM file as one-pixel 2-D patches: (1, 0)
// everywhere, (0, -1) in a 6 x 6 blob on the slices named, with each slice's
// series and plane, as the ONNX embedder does for a real file.
type blobEmbedder map[string]bool

func (b blobEmbedder) EmbedFile(_ context.Context, path string) ([]fitjob.EmbeddedSlice, error) {
	sl, err := pixel.DecodeFile(path)
	if err != nil {
		return nil, err
	}
	var out []fitjob.EmbeddedSlice
	for _, s := range sl {
		pl, err := inference.Plane(s)
		if err != nil {
			return nil, err
		}
		x := make([]float32, 2*s.Rows*s.Cols)
		for i := 0; i < s.Rows*s.Cols; i++ {
			if r, c := i/s.Cols, i%s.Cols; b[s.SOPInstanceUID] && r >= 10 && r < 16 && c >= 10 && c < 16 {
				x[2*i+1] = -1
			} else {
				x[2*i] = 1
			}
		}
		out = append(out, fitjob.EmbeddedSlice{Patches: x, D: 2, Geometry: pixelGeometry(s.Rows, s.Cols), Series: s.SeriesInstanceUID, Plane: &pl})
	}
	return out, nil
}

func (blobEmbedder) Identity() string { return "blob-test" }

func TestConfigure(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	model := configModel(t, true)
	ptr := func(v float64) *float64 { return &v }

	// dpmm: the model's prototypes, thresholds and finding limits.
	var o Options
	if err := o.Configure(ctx, model, ScorerConfig{Kind: "dpmm"}); err != nil {
		t.Fatal(err)
	}
	want, _, _ := model.FindingParams(0.01, nil, nil)
	if o.Scorer == nil || o.ScorerName != "dpmm" || o.References != 3 || !slices.Equal(o.Thresholds, []float32{0.3, 0.2, 0.1}) ||
		!slices.Equal(o.FPRKeys, []string{"0.01", "0.05", "0.10"}) || !strings.Contains(o.ThresholdSource, "model file") {
		t.Errorf("dpmm: %+v", o)
	}
	if o.Findings == nil || *o.Findings != want || o.FindingFPR != 0.01 || !strings.Contains(o.FindingsSource, "20 healthy series") || o.FindingsNote != "" {
		t.Errorf("dpmm findings %+v (%q %q), want %+v", o.Findings, o.FindingsSource, o.FindingsNote, want)
	}
	// ... the limits overridden as fit's flags do: 2 of 20 series may keep
	// their 200 mm3 region, so the peak limit is just above the third
	// strongest (0.3 + 18/10); above 200 mm3 no region is left to limit.
	if err := o.Configure(ctx, model, ScorerConfig{Kind: "dpmm", SeriesFPR: ptr(0.10)}); err != nil {
		t.Fatal(err)
	}
	var third float32 = 18
	if o.Findings.PeakThreshold != math.Nextafter32(0.3+third/10, 10) || o.Findings.MinVolumeMM3 != 100 {
		t.Errorf("series FPR 0.10: %+v", o.Findings)
	}
	if err := o.Configure(ctx, model, ScorerConfig{Kind: "dpmm", MinVolumeMM3: ptr(250)}); err != nil {
		t.Fatal(err)
	}
	if o.Findings.PeakThreshold != 0.3 || o.Findings.MinVolumeMM3 != 250 {
		t.Errorf("min volume 250: %+v", o.Findings)
	}
	// An older model file: no finding metrics, and why.
	if err := o.Configure(ctx, configModel(t, false), ScorerConfig{Kind: "dpmm"}); err != nil {
		t.Fatal(err)
	}
	if o.Findings != nil || !strings.Contains(o.FindingsNote, "no finding calibration") {
		t.Errorf("old model: %+v %q", o.Findings, o.FindingsNote)
	}

	// knn on a bank, no --val: neither thresholds nor finding limits.
	bank := filepath.Join(dir, "bank.npy")
	if err := npy.Write(bank, &npy.Array{Shape: []int{5, 2}, Dtype: npy.DtypeFloat32, F32: []float32{1, 0, 1, 0, 1, 0, 0.8, 0.6, 0.8, 0.6}}); err != nil {
		t.Fatal(err)
	}
	o = Options{}
	if err := o.Configure(ctx, model, ScorerConfig{Kind: "knn", Bank: []string{bank}}); err != nil {
		t.Fatal(err)
	}
	if o.ScorerName != "knn" || o.References != 5 || o.FPRKeys != nil || o.Thresholds != nil || !strings.HasPrefix(o.ThresholdSource, "none") ||
		o.Findings != nil || !strings.Contains(o.FindingsNote, "--val") {
		t.Errorf("knn: %+v", o)
	}

	// coreset with healthy validation series: its own thresholds and finding
	// limits. Two synth series, one with a blob (score 1 - max(cos 90,
	// cos 127) = 1) where every other pixel scores 0: no series may keep a
	// finding, so the peak limit is just above 1.
	blobs := blobEmbedder{}
	for i := 0; i < 2; i++ {
		r, err := synth.Generate(synth.Options{Seed: uint64(10 + i), Slices: 4, Rows: 32, Cols: 32})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Write(filepath.Join(dir, "val", string(rune('a'+i)))); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			blobs[r.Slices[1].SOPInstanceUID] = true
		}
	}
	c := ScorerConfig{Kind: "coreset", Bank: []string{bank}, CoresetSize: 2, CoresetMethod: "greedy", Val: []string{filepath.Join(dir, "val")},
		Load: fitjob.LoadOptions{Embedder: blobs}}
	if err := o.Configure(ctx, model, c); err != nil {
		t.Fatal(err)
	}
	if o.ScorerName != "coreset-greedy-2" || o.References != 2 || len(o.Thresholds) != 3 || !strings.Contains(o.ThresholdSource, "8192 pixel scores") {
		t.Errorf("coreset: %+v", o)
	}
	if o.Findings == nil || o.FindingsSource != "2 healthy validation series (this scorer)" || o.Findings.PixelThreshold != o.Thresholds[0] ||
		o.Findings.PeakThreshold != math.Nextafter32(1, 2) || o.Findings.MinVolumeMM3 != findings.DefaultMinVolumeMM3 {
		t.Errorf("coreset findings %+v %q %q", o.Findings, o.FindingsSource, o.FindingsNote)
	}

	for _, bad := range []ScorerConfig{
		{Kind: "svm"},
		{Kind: "knn"},
		{Kind: "coreset", Bank: []string{bank}, CoresetMethod: "best"},
		{Kind: "dpmm", FindingFPR: 0.02},
		{Kind: "dpmm", SeriesFPR: ptr(1.5)},
	} {
		if err := (&Options{}).Configure(ctx, model, bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	wide := configModel(t, true)
	wide.D, wide.Means, wide.Variances = 1, []float32{1, 1, 1}, []float32{1, 1, 1}
	if err := (&Options{}).Configure(ctx, wide, ScorerConfig{Kind: "knn", Bank: []string{bank}}); err == nil || !strings.Contains(err.Error(), "dimension") {
		t.Errorf("bank of another dimension: %v", err)
	}
}
