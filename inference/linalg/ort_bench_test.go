package linalg_test

import (
	"anomalynode/internal/peers"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	ort "github.com/yalue/onnxruntime_go"

	"anomalynode/inference/linalg"
	"anomalynode/inference/onnxgen"
)

// processCPU is the process's user+system CPU time, all threads (ORT's too):
// GFLOP per CPU-second measures efficiency even when other work shares the
// cores and wall time says little.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

var ortOnce sync.Once
var ortErr error

func initORT() error {
	ortOnce.Do(func() {
		ort.SetSharedLibraryPath(peers.ORTLibrary())
		ortErr = ort.InitializeEnvironment()
	})
	return ortErr
}

// BenchmarkGEMMOptions compares, on the EM step's product shapes, the float32
// GEMM options considered for the heavy steps: our packed AVX2/FMA kernel
// (linalg.Sgemm), gonum's pure-Go Sgemm, and ONNX Runtime running a one-node
// MatMul graph (MLAS kernels) with as many intra-op threads as GOMAXPROCS.
// Not a skip without ONNX Runtime: the benchmark fails then.
func BenchmarkGEMMOptions(b *testing.B) {
	shapes := [][3]int{{12288, 500, 768}, {500, 768, 12288}, {1024, 150, 384}}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, s := range shapes {
		m, n, k := s[0], s[1], s[2]
		a := make([]float32, m*k)
		bb := make([]float32, k*n)
		for i := range a {
			a[i] = float32(rng.NormFloat64())
		}
		for i := range bb {
			bb[i] = float32(rng.NormFloat64())
		}
		c := make([]float32, m*n)
		flops := 2 * float64(m) * float64(n) * float64(k)
		var cpu0 time.Duration
		report := func(b *testing.B) {
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			b.ReportMetric(flops*float64(b.N)/(processCPU()-cpu0).Seconds()/1e9, "GFLOP/cpu-s")
		}
		name := fmt.Sprintf("%dx%dx%d", m, n, k)
		b.Run("linalg/"+name, func(b *testing.B) {
			cpu0 = processCPU()
			for b.Loop() {
				linalg.Sgemm(false, false, m, n, k, 1, a, k, bb, n, 0, c, n)
			}
			report(b)
		})
		if m*n*k <= 1024*150*384 {
			b.Run("gonum/"+name, func(b *testing.B) {
				cpu0 = processCPU()
				for b.Loop() {
					linalg.SgemmGonum(false, false, m, n, k, 1, a, k, bb, n, 0, c, n)
				}
				report(b)
			})
		}
		b.Run("onnxruntime/"+name, func(b *testing.B) {
			if err := initORT(); err != nil {
				b.Fatalf("ONNX Runtime (set ONNXRUNTIME_LIB or run make deps): %v", err)
			}
			g := onnxgen.NewGraph("matmul")
			x := g.Input("a", onnxgen.Float32, onnxgen.Fixed(int64(m)), onnxgen.Fixed(int64(k)))
			y := g.Input("b", onnxgen.Float32, onnxgen.Fixed(int64(k)), onnxgen.Fixed(int64(n)))
			g.Node("MatMul", []string{x, y}, []string{"c"})
			g.Output("c", onnxgen.Float32, onnxgen.Fixed(int64(m)), onnxgen.Fixed(int64(n)))
			data, err := (&onnxgen.Model{Graph: g, Producer: "linalg-bench"}).Marshal()
			if err != nil {
				b.Fatal(err)
			}
			ta, _ := ort.NewTensor(ort.NewShape(int64(m), int64(k)), a)
			tb, _ := ort.NewTensor(ort.NewShape(int64(k), int64(n)), bb)
			tc, _ := ort.NewTensor(ort.NewShape(int64(m), int64(n)), c)
			defer ta.Destroy()
			defer tb.Destroy()
			defer tc.Destroy()
			opts, err := ort.NewSessionOptions()
			if err != nil {
				b.Fatal(err)
			}
			defer opts.Destroy()
			opts.SetIntraOpNumThreads(runtime.GOMAXPROCS(0))
			sess, err := ort.NewAdvancedSessionWithONNXData(data, []string{"a", "b"}, []string{"c"}, []ort.Value{ta, tb}, []ort.Value{tc}, opts)
			if err != nil {
				b.Fatal(err)
			}
			defer sess.Destroy()
			cpu0 = processCPU()
			for b.Loop() {
				if err := sess.Run(); err != nil {
					b.Fatal(err)
				}
			}
			report(b)
		})
	}
}
