package cuda

// The device work's shapes, shared by both builds so the CPU tests can run
// them through a column-major GEMM emulation: cuBLAS is column-major, our
// matrices are row-major, and a transposition mistake here would otherwise
// show only on a GPU.

// gemmCall is one column-major cublasSgemm: C = alpha op(A) op(B) + beta C,
// op(A) m x k, op(B) k x n, C m x n with leading dimension ldc.
type gemmCall struct {
	tA, tB        bool
	m, n, k       int
	lda, ldb, ldc int
	alpha         float32
}

// zWidth is the row length of the device's Z = [x^2 | x | 1]: the trailing one
// makes the statistics GEMM return the responsibility sums as a last column.
func zWidth(d int) int { return 2*d + 1 }

// scoreGEMM: A = prototypes [m, d], B = queries [rows, d], C = products
// [rows, m], all row-major. Row-major C = Q P^T is column-major C^T = P^T Q.
func scoreGEMM(m, rows, d int) gemmCall {
	return gemmCall{tA: true, tB: false, m: m, n: rows, k: d, lda: d, ldb: d, ldc: m, alpha: 1}
}

// eStepGEMM: A = W [k, 2d], B = Z [n, 2d+1] (its first 2d columns), C = L
// [n, k]. Row-major L = Z W^T is column-major L^T = W^T Z^T.
func eStepGEMM(k, n, d int) gemmCall {
	return gemmCall{tA: true, tB: false, m: k, n: n, k: 2 * d, lda: 2 * d, ldb: zWidth(d), ldc: k, alpha: 1}
}

// statsGEMM: A = Z [n, 2d+1], B = L [n, k] (responsibilities), C = G
// [k, 2d+1]. Row-major G = (1/n) L^T Z is column-major G^T = (1/n) Z^T L.
func statsGEMM(k, n, d int) gemmCall {
	w := zWidth(d)
	return gemmCall{tA: false, tB: true, m: w, n: k, k: n, lda: w, ldb: k, ldc: w, alpha: 1 / float32(n)}
}

// statsFromDevice turns the downloaded G (k rows of 2d+1) and per-row
// log-likelihoods into Stats.
func statsFromDevice(g, ll []float32, k, d, n int) *Stats {
	w := zWidth(d)
	st := &Stats{K: k, D: d, N: n, R: make([]float64, k), G: make([]float32, k*2*d)}
	for j := 0; j < k; j++ {
		row := g[j*w : (j+1)*w]
		copy(st.G[j*2*d:(j+1)*2*d], row[:2*d])
		st.R[j] = float64(row[2*d]) * float64(n)
	}
	sum := 0.0
	for _, v := range ll[:n] {
		sum += float64(v)
	}
	st.LogLik = sum / float64(n)
	return st
}
