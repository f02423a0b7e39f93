package linalg

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// Blocking of the packed product (GotoBLAS/BLIS loop order). A kc x nr panel of
// B (16-32 KiB) stays in L1/L2 while it meets every mr-row sliver of an mc x kc
// block of A (at most 144 KiB, in L2); the kc x nc panel of B (3 MiB) lives in L3.
const (
	kc    = 256
	mcMax = 144
	nc    = 3072
	// smallWork is the m*n*k below which a plain loop beats packing.
	smallWork = 16 * 16 * 16
	// maxTile bounds mr*nr of any micro-kernel (scratch tile size).
	maxTile = 12 * 32
)

// microKernel adds a packed mr x k panel of A times a packed k x nr panel of B
// to an mr x nr tile of C.
type microKernel struct {
	name   string
	mr, nr int
	fn     func(k int, a, b, c *float32, ldc int)
}

// active is the micro-kernel Sgemm uses; haveKernel is false when none runs here.
var (
	active     microKernel
	haveKernel bool
)

func init() {
	if ks := kernels(); len(ks) > 0 {
		active, haveKernel = ks[0], true
	}
}

// Kernel names the micro-kernel in use ("gonum" when there is none).
func Kernel() string {
	if !haveKernel {
		return "gonum"
	}
	return active.name
}

