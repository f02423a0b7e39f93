package inference

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"anomalynode/inference/findings"
)

func testModel(k, d int, seed uint64) *Model {
	r := rand.New(rand.NewPCG(seed, 1))
	m := &Model{K: k, D: d, Means: make([]float32, k*d), Variances: make([]float32, k*d), LogWeights: make([]float32, k)}
	for i := range m.Means {
		m.Means[i] = float32(r.NormFloat64())
		m.Variances[i] = 0.01 + float32(r.Float64())
	}
	var tot float64
	w := make([]float64, k)
	for i := range w {
		w[i] = r.Float64()
		tot += w[i]
	}
	for i := range w {
		m.LogWeights[i] = float32(math.Log(w[i] / tot))
	}
	m.Meta = ModelMeta{
		FormatVersion: ModelFormatVersion,
		Embedder:      EmbedderInfo{Name: "test", SHA256: strings.Repeat("ab", 32), InputName: "pixel_values", OutputName: "last_hidden_state"},
		Resolution:    448, PatchSize: 14,
		Preprocessing: PreprocessSpec{VOI: VOIPercentile, PercentileLo: 0.5, PercentileHi: 99.5},
		Thresholds:    map[string]float32{"0.01": 0.5, "0.05": 0.4, "0.10": 0.3},
		Tau:           DefaultTau,
		Fit:           FitInfo{Components: k, Epochs: 40, BestEpoch: 31, ValLogLikelihood: 123.5, ActiveComponents: k, Alpha: 2.5, Seed: 7},
	}
	return m
}

