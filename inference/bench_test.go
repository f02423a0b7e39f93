package inference

import (
	"context"
	"flag"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	ort "github.com/yalue/onnxruntime_go"

	"anomalynode/inference/pixel"
	"anomalynode/inference/vit"
	"anomalynode/internal/synth"
)

var (
	benchThreads    = flag.Int("bench.threads", 2, "ONNX Runtime intra-op threads in BenchmarkPipeline")
	benchBankSlices = flag.Int("bench.bank-slices", 2, "slices per series in the memory bank of BenchmarkScoring (100 series x this x 1024 patches)")
)

// BenchmarkPipeline measures one 512x512 slice through the engine on the
// vits14 preset at 448 px, batch 1, bench.threads ORT threads: the per-stage
// times and total / raw model time, where "raw" is a bare ORT run of the same
// model on a ready tensor in the same iteration.
func BenchmarkPipeline(b *testing.B) {
	initORT(b)
	dir := b.TempDir()
	c, err := vit.Preset("vits14")
	if err != nil {
		b.Fatal(err)
	}
	c.SeparablePosResize = true
	onnx := filepath.Join(dir, "vits14.onnx")
	if _, _, err := vit.WriteFile(onnx, c); err != nil {
		b.Fatal(err)
	}
	man, err := synth.WriteSeries(filepath.Join(dir, "s"), synth.Options{Seed: 1, Slices: 1, Rows: 512, Cols: 512, Source: synth.SourcePhantom})
	if err != nil {
		b.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(man.Dir, man.Slices[0].File))
	if err != nil {
		b.Fatal(err)
	}
	emb, err := NewEmbedder(EmbedderOptions{ModelPath: onnx, Threads: *benchThreads})
	if err != nil {
		b.Fatal(err)
	}
	defer emb.Close()
	m := testModel(150, 384, 1)
	sc, err := NewDPMMScorer(m)
	if err != nil {
		b.Fatal(err)
	}
	pre := &Preprocessor{Resolution: 448, PatchSize: 14, VOI: PreprocessSpec{VOI: VOIPercentile, PercentileLo: 0.5, PercentileHi: 99.5}}
	eng, err := NewEngine(EngineOptions{Backbone: emb, Scorer: sc, Preprocessor: pre, Threshold: 0.5, Batch: 1})
	if err != nil {
		b.Fatal(err)
	}

	// The raw model: its own session with the same options and preallocated tensors.
	so, _ := ort.NewSessionOptions()
	so.SetIntraOpNumThreads(*benchThreads)
	so.SetInterOpNumThreads(1)
	raw, err := ort.NewDynamicAdvancedSession(onnx, []string{DefaultInputName}, []string{DefaultOutputName}, so)
	so.Destroy()
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Destroy()
	rin, _ := ort.NewEmptyTensor[float32](ort.NewShape(1, 3, 448, 448))
	rout, _ := ort.NewEmptyTensor[float32](ort.NewShape(1, 1+1024, 384))
	defer rin.Destroy()
	defer rout.Destroy()
	input := []Input{{Data: data}}
	// Warm both sessions up (first runs allocate arenas).
	for i := 0; i < 2; i++ {
		if _, err := eng.Process(context.Background(), input); err != nil {
			b.Fatal(err)
		}
		if err := raw.Run([]ort.Value{rin}, []ort.Value{rout}); err != nil {
			b.Fatal(err)
		}
	}
	// Medians, not means: on a shared machine one descheduled run would
	// otherwise dominate a handful of iterations.
	var st [5][]time.Duration
	var rawT, wallT []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		res, err := eng.Process(context.Background(), input)
		wallT = append(wallT, time.Since(t0))
		if err != nil || res[0].Err != nil {
			b.Fatal(err, res[0].Err)
		}
		t := res[0].Timings
		for k, v := range []time.Duration{t.Decode, t.Preprocess, t.Model, t.Score, t.Upsample} {
			st[k] = append(st[k], v)
		}
		t1 := time.Now()
		if err := raw.Run([]ort.Value{rin}, []ort.Value{rout}); err != nil {
			b.Fatal(err)
		}
		rawT = append(rawT, time.Since(t1))
	}
	b.StopTimer()
	for k, name := range []string{"decode-ms", "preprocess-ms", "model-ms", "score-ms", "upsample-ms"} {
		b.ReportMetric(medianMS(st[k]), name)
	}
	b.ReportMetric(medianMS(wallT), "total-ms")
	b.ReportMetric(medianMS(rawT), "raw-model-ms")
	b.ReportMetric(medianMS(wallT)/medianMS(rawT), "total/raw")
	// Our own stages outside the model, relative to the raw model.
	other := medianMS(st[0]) + medianMS(st[1]) + medianMS(st[3]) + medianMS(st[4])
	b.ReportMetric((medianMS(rawT)+other)/medianMS(rawT), "(raw+stages)/raw")
}

func medianMS(d []time.Duration) float64 {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return float64(m) / float64(time.Millisecond)
}

// BenchmarkScoring compares scoring one slice (1024 patch tokens, D=384)
// against 150 DPMM prototypes, a random 1024-row coreset and the full memory
// bank of 100 normal series (bench.bank-slices slices each).
func BenchmarkScoring(b *testing.B) {
	const d, p = 384, 1024
	r := rand.New(rand.NewPCG(1, 2))
	bankRows := 100 * *benchBankSlices * p
	bank := randUnit(r, bankRows, d)
	knn, err := NewKNNScorer(bank, d)
	if err != nil {
		b.Fatal(err)
	}
	core, err := NewCoresetScorer(append([]float32(nil), bank[:200*p*d/100]...), d, 1024, false, 1)
	if err != nil {
		b.Fatal(err)
	}
	dp, err := NewDPMMScorer(testModel(150, d, 3))
	if err != nil {
		b.Fatal(err)
	}
	q := randUnit(r, p, d)
	out := make([]float32, p)
	dp.Score(q, p, out)
	knn.Score(q, p, out)
	var tD, tK, tC time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		dp.Score(q, p, out)
		t1 := time.Now()
		core.Score(q, p, out)
		t2 := time.Now()
		knn.Score(q, p, out)
		t3 := time.Now()
		tD, tC, tK = tD+t1.Sub(t0), tC+t2.Sub(t1), tK+t3.Sub(t2)
	}
	b.StopTimer()
	n := float64(b.N)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) / n }
	b.ReportMetric(ms(tD), "dpmm150-ms")
	b.ReportMetric(ms(tC), "coreset1024-ms")
	b.ReportMetric(ms(tK), "membank-ms")
	b.ReportMetric(float64(bankRows), "membank-rows")
	b.ReportMetric(float64(tK)/float64(tD), "membank/dpmm")
	b.ReportMetric(float64(bankRows*d*4)/(1<<20), "membank-MiB")
}

// BenchmarkPreprocess isolates preprocessing of a 512x512 slice to 448.
func BenchmarkPreprocess(b *testing.B) {
	s := &pixel.Slice{Rows: 512, Cols: 512, Slope: 1, Photometric: "MONOCHROME2", MinStored: 0, MaxStored: 4095, Stored: make([]int32, 512*512)}
	for i := range s.Stored {
		s.Stored[i] = int32((i * 7) % 4096)
	}
	p := &Preprocessor{Resolution: 448, PatchSize: 14, VOI: PreprocessSpec{VOI: VOIPercentile, PercentileLo: 0.5, PercentileHi: 99.5}}
	for b.Loop() {
		if _, err := p.Preprocess(s); err != nil {
			b.Fatal(err)
		}
	}
}