// Sgemm computes C = alpha*op(A)*op(B) + beta*C on row-major float32 matrices,
// where op(X) is X or its transpose. op(A) is m x k, op(B) is k x n and C is
// m x n; lda, ldb and ldc are the row strides of the stored (untransposed) arrays.
// It panics on inconsistent shapes, as BLAS does. It runs on all of GOMAXPROCS,
// is safe for concurrent use, and computes every element of C in an order that
// does not depend on the thread count (results are reproducible).
func Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	checkShapes(transA, transB, m, n, k, a, lda, b, ldb, c, ldc)
	if m == 0 || n == 0 {
		return
	}
	if !haveKernel {
		sgemmGonum(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	scaleC(m, n, beta, c, ldc)
	if k == 0 || alpha == 0 {
		return
	}
	if m*n*k <= smallWork {
		naiveAdd(transA, transB, m, n, k, alpha, a, lda, b, ldb, c, ldc)
		return
	}
	packed(active, transA, transB, m, n, k, alpha, a, lda, b, ldb, c, ldc, runtime.GOMAXPROCS(0))
}

// SgemmGonum is Sgemm computed by gonum's pure-Go implementation; it is kept for
// comparison benchmarks and for CPUs without AVX2/FMA.
func SgemmGonum(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	checkShapes(transA, transB, m, n, k, a, lda, b, ldb, c, ldc)
	if m == 0 || n == 0 {
		return
	}
	sgemmGonum(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

func sgemmGonum(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	ta, tb := blas.NoTrans, blas.NoTrans
	if transA {
		ta = blas.Trans
	}
	if transB {
		tb = blas.Trans
	}
	gonum.Implementation{}.Sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

func checkShapes(transA, transB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	if m < 0 || n < 0 || k < 0 {
		panic(fmt.Sprintf("linalg: negative dimension m=%d n=%d k=%d", m, n, k))
	}
	ar, ac := m, k
	if transA {
		ar, ac = k, m
	}
	br, bc := k, n
	if transB {
		br, bc = n, k
	}
	check := func(name string, x []float32, rows, cols, ld int) {
		if ld < max(1, cols) {
			panic(fmt.Sprintf("linalg: ld%s=%d < %d columns", name, ld, cols))
		}
		if rows > 0 && cols > 0 && len(x) < (rows-1)*ld+cols {
			panic(fmt.Sprintf("linalg: %s has %d elements, need %d", name, len(x), (rows-1)*ld+cols))
		}
	}
	check("a", a, ar, ac, lda)
	check("b", b, br, bc, ldb)
	check("c", c, m, n, ldc)
}

// scaleC applies beta; beta == 0 overwrites, so NaNs already in C do not leak (BLAS semantics).
func scaleC(m, n int, beta float32, c []float32, ldc int) {
	if beta == 1 {
		return
	}
	for i := 0; i < m; i++ {
		row := c[i*ldc : i*ldc+n]
		if beta == 0 {
			clear(row)
			continue
		}
		for j := range row {
			row[j] *= beta
		}
	}
}

func naiveAdd(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float32
			for p := 0; p < k; p++ {
				var x, y float32
				if transA {
					x = a[p*lda+i]
				} else {
					x = a[i*lda+p]
				}
				if transB {
					y = b[j*ldb+p]
				} else {
					y = b[p*ldb+j]
				}
				s += x * y
			}
			c[i*ldc+j] += alpha * s
		}
	}
}

var bufPool = sync.Pool{New: func() any { return new([]float32) }}

func getBuf(n int) *[]float32 {
	p := bufPool.Get().(*[]float32)
	if cap(*p) < n {
		*p = make([]float32, n)
	}
	*p = (*p)[:n]
	return p
}

// workItem is one mc-row block of C restricted to a range of nr-column slivers.
type workItem struct{ i0, mb, j0, j1 int }

func packed(kern microKernel, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, workers int) {
	mr, nr := kern.mr, kern.nr
	// Choose mc so the row blocks divide evenly among the workers.
	blocks := (m + mcMax - 1) / mcMax
	if workers > 1 {
		blocks = (blocks + workers - 1) / workers * workers
	}
	mc := (m + blocks - 1) / blocks
	mc = (mc + mr - 1) / mr * mr
	blocks = (m + mc - 1) / mc

	nbMax := min(n, nc)
	bpBuf := getBuf(kc * ((nbMax + nr - 1) / nr * nr))
	defer bufPool.Put(bpBuf)
	bp := *bpBuf

	var items []workItem
	for jc := 0; jc < n; jc += nc {
		nb := min(nc, n-jc)
		slivers := (nb + nr - 1) / nr
		// With fewer row blocks than workers, split the slivers too.
		split := 1
		if blocks < workers {
			split = min(slivers, (workers+blocks-1)/blocks)
		}
		items = items[:0]
		for i0 := 0; i0 < m; i0 += mc {
			for s := 0; s < split; s++ {
				items = append(items, workItem{i0: i0, mb: min(mc, m-i0), j0: s * slivers / split, j1: (s + 1) * slivers / split})
			}
		}
		for pc := 0; pc < k; pc += kc {
			kb := min(kc, k-pc)
			packB(nr, transB, b, ldb, pc, kb, jc, nb, bp)
			run := func(next *atomic.Int64) {
				apBuf := getBuf(mc * kb)
				defer bufPool.Put(apBuf)
				ap := *apBuf
				var tile [maxTile]float32
				last := -1
				for {
					idx := int(next.Add(1)) - 1
					if idx >= len(items) {
						return
					}
					it := items[idx]
					if it.i0 != last {
						packA(mr, transA, a, lda, alpha, it.i0, it.mb, pc, kb, ap)
						last = it.i0
					}
					macro(kern, it, kb, ap, bp, c, ldc, jc, nb, &tile)
				}
			}
			var next atomic.Int64
			nw := min(workers, len(items))
			if nw <= 1 {
				run(&next)
				continue
			}
			var wg sync.WaitGroup
			for w := 1; w < nw; w++ {
				wg.Go(func() { run(&next) })
			}
			run(&next)
			wg.Wait()
		}
	}
}

// macro runs the micro-kernel over one item; edge tiles go through a scratch tile.
func macro(kern microKernel, it workItem, kb int, ap, bp, c []float32, ldc, jc, nb int, tile *[maxTile]float32) {
	mr, nr := kern.mr, kern.nr
	for s := it.j0; s < it.j1; s++ {
		jr := s * nr
		nw := min(nr, nb-jr)
		bpan := &bp[jr*kb]
		for ir := 0; ir < it.mb; ir += mr {
			mw := min(mr, it.mb-ir)
			apan := &ap[ir*kb]
			ci := (it.i0+ir)*ldc + jc + jr
			if mw == mr && nw == nr {
				kern.fn(kb, apan, bpan, &c[ci], ldc)
				continue
			}
			clear(tile[:mr*nr])
			kern.fn(kb, apan, bpan, &tile[0], nr)
			for i := 0; i < mw; i++ {
				row := c[ci+i*ldc : ci+i*ldc+nw]
				t := tile[i*nr : i*nr+nw]
				for j := range row {
					row[j] += t[j]
				}
			}
		}
	}
}

// packA copies alpha*op(A)[i0:i0+mb, pc:pc+kb] into mr-row slivers, each stored
// column by column (mr values per k step), zero-padding the last sliver.
func packA(mr int, trans bool, a []float32, lda int, alpha float32, i0, mb, pc, kb int, ap []float32) {
	for ir := 0; ir < mb; ir += mr {
		mw := min(mr, mb-ir)
		dst := ap[ir*kb : ir*kb+mr*kb]
		if mw < mr {
			clear(dst)
		}
		if trans {
			// op(A)[i][p] = a[p*lda+i]: each k step is a contiguous run of mw values.
			for p := 0; p < kb; p++ {
				src := a[(pc+p)*lda+i0+ir : (pc+p)*lda+i0+ir+mw]
				d := dst[p*mr : p*mr+mw]
				for i, v := range src {
					d[i] = alpha * v
				}
			}
			continue
		}
		for i := 0; i < mw; i++ {
			src := a[(i0+ir+i)*lda+pc : (i0+ir+i)*lda+pc+kb]
			for p, v := range src {
				dst[p*mr+i] = alpha * v
			}
		}
	}
}

// packB copies op(B)[pc:pc+kb, jc:jc+nb] into nr-column slivers, each stored row
// by row (nr values per k step), zero-padding the last sliver.
func packB(nr int, trans bool, b []float32, ldb, pc, kb, jc, nb int, bp []float32) {
	for jr := 0; jr < nb; jr += nr {
		nw := min(nr, nb-jr)
		dst := bp[jr*kb : jr*kb+nr*kb]
		if nw < nr {
			clear(dst)
		}
		if trans {
			// op(B)[p][j] = b[j*ldb+p]: walk each stored row once.
			for j := 0; j < nw; j++ {
				src := b[(jc+jr+j)*ldb+pc : (jc+jr+j)*ldb+pc+kb]
				for p, v := range src {
					dst[p*nr+j] = v
				}
			}
			continue
		}
		for p := 0; p < kb; p++ {
			copy(dst[p*nr:p*nr+nw], b[(pc+p)*ldb+jc+jr:(pc+p)*ldb+jc+jr+nw])
		}
	}
}
