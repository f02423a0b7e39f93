package linalg

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// threadCPU is the calling thread's user+system CPU time (Linux RUSAGE_THREAD).
func threadCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(1, &ru) // RUSAGE_THREAD
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkKernels compares the micro-kernels single-threaded. Besides wall
// GFLOP/s it reports GFLOP per CPU-second of the benchmark thread, which stays
// meaningful on a machine shared with other work.
func BenchmarkKernels(b *testing.B) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, s := range [][3]int{{1536, 500, 768}, {500, 768, 1536}} {
		m, n, k := s[0], s[1], s[2]
		a := randSlice(rng, m*k)
		bb := randSlice(rng, k*n)
		c := make([]float32, m*n)
		for _, kern := range kernels() {
			b.Run(fmt.Sprintf("%s/%dx%dx%d", kern.name, m, n, k), func(b *testing.B) {
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				cpu0 := threadCPU()
				for b.Loop() {
					packed(kern, false, false, m, n, k, 1, a, k, bb, n, c, n, 1)
				}
				cpu := threadCPU() - cpu0
				fl := 2 * float64(m) * float64(n) * float64(k) * float64(b.N)
				b.ReportMetric(fl/b.Elapsed().Seconds()/1e9, "GFLOP/s")
				b.ReportMetric(fl/cpu.Seconds()/1e9, "GFLOP/cpu-s")
			})
		}
	}
}
