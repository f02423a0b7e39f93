//go:build cuda

package cuda

import (
	"flag"
	"math"
	"slices"
	"testing"
	"time"

	"anomalynode/inference"
	"anomalynode/inference/dpmm"
)

// tolerance is the norm-wise relative error allowed between GPU and CPU fp32
// results (issue 8); TestStatsToleranceUnderReordering shows summation order
// alone stays an order of magnitude below it.
const tolerance = 1e-4

// full selects the sizes (N=12288, K=500, D=384) for the comparison;
// scripts/gpu-check.sh sets it.
var full = flag.Bool("cuda.full", false, "compare GPU and CPU at N=12288, K=500, D=384 too")

// require turns the skip without a device into a failure; gpu-check.sh sets
// it, so a run that checked nothing cannot pass.
var require = flag.Bool("cuda.require", false, "fail instead of skipping when no CUDA device is present")

// needDevice skips (or fails, with -cuda.require) when no CUDA device is
// present. With the tag and no driver at all the test binary never gets here:
// gorgonia.org/cu exits at start-up.
func needDevice(t testing.TB) {
	t.Helper()
	if ok, why := Available(); !ok {
		if *require {
			t.Fatalf("no CUDA device: %s", why)
		}
		t.Skipf("no CUDA device: %s", why)
	}
}

type size struct{ n, k, d int }

func sizes() []size {
	s := []size{{1000, 40, 64}, {3001, 129, 97}}
	if *full {
		s = append(s, size{12288, 500, 384})
	}
	return s
}

func TestAvailableWithTag(t *testing.T) {
	needDevice(t)
	_, why := Available()
	t.Logf("device: %s", why)
	if err := Require(DeviceCUDA); err != nil {
		t.Errorf("Require(cuda) with a device: %v", err)
	}
}

func TestScorerMatchesCPU(t *testing.T) {
	needDevice(t)
	for _, sz := range sizes() {
		model := randomModel(sz.k, sz.d, uint64(sz.k))
		cpu, err := inference.NewDPMMScorer(model)
		if err != nil {
			t.Fatal(err)
		}
		gpu, err := NewScorer(model, 0)
		if err != nil {
			t.Fatal(err)
		}
		q := clustered(sz.n, sz.d, 16, 0.3, uint64(sz.n))
		want := make([]float32, sz.n)
		got := make([]float32, sz.n)
		cpu.Score(q, sz.n, want)
		if err := gpu.ScoreErr(q, sz.n, got); err != nil {
			t.Fatal(err)
		}
		e := relErr(sims(got), sims(want))
		var maxAbs float64
		for i := range got {
			maxAbs = max(maxAbs, math.Abs(float64(got[i]-want[i])))
		}
		t.Logf("score N=%d K=%d D=%d (%d prototypes): relative error %.2e, max abs %.2e", sz.n, sz.k, sz.d, gpu.Prototypes(), e, maxAbs)
		if !(e < tolerance) {
			t.Errorf("score N=%d K=%d D=%d: relative error %.2e >= %g", sz.n, sz.k, sz.d, e, tolerance)
		}
		if err := gpu.Close(); err != nil {
			t.Fatal(err)
		}
		if err := gpu.ScoreErr(q, 1, got); err == nil {
			t.Error("ScoreErr after Close succeeded")
		}
	}
}

