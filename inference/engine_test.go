package inference

import (
	"context"
	"errors"
	"math"

	"path/filepath"
	"sort"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"anomalynode/inference/pixel"
	"anomalynode/inference/pixel/pixeltest"
	"anomalynode/internal/fault"
	"anomalynode/internal/synth"
)

// testEngine builds an engine on the tiny ViT (4 registers) with a random
// 48-dim DPMM model.
func testEngine(t *testing.T, batch int, reg prometheus.Registerer) (*Engine, *Embedder, *DPMMScorer) {
	t.Helper()
	initORT(t)
	emb, err := NewEmbedder(EmbedderOptions{ModelPath: testViT(t, "tiny", 4), Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emb.Close() })
	m := testModel(8, 48, 11)
	sc, err := NewDPMMScorer(m)
	if err != nil {
		t.Fatal(err)
	}
	pre := &Preprocessor{Resolution: 112, PatchSize: 14, VOI: PreprocessSpec{VOI: VOIPercentile, PercentileLo: 0.5, PercentileHi: 99.5}}
	e, err := NewEngine(EngineOptions{Backbone: emb, Scorer: sc, Preprocessor: pre, Threshold: 0.9, Batch: batch, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	return e, emb, sc
}

func writeSynth(t *testing.T, dir string, seed uint64, slices int) *synth.Manifest {
	t.Helper()
	m, err := synth.WriteSeries(dir, synth.Options{Seed: seed, Slices: slices, Rows: 72, Cols: 90, Source: synth.SourcePhantom})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func seriesInputs(m *synth.Manifest) []Input {
	var in []Input
	for _, s := range m.Slices {
		in = append(in, Input{Path: filepath.Join(m.Dir, s.File)})
	}
	return in
}

func TestEngineMatchesStages(t *testing.T) {
	reg := prometheus.NewRegistry()
	e, emb, sc := testEngine(t, 1, reg)
	man := writeSynth(t, t.TempDir(), 3, 2)
	res, err := e.Process(context.Background(), seriesInputs(man))
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 {
		t.Fatalf("%d results", len(res))
	}
	for i, r := range res {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		if r.Slice.SOPInstanceUID != man.Slices[i].SOPInstanceUID {
			t.Fatalf("result %d is %s", i, r.Slice.SOPInstanceUID)
		}
		n := man.Rows * man.Cols
		if len(r.Map) != n || len(r.Mask) != n || len(r.Display) != n || len(r.PatchScores) != r.Geometry.Patches() {
			t.Fatalf("sizes: map %d mask %d display %d patches %d", len(r.Map), len(r.Mask), len(r.Display), len(r.PatchScores))
		}
		if r.Timings.Model <= 0 || r.Timings.Decode <= 0 || r.Timings.Preprocess <= 0 {
			t.Fatalf("timings %+v", r.Timings)
		}
		// Recompute by hand through the public stages.
		slices, err := pixel.DecodeFile(r.Source)
		if err != nil {
			t.Fatal(err)
		}
		pr, err := e.o.Preprocessor.Preprocess(slices[0])
		if err != nil {
			t.Fatal(err)
		}
		g := pr.Geometry
		tok, err := emb.Embed(pr.Tensor, 1, g.Rows, g.Cols)
		if err != nil {
			t.Fatal(err)
		}
		if tok.Registers != 4 {
			t.Fatalf("registers %d", tok.Registers)
		}
		want := make([]float32, tok.Patches)
		sc.Score(tok.Tokens, tok.Patches, want)
		for k := range want {
			if math.Abs(float64(want[k]-r.PatchScores[k])) > 1e-5 {
				t.Fatalf("patch %d: %v, want %v", k, r.PatchScores[k], want[k])
			}
		}
		m := make([]float32, n)
		Upsample(want, g, m)
		sorted := append([]float32(nil), m...)
		sort.Slice(sorted, func(a, b int) bool { return sorted[a] > sorted[b] })
		k := int(math.Ceil(0.01 * float64(n)))
		var s float64
		for _, v := range sorted[:k] {
			s += float64(v)
		}
		if r.Max != sorted[0] || math.Abs(s/float64(k)-float64(r.TopMean)) > 1e-5 {
			t.Fatalf("slice scores %v %v, want %v %v", r.Max, r.TopMean, sorted[0], s/float64(k))
		}
		ones := 0
		for p, v := range r.Mask {
			if (v == 1) != (r.Map[p] > 0.9) {
				t.Fatalf("mask pixel %d = %d for score %v", p, v, r.Map[p])
			}
			ones += int(v)
		}
		if ones != r.MaskedPixels {
			t.Fatalf("MaskedPixels %d, counted %d", r.MaskedPixels, ones)
		}
		if d := float64(r.Display[0]) - float64(pr.Grey[0])*255; d > 0.5001 || d < -0.5001 {
			t.Fatal("display does not match the VOI grey")
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) != 1 || len(mfs[0].GetMetric()) != 5 || mfs[0].GetMetric()[0].GetHistogram().GetSampleCount() != 2 {
		t.Fatalf("stage histogram: %v", mfs)
	}
}

// TestEngineBatching: a batched run gives the maps of one-at-a-time runs,
// across two series and a multi-frame file, and a bad file does not stop the rest.
func TestEngineBatching(t *testing.T) {
	dir := t.TempDir()
	m1 := writeSynth(t, filepath.Join(dir, "a"), 1, 3)
	m2 := writeSynth(t, filepath.Join(dir, "b"), 2, 2)
	bad := pixeltest.Write(t, dir, "j2k.dcm", pixeltest.Spec{TS: "1.2.840.10008.1.2.4.90", Rows: 8, Cols: 8, Fragments: [][]byte{{1, 2}}})
	multi := pixeltest.Write(t, dir, "multi.dcm", pixeltest.Spec{Rows: 72, Cols: 90, Frames: 2, Raw: pixeltest.Ramp(2*72*90, func(i int) uint32 { return uint32((i * 37) % 4000) })})
	inputs := append(seriesInputs(m1), Input{Path: bad}, Input{Path: multi})
	inputs = append(inputs, seriesInputs(m2)...)

	e1, _, _ := testEngine(t, 1, nil)
	e4, _, _ := testEngine(t, 4, nil)
	r1, err := e1.Process(context.Background(), inputs)
	if err != nil {
		t.Fatal(err)
	}
	r4, err := e4.Process(context.Background(), inputs)
	if err != nil {
		t.Fatal(err)
	}
	if len(r1) != 8 || len(r4) != 8 {
		t.Fatalf("%d and %d results, want 8 (3 + bad + 2 frames + 2)", len(r1), len(r4))
	}
	for i := range r1 {
		if r1[i].Input != r4[i].Input || (r1[i].Err == nil) != (r4[i].Err == nil) {
			t.Fatalf("result %d differs in input/error", i)
		}
		if r1[i].Err != nil {
			if !errors.Is(r1[i].Err, pixel.ErrUnsupportedTransferSyntax) || r1[i].Source != bad {
				t.Fatalf("result %d: %v", i, r1[i].Err)
			}
			continue
		}
		for k := range r1[i].Map {
			if math.Abs(float64(r1[i].Map[k]-r4[i].Map[k])) > 1e-4 {
				t.Fatalf("result %d pixel %d: batch 1 %v, batch 4 %v", i, k, r1[i].Map[k], r4[i].Map[k])
			}
		}
	}
	if r4[5].Slice.Frame != 1 || r4[5].Slice.Frames != 2 {
		t.Fatalf("multi-frame result: %+v", r4[5].Slice)
	}
}

func TestEngineRun(t *testing.T) {
	e, _, _ := testEngine(t, 3, nil)
	man := writeSynth(t, t.TempDir(), 5, 4)
	jobs := make(chan Job, 8)
	type done struct {
		idx int
		n   int
		err error
	}
	got := make(chan done, 8)
	for i, in := range seriesInputs(man) {
		jobs <- Job{Input: in, Done: func(r []*Result, err error) { got <- done{i, len(r), err} }}
	}
	jobs <- Job{Input: Input{Data: []byte("not dicom")}, Done: func(r []*Result, err error) {
		if len(r) != 1 || r[0].Err == nil {
			t.Errorf("bad job: %d results", len(r))
		}
		got <- done{-1, len(r), err}
	}}
	close(jobs)
	if err := e.Run(context.Background(), jobs); err != nil {
		t.Fatal(err)
	}
	close(got)
	seen := 0
	for d := range got {
		if d.err != nil || d.n != 1 {
			t.Fatalf("job %d: %d results, %v", d.idx, d.n, d.err)
		}
		seen++
	}
	if seen != 5 {
		t.Fatalf("%d jobs acknowledged, want 5", seen)
	}
	// A cancelled context stops Run.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := e.Run(ctx, make(chan Job)); err != nil {
		t.Fatal(err)
	}
}

// TestEngineMixedSizes: slices of different matrix sizes share a batch (they
// preprocess to one model input size); each map must have its own slice's size
// and equal the map of an unbatched run, whichever size comes first.
func TestEngineMixedSizes(t *testing.T) {
	dir := t.TempDir()
	series := func(sub string, seed uint64, rows, cols int) []Input {
		m, err := synth.WriteSeries(filepath.Join(dir, sub), synth.Options{Seed: seed, Slices: 2, Rows: rows, Cols: cols, Source: synth.SourcePhantom})
		if err != nil {
			t.Fatal(err)
		}
		return seriesInputs(m)
	}
	small, big := series("small", 1, 32, 40), series("big", 2, 64, 80)
	e1, _, _ := testEngine(t, 1, nil)
	e4, _, _ := testEngine(t, 4, nil)
	for name, inputs := range map[string][]Input{
		"small first": append(append([]Input{}, small...), big...),
		"big first":   append(append([]Input{}, big...), small...),
	} {
		t.Run(name, func(t *testing.T) {
			r1, err := e1.Process(context.Background(), inputs)
			if err != nil {
				t.Fatal(err)
			}
			r4, err := e4.Process(context.Background(), inputs)
			if err != nil {
				t.Fatal(err)
			}
			if len(r4) != len(inputs) || len(r1) != len(inputs) {
				t.Fatalf("%d and %d results for %d inputs", len(r1), len(r4), len(inputs))
			}
			for i, r := range r4 {
				if r.Err != nil {
					t.Fatalf("result %d: %v", i, r.Err)
				}
				px := r.Slice.Rows * r.Slice.Cols
				if len(r.Map) != px || len(r.Mask) != px || len(r.Display) != px {
					t.Fatalf("result %d (%dx%d): map %d, mask %d, display %d values", i, r.Slice.Rows, r.Slice.Cols, len(r.Map), len(r.Mask), len(r.Display))
				}
				for k := range r.Map {
					if math.Abs(float64(r.Map[k]-r1[i].Map[k])) > 1e-4 {
						t.Fatalf("result %d pixel %d: batch 4 %v, batch 1 %v", i, k, r.Map[k], r1[i].Map[k])
					}
				}
			}
		})
	}
}

// panicBackbone panics on a uniform image in its batch, like a fault that
// only one input triggers.
type panicBackbone struct{ Backbone }

func (p panicBackbone) Embed(input []float32, b, h, w int) (*Embedding, error) {
	n := 3 * h * w
	for i := 0; i < b; i++ {
		img := input[i*n : (i+1)*n]
		uniform := true
		for _, v := range img[:h*w] {
			uniform = uniform && v == img[0]
		}
		if uniform {
			panic("uniform image")
		}
	}
	return p.Backbone.Embed(input, b, h, w)
}

// TestEngineRunIsolatesPoison: a job that panics somewhere in the pipeline
// fails alone with a *PanicError; the jobs batched with it are scored, and Run
// goes on serving.
func TestEngineRunIsolatesPoison(t *testing.T) {
	e, emb, _ := testEngine(t, 4, nil)
	e.o.Backbone = panicBackbone{emb}
	man := writeSynth(t, t.TempDir(), 7, 3)
	good, err := pixel.DecodeFile(filepath.Join(man.Dir, man.Slices[0].File))
	if err != nil {
		t.Fatal(err)
	}
	poison := *good[0]
	poison.Stored = make([]int32, len(poison.Stored))
	inputs := seriesInputs(man)
	inputs = append(inputs[:1], append([]Input{{Slices: []*pixel.Slice{&poison}}}, inputs[1:]...)...)
	jobs := make(chan Job, len(inputs)+1)
	type done struct {
		n   int
		err error
	}
	got := make([]chan done, len(inputs)+1)
	for i, in := range inputs {
		got[i] = make(chan done, 1)
		jobs <- Job{Input: in, Done: func(r []*Result, err error) { got[i] <- done{len(r), err} }}
	}
	// A job after the poison one is served by the same Run.
	got[len(inputs)] = make(chan done, 1)
	jobs <- Job{Input: inputs[0], Done: func(r []*Result, err error) { got[len(inputs)] <- done{len(r), err} }}
	close(jobs)
	if err := e.Run(context.Background(), jobs); err != nil {
		t.Fatal(err)
	}
	for i, c := range got {
		d := <-c
		if i == 1 {
			var pe *PanicError
			if !errors.As(d.err, &pe) || !errors.Is(d.err, fault.ErrPanic) || d.n != 0 || len(pe.Stack) == 0 {
				t.Fatalf("poison job: %d results, err %v; want a *PanicError", d.n, d.err)
			}
			continue
		}
		if d.err != nil || d.n != 1 {
			t.Fatalf("job %d: %d results, %v", i, d.n, d.err)
		}
	}
}