func TestModelRoundTrip(t *testing.T) {
	m := testModel(7, 5, 1)
	m.LogWeights[3] = float32(math.Inf(-1))
	path := filepath.Join(t.TempDir(), "m.safetensors")
	if err := SaveModel(path, m); err != nil {
		t.Fatal(err)
	}
	got, err := LoadModel(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.K != m.K || got.D != m.D {
		t.Fatalf("K,D = %d,%d", got.K, got.D)
	}
	for i := range m.Means {
		if got.Means[i] != m.Means[i] || got.Variances[i] != m.Variances[i] {
			t.Fatalf("tensor value %d differs", i)
		}
	}
	for i := range m.LogWeights {
		if got.LogWeights[i] != m.LogWeights[i] {
			t.Fatalf("log weight %d: %v != %v", i, got.LogWeights[i], m.LogWeights[i])
		}
	}
	if got.Meta.Fit != m.Meta.Fit || got.Meta.Embedder != m.Meta.Embedder || got.Meta.Preprocessing != m.Meta.Preprocessing {
		t.Fatalf("meta differs: %+v", got.Meta)
	}
	if th, err := got.Threshold(0.05); err != nil || th != 0.4 {
		t.Fatalf("Threshold(0.05) = %v, %v", th, err)
	}
	if _, err := got.Threshold(0.2); err == nil {
		t.Fatal("Threshold(0.2) should fail")
	}
	protos, idx := got.Prototypes(DefaultTau)
	if len(idx) != 6 || len(protos) != 6*5 {
		t.Fatalf("prototypes: %d (%v), want 6 (component 3 has weight 0)", len(idx), idx)
	}
	for _, k := range idx {
		if k == 3 {
			t.Fatal("zero-weight component is a prototype")
		}
	}
}

// testCalibration is a finding calibration on the 0.01 threshold (0.5) of
// testModel: 20 healthy series, series i with one 200 mm3 region of peak
// 0.5+(i+1)/10.
func testCalibration(t *testing.T) *findings.Calibration {
	var series []findings.SeriesRegions
	for i := 0; i < 20; i++ {
		series = append(series, findings.SeriesRegions{Voxels: 1000,
			Regions: []findings.Region{{VolumeMM3: 200, Peak: 0.5 + float32(i+1)/10, Voxels: 20}}})
	}
	c, err := findings.Calibrate(series, 0.01, 0.5, 0.05, 100)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestModelFindings(t *testing.T) {
	m := testModel(3, 4, 5)
	m.Meta.Findings = map[string]*findings.Calibration{"0.01": testCalibration(t)}
	var buf bytes.Buffer
	if err := EncodeModel(&buf, m); err != nil {
		t.Fatal(err)
	}
	got, err := DecodeModel(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	ptr := func(v float64) *float64 { return &v }
	p, ok, err := got.FindingParams(0.01, ptr(0.10), ptr(150))
	want, _ := m.Meta.Findings["0.01"].Params(0.10, 150)
	if err != nil || !ok || p != want || p.PeakThreshold <= p.PixelThreshold {
		t.Fatalf("FindingParams(0.01, 0.10, 150) = %+v, %v, %v; want %+v", p, ok, err, want)
	}
	// Without overrides: the limits chosen at fit time.
	p, ok, err = got.FindingParams(0.01, nil, nil)
	if c := m.Meta.Findings["0.01"]; err != nil || !ok || p.PeakThreshold != c.PeakThreshold || p.MinVolumeMM3 != c.MinVolumeMM3 {
		t.Fatalf("FindingParams(0.01) = %+v, %v, %v; want the fitted %+v", p, ok, err, c)
	}
	if _, ok, err := got.FindingParams(0.05, nil, nil); ok || err != nil {
		t.Errorf("FindingParams(0.05) ok=%v err=%v, want no calibration", ok, err)
	}
	if _, _, err := got.FindingParams(0.01, ptr(2), nil); err == nil {
		t.Error("series FPR 2: no error")
	}

	// A format-1 file, written before finding calibration, loads without one.
	old := testModel(3, 4, 6)
	old.Meta.FormatVersion = 1
	buf.Reset()
	if err := EncodeModel(&buf, old); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `\"format_version\":1,`) || strings.Contains(buf.String(), "findings") {
		t.Fatal("not a format-1 header")
	}
	got, err = DecodeModel(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := got.FindingParams(0.01, nil, nil); ok || err != nil {
		t.Errorf("format 1: ok=%v err=%v, want no calibration", ok, err)
	}

	for name, mutate := range map[string]func(c *findings.Calibration) string{
		"key without a threshold": func(c *findings.Calibration) string { return "0.02" },
		"other pixel threshold":   func(c *findings.Calibration) string { c.PixelThreshold = 0.4; return "0.01" },
		"other pixel FPR":         func(c *findings.Calibration) string { c.PixelFPR = 0.05; return "0.01" },
		"invalid":                 func(c *findings.Calibration) string { c.Series = nil; return "0.01" },
	} {
		m := testModel(3, 4, 5)
		c := testCalibration(t)
		m.Meta.Findings = map[string]*findings.Calibration{mutate(c): c}
		if err := m.Validate(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestModelFileLayout checks the bytes against the safetensors specification
// independently of DecodeModel.
func TestModelFileLayout(t *testing.T) {
	m := testModel(2, 3, 2)
	var buf bytes.Buffer
	if err := EncodeModel(&buf, m); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	hl := binary.LittleEndian.Uint64(b)
	if (8+hl)%8 != 0 {
		t.Errorf("data not 8-byte aligned: header length %d", hl)
	}
	h := string(b[8 : 8+hl])
	for _, want := range []string{`"means":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}`, `"log_weights":{"dtype":"F32","shape":[2],"data_offsets":[48,56]}`, `"__metadata__":{"anomalynode":`} {
		if !strings.Contains(h, want) {
			t.Errorf("header lacks %s:\n%s", want, h)
		}
	}
	if got := len(b) - 8 - int(hl); got != 56 {
		t.Errorf("data section %d bytes, want 56", got)
	}
	if v := math.Float32frombits(binary.LittleEndian.Uint32(b[8+hl+4:])); v != m.Means[1] {
		t.Errorf("means[0,1] = %v in file, want %v", v, m.Means[1])
	}
}

func TestModelCorrupt(t *testing.T) {
	m := testModel(3, 4, 3)
	var buf bytes.Buffer
	if err := EncodeModel(&buf, m); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	hl := int(binary.LittleEndian.Uint64(good))
	mutate := func(f func(b []byte) []byte) []byte {
		return f(append([]byte(nil), good...))
	}
	setF32 := func(b []byte, off int, v float32) []byte {
		binary.LittleEndian.PutUint32(b[8+hl+off:], math.Float32bits(v))
		return b
	}
	replaceHeader := func(old, new string) []byte {
		h := strings.Replace(string(good[8:8+hl]), old, new, 1)
		out := make([]byte, 8)
		binary.LittleEndian.PutUint64(out, uint64(len(h)))
		return append(append(out, h...), good[8+hl:]...)
	}
	cases := map[string][]byte{
		"empty":               {},
		"short":               good[:5],
		"huge header len":     mutate(func(b []byte) []byte { binary.LittleEndian.PutUint64(b, 1<<40); return b }),
		"truncated data":      good[:len(good)-4],
		"trailing bytes":      append(append([]byte(nil), good...), 0, 0, 0, 0),
		"nan mean":            mutate(func(b []byte) []byte { return setF32(b, 4, float32(math.NaN())) }),
		"inf mean":            mutate(func(b []byte) []byte { return setF32(b, 0, float32(math.Inf(1))) }),
		"zero variance":       mutate(func(b []byte) []byte { return setF32(b, 48, 0) }),
		"positive logw":       mutate(func(b []byte) []byte { return setF32(b, 96, 3) }),
		"bad json":            mutate(func(b []byte) []byte { b[9] = '!'; return b }),
		"wrong dtype":         replaceHeader(`"means":{"dtype":"F32"`, `"means":{"dtype":"F64"`),
		"wrong shape":         replaceHeader(`"shape":[3,4]`, `"shape":[4,3]`),
		"no meta":             replaceHeader(`"anomalynode":`, `"other":`),
		"unsorted thresholds": replaceHeader(`\"0.01\":0.5`, `\"0.01\":0.1`),
		"bad voi":             replaceHeader(`\"voi\":\"percentile\"`, `\"voi\":\"magic\"`),
		"future version":      replaceHeader(fmt.Sprintf(`\"format_version\":%d`, ModelFormatVersion), `\"format_version\":9`),
		"unknown field":       replaceHeader(`\"tau\":`, `\"taux\":1,\"tau\":`),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := DecodeModel(b)
			if !errors.Is(err, ErrCorruptModel) {
				t.Fatalf("err = %v, want ErrCorruptModel", err)
			}
		})
	}
	if _, err := DecodeModel(good); err != nil {
		t.Fatalf("good file: %v", err)
	}
}

func TestVerifyEmbedder(t *testing.T) {
	dir := t.TempDir()
	onnx := filepath.Join(dir, "e.onnx")
	if err := os.WriteFile(onnx, []byte("not really onnx"), 0o644); err != nil {
		t.Fatal(err)
	}
	m := testModel(2, 2, 4)
	if err := m.VerifyEmbedder(onnx); !errors.Is(err, ErrEmbedderMismatch) {
		t.Fatalf("err = %v, want mismatch", err)
	}
	sum, err := FileSHA256(onnx)
	if err != nil {
		t.Fatal(err)
	}
	m.Meta.Embedder.SHA256 = sum
	if err := m.VerifyEmbedder(onnx); err != nil {
		t.Fatal(err)
	}
}

func FuzzDecodeModel(f *testing.F) {
	var buf bytes.Buffer
	if err := EncodeModel(&buf, testModel(3, 4, 9)); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeModel(b)
		if err != nil {
			if !errors.Is(err, ErrCorruptModel) {
				t.Fatalf("error %v does not wrap ErrCorruptModel", err)
			}
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("decoded model fails validation: %v", err)
		}
		var out bytes.Buffer
		if err := EncodeModel(&out, m); err != nil {
			t.Fatal(err)
		}
		if _, err := DecodeModel(out.Bytes()); err != nil {
			t.Fatalf("re-encoded model does not decode: %v", err)
		}
	})
}