func TestStepMatchesCPU(t *testing.T) {
	needDevice(t)
	for _, sz := range sizes() {
		x := clustered(sz.n, sz.d, 24, 0.2, uint64(sz.n))
		ref := newMixture(t, sz.k, sz.d, x, sz.n, dpmm.Config{Seed: 3})
		if _, err := ref.Step(x, sz.n); err != nil { // fitted, not initial, parameters
			t.Fatal(err)
		}
		batch := clustered(sz.n, sz.d, 24, 0.2, uint64(sz.n)+1)
		s, err := NewStepper(sz.k, sz.d, 0)
		if err != nil {
			t.Fatal(err)
		}
		want, err := StatsCPU(ParamsOf(ref), batch, sz.n)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.Stats(ParamsOf(ref), batch, sz.n)
		if err != nil {
			t.Fatal(err)
		}
		eg, er := relErr(got.G, want.G), relErr64(got.R, want.R)
		ell := math.Abs(got.LogLik-want.LogLik) / math.Abs(want.LogLik)
		t.Logf("EM statistics N=%d K=%d D=%d: relative error G %.2e, R %.2e, log-likelihood %.2e", sz.n, sz.k, sz.d, eg, er, ell)
		if !(eg < tolerance && er < tolerance && ell < tolerance) {
			t.Errorf("EM statistics N=%d K=%d D=%d: relative errors G %.2e, R %.2e, ll %.2e (limit %g)", sz.n, sz.k, sz.d, eg, er, ell, tolerance)
		}

		// The whole step: the parameters of components that hold mass. A
		// component of (near) zero mass has mean M/R with both near zero: its
		// relative precision is not the GPU's to keep.
		gm := ref.Clone()
		if _, err := ref.Step(batch, sz.n); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Step(gm, batch, sz.n); err != nil {
			t.Fatal(err)
		}
		var gmu, cmu []float32
		for j := 0; j < sz.k; j++ {
			if ref.R[j] > 1e-3 {
				gmu = append(gmu, gm.Mu[j*sz.d:(j+1)*sz.d]...)
				cmu = append(cmu, ref.Mu[j*sz.d:(j+1)*sz.d]...)
			}
		}
		em := relErr(gmu, cmu)
		t.Logf("EM step: means of %d components with R > 1e-3: relative error %.2e", len(cmu)/sz.d, em)
		if !(em < tolerance) {
			t.Errorf("EM step N=%d K=%d D=%d: means relative error %.2e >= %g", sz.n, sz.k, sz.d, em, tolerance)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// median times f over reps runs after one warm-up.
func median(reps int, f func()) time.Duration {
	f()
	ds := make([]time.Duration, reps)
	for i := range ds {
		t0 := time.Now()
		f()
		ds[i] = time.Since(t0)
	}
	slices.Sort(ds)
	return ds[reps/2]
}

// The benchmarks run the size, N=12288 patches (a 448x448 slice at
// patch 14 is 1024; twelve slices), K=500, D=384 (ViT-S/14), and report the
// CPU median measured in the same run and the speed-up.
const benchN, benchK, benchD = 12288, 500, 384

func BenchmarkScore(b *testing.B) {
	needDevice(b)
	model := randomModel(benchK, benchD, 1)
	cpu, err := inference.NewDPMMScorer(model)
	if err != nil {
		b.Fatal(err)
	}
	gpu, err := NewScorer(model, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer gpu.Close()
	q := clustered(benchN, benchD, 16, 0.3, 2)
	out := make([]float32, benchN)
	cpuT := median(5, func() { cpu.Score(q, benchN, out) })
	gpu.Score(q, benchN, out)
	b.ResetTimer()
	for b.Loop() {
		gpu.Score(q, benchN, out)
	}
	gpuT := b.Elapsed() / time.Duration(b.N)
	b.ReportMetric(float64(cpuT.Microseconds())/1e3, "cpu-ms")
	b.ReportMetric(float64(gpuT.Microseconds())/1e3, "gpu-ms")
	b.ReportMetric(float64(cpuT)/float64(gpuT), "speedup")
	b.ReportMetric(2*float64(benchN)*float64(gpu.Prototypes())*benchD/gpuT.Seconds()/1e9, "gpu-GFLOP/s")
}

func BenchmarkStep(b *testing.B) {
	needDevice(b)
	x := clustered(benchN, benchD, 24, 0.2, 3)
	m := newMixture(b, benchK, benchD, x, benchN, dpmm.Config{Seed: 1})
	s, err := NewStepper(benchK, benchD, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	// Every step starts from the same state; cloning it is not timed.
	cpuTimes := make([]time.Duration, 3)
	for i := range cpuTimes {
		c := m.Clone()
		t0 := time.Now()
		if _, err := c.Step(x, benchN); err != nil {
			b.Fatal(err)
		}
		cpuTimes[i] = time.Since(t0)
	}
	slices.Sort(cpuTimes)
	cpuT := cpuTimes[1]
	if _, err := s.Step(m.Clone(), x, benchN); err != nil { // warm-up: allocations
		b.Fatal(err)
	}
	b.ResetTimer()
	var gpuT time.Duration
	for b.Loop() {
		b.StopTimer()
		c := m.Clone()
		b.StartTimer()
		t0 := time.Now()
		if _, err := s.Step(c, x, benchN); err != nil {
			b.Fatal(err)
		}
		gpuT += time.Since(t0)
	}
	gpuT /= time.Duration(b.N)
	b.ReportMetric(float64(cpuT.Microseconds())/1e3, "cpu-ms")
	b.ReportMetric(float64(gpuT.Microseconds())/1e3, "gpu-ms")
	b.ReportMetric(float64(cpuT)/float64(gpuT), "speedup")
	b.ReportMetric(dpmm.StepFLOPs(benchN, benchK, benchD)/gpuT.Seconds()/1e9, "gpu-GFLOP/s")
}
