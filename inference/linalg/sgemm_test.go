package linalg

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// refGemm is an independent float64 triple loop.
func refGemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) []float64 {
	out := make([]float64, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for p := 0; p < k; p++ {
				var x, y float64
				if transA {
					x = float64(a[p*lda+i])
				} else {
					x = float64(a[i*lda+p])
				}
				if transB {
					y = float64(b[j*ldb+p])
				} else {
					y = float64(b[p*ldb+j])
				}
				s += x * y
			}
			prev := 0.0
			if beta != 0 {
				prev = float64(beta) * float64(c[i*ldc+j])
			}
			out[i*n+j] = float64(alpha)*s + prev
		}
	}
	return out
}

func randSlice(r *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	return x
}

// TestSgemmAgainstFloat64 checks every micro-kernel this CPU can run (and the
// gonum fallback) on odd shapes, strides, all transposes and alpha/beta cases.
func TestSgemmAgainstFloat64(t *testing.T) {
	saved, savedHave := active, haveKernel
	defer func() { active, haveKernel = saved, savedHave }()
	variants := append(kernels(), microKernel{name: "gonum"})
	for _, kern := range variants {
		active, haveKernel = kern, kern.fn != nil
		t.Run(kern.name, testSgemmShapes)
	}
}

func testSgemmShapes(t *testing.T) {
	shapes := [][3]int{{1, 1, 1}, {3, 5, 7}, {6, 16, 1}, {7, 17, 9}, {13, 31, 257}, {50, 33, 300}, {121, 47, 19}, {5, 3100, 13}, {300, 20, 530}, {1, 100, 600}}
	r := rand.New(rand.NewPCG(1, 2))
	for _, s := range shapes {
		for _, ta := range []bool{false, true} {
			for _, tb := range []bool{false, true} {
				for _, ab := range [][2]float32{{1, 0}, {0.5, 1}, {-2, 0.25}} {
					m, n, k := s[0], s[1], s[2]
					t.Run(fmt.Sprintf("%dx%dx%d/ta=%v/tb=%v/a=%g/b=%g", m, n, k, ta, tb, ab[0], ab[1]), func(t *testing.T) {
						// Extra stride padding catches ld mistakes.
						ar, ac := m, k
						if ta {
							ar, ac = k, m
						}
						br, bc := k, n
						if tb {
							br, bc = n, k
						}
						lda, ldb, ldc := ac+3, bc+1, n+2
						a := randSlice(r, ar*lda)
						b := randSlice(r, br*ldb)
						c := randSlice(r, m*ldc)
						if ab[1] == 0 {
							for i := range c {
								c[i] = float32(math.NaN()) // beta=0 must overwrite
							}
						}
						want := refGemm(ta, tb, m, n, k, ab[0], a, lda, b, ldb, ab[1], c, ldc)
						padding := c[n] // stride padding must stay untouched
						Sgemm(ta, tb, m, n, k, ab[0], a, lda, b, ldb, ab[1], c, ldc)
						for i := 0; i < m; i++ {
							for j := 0; j < n; j++ {
								got := float64(c[i*ldc+j])
								w := want[i*n+j]
								tol := 1e-5 * math.Sqrt(float64(k)) * (1 + math.Abs(w)) * 4
								if math.IsNaN(got) || math.Abs(got-w) > tol {
									t.Fatalf("C[%d][%d] = %g, want %g", i, j, got, w)
								}
							}
						}
						if m > 0 && n+1 < ldc && !(math.IsNaN(float64(padding)) && math.IsNaN(float64(c[n]))) && c[n] != padding {
							t.Fatalf("stride padding overwritten")
						}
					})
				}
			}
		}
	}
}

func TestSgemmShapePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("short A did not panic")
		}
	}()
	Sgemm(false, false, 4, 4, 4, 1, make([]float32, 15), 4, make([]float32, 16), 4, 0, make([]float32, 16), 4)
}

func gflops(b *testing.B, m, n, k int) {
	b.ReportMetric(2*float64(m)*float64(n)*float64(k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

func benchShape(b *testing.B, f func(bool, bool, int, int, int, float32, []float32, int, []float32, int, float32, []float32, int), ta, tb bool, m, n, k int) {
	r := rand.New(rand.NewPCG(3, 4))
	a := randSlice(r, m*k)
	bb := randSlice(r, k*n)
	c := make([]float32, m*n)
	lda, ldb := k, n
	if ta {
		lda = m
	}
	if tb {
		ldb = k
	}
	b.ResetTimer()
	for b.Loop() {
		f(ta, tb, m, n, k, 1, a, lda, bb, ldb, 0, c, n)
	}
	gflops(b, m, n, k)
}

func BenchmarkSgemm(b *testing.B) {
	for _, s := range [][3]int{{512, 512, 512}, {12288, 500, 384}, {500, 384, 12288}, {1024, 150, 384}} {
		for _, tb := range []bool{false, true} {
			b.Run(fmt.Sprintf("ours/%dx%dx%d/tb=%v", s[0], s[1], s[2], tb), func(b *testing.B) { benchShape(b, Sgemm, false, tb, s[0], s[1], s[2]) })
		}
	}
	b.Run("gonum/512x512x512", func(b *testing.B) { benchShape(b, SgemmGonum, false, false, 512, 512, 512) })
}
