package inference

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"anomalynode/inference/pixel"
)

// closingScorer stands in for a GPU scorer: it counts calls and Close.
type closingScorer struct {
	inner  Scorer
	calls  int
	closed bool
}

func (c *closingScorer) Score(p []float32, n int, out []float32) { c.calls++; c.inner.Score(p, n, out) }
func (c *closingScorer) Close() error                            { c.closed = true; return nil }

func writeServedModel(t *testing.T, d int, embedder string) string {
	t.Helper()
	m := testModel(5, d, 21)
	m.Meta.Resolution = 56
	sum, err := FileSHA256(embedder)
	if err != nil {
		t.Fatal(err)
	}
	m.Meta.Embedder.SHA256 = sum
	p := filepath.Join(t.TempDir(), "m.safetensors")
	if err := SaveModel(p, m); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestOpenModel(t *testing.T) {
	onnx := testViT(t, "tiny", 0)
	path := writeServedModel(t, 48, onnx)
	var cs *closingScorer
	setup := ModelSetup{ModelPath: path, EmbedderPath: onnx, VerifyEmbedder: true, ORTLibrary: ortLib(), Threads: 1, FPR: 0.05,
		NewScorer: func(m *Model) (Scorer, error) {
			inner, err := NewDPMMScorer(m)
			cs = &closingScorer{inner: inner}
			return cs, err
		}}
	s, err := OpenModel(setup)
	if err != nil {
		t.Fatal(err)
	}
	if s.Threshold != 0.4 || s.Active != Scorer(cs) || s.Scorer.Prototypes() != 5 {
		t.Fatalf("served: threshold %v active %T", s.Threshold, s.Active)
	}
	in := []Input{{Slices: []*pixel.Slice{{Rows: 30, Cols: 40, Slope: 1, Photometric: "MONOCHROME2", MinStored: 0, MaxStored: 255, Stored: make([]int32, 1200)}}}}
	res, err := s.Engine.Process(context.Background(), in)
	if err != nil || res[0].Err != nil || cs.calls != 1 {
		t.Fatalf("process: %v %v, %d scorer calls", err, res[0].Err, cs.calls)
	}
	if err := s.Close(); err != nil || !cs.closed {
		t.Fatalf("close: %v, scorer closed %v", err, cs.closed)
	}

	bad := []struct {
		name string
		edit func(*ModelSetup)
		want string
	}{
		{"fpr", func(m *ModelSetup) { m.FPR = 0.2 }, "no threshold for FPR 0.20"},
		{"embedder", func(m *ModelSetup) { m.EmbedderPath = testViT(t, "tiny", 4) }, "does not match"},
		{"dim", func(m *ModelSetup) { m.ModelPath = writeServedModel(t, 8, onnx) }, "D=8"},
		{"voi", func(m *ModelSetup) { m.VOI = &PreprocessSpec{VOI: VOIModelWindow} }, "window_width"},
		{"io name", func(m *ModelSetup) { m.OutputName = "pooler_output" }, "no output"},
	}
	for _, tc := range bad {
		s := setup
		s.NewScorer = nil
		tc.edit(&s)
		if _, err := OpenModel(s); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
	s2 := setup
	s2.VerifyEmbedder, s2.EmbedderPath = true, testViT(t, "tiny", 4)
	if _, err := OpenModel(s2); !errors.Is(err, ErrEmbedderMismatch) {
		t.Fatalf("mismatch: %v", err)
	}
}
