package dpmm

import (
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"anomalynode/inference/linalg"
)

// BenchmarkEMStep times one EM step at the paper's batch size (12 slices x 1024
// patches, K=500, D=384) and reports the achieved GFLOP/s of its matrix work next
// to the machine's float32 GEMM rate, measured in the same loop by running the
// step's two products alone as plain Sgemm calls (interleaved with the steps, so
// other load on the machine affects both alike). of-gemm-rate is their ratio.
func BenchmarkEMStep(b *testing.B) {
	const n, k, d = 12288, 500, 384
	rng := rand.New(rand.NewPCG(1, 2))
	x := make([]float32, n*d)
	for i := range x {
		x[i] = float32(rng.NormFloat64() * 0.05)
	}
	m, err := NewMixture(Config{K: k, Seed: 1}, x, n, d)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := m.Step(x, n); err != nil { // warm the buffers
		b.Fatal(err)
	}
	z := make([]float32, n*2*d)
	w := make([]float32, k*2*d)
	l := make([]float32, n*k)
	g := make([]float32, k*2*d)
	for i := range z {
		z[i] = x[i%len(x)]
	}
	var stepT, gemmT, stepCPU, gemmCPU time.Duration
	for b.Loop() {
		c0, t0 := processCPU(), time.Now()
		if _, err := m.Step(x, n); err != nil {
			b.Fatal(err)
		}
		c1, t1 := processCPU(), time.Now()
		linalg.Sgemm(false, true, n, k, 2*d, 1, z, 2*d, w, 2*d, 0, l, k)
		linalg.Sgemm(true, false, k, 2*d, n, 1, l, k, z, 2*d, 0, g, 2*d)
		stepT += t1.Sub(t0)
		gemmT += time.Since(t1)
		stepCPU += c1 - c0
		gemmCPU += processCPU() - c1
	}
	flops := StepFLOPs(n, k, d) * float64(b.N)
	b.ReportMetric(stepT.Seconds()*1e3/float64(b.N), "ms/step")
	b.ReportMetric(flops/stepT.Seconds()/1e9, "GFLOP/s")
	b.ReportMetric(flops/gemmT.Seconds()/1e9, "gemm-GFLOP/s")
	b.ReportMetric(gemmT.Seconds()/stepT.Seconds(), "of-gemm-rate")
	// The same ratio in CPU time, robust when other processes share the cores.
	b.ReportMetric(gemmCPU.Seconds()/stepCPU.Seconds(), "of-gemm-rate-cpu")
}

// processCPU is the process's user+system CPU time over all threads.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
