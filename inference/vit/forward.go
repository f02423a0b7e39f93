package vit

import (
	"fmt"
	"math"
	"runtime"
	"sync"

	"anomalynode/inference/linalg"
)

// This file is a plain float32 forward pass of the architecture (matrix
// products through linalg.Sgemm, float64 where it is cheap: LayerNorm
// statistics, softmax sums, the position resample). It is the CPU statement
// of what a GPU implementation must compute, and runs a model read by Load
// without ONNX Runtime.

// Matrix returns the [out*in] row-major 1-D interpolation weights (out rows)
// that r applies along one axis from in to out samples, with ONNX Resize
// semantics (mode cubic, half_pixel coordinates: x_in = (x_out+0.5)*in/out - 0.5).
// Tap j weighs cubic((j - x_in)*s), s = min(out/in, 1) when antialiasing and 1
// otherwise; taps outside [0, in) are dropped (ExcludeOutside) or added to the
// edge sample; antialiased or excluded weights are renormalised to sum 1.
// (pytorch_half_pixel differs only for out == 1: x_in = 0.) It returns nil
// when in or out is not positive.
func (r Resample) Matrix(in, out int) []float32 {
	if in <= 0 || out <= 0 {
		return nil
	}
	m := make([]float32, out*in)
	s := 1.0
	if r.Antialias && out < in {
		s = float64(out) / float64(in)
	}
	support := 2 / s
	row := make([]float64, in)
	for o := range out {
		x := (float64(o)+0.5)*float64(in)/float64(out) - 0.5
		if r.pytorchHalfPixel && out == 1 {
			x = 0
		}
		clear(row)
		var sum float64
		for j := int(math.Floor(x-support)) + 1; float64(j) < x+support; j++ {
			wt := cubic((float64(j)-x)*s, r.CubicA)
			k := j
			if j < 0 || j >= in {
				if r.ExcludeOutside {
					continue
				}
				k = min(max(j, 0), in-1)
			}
			row[k] += wt
			sum += wt
		}
		if (r.Antialias || r.ExcludeOutside) && sum != 0 {
			for k := range row {
				row[k] /= sum
			}
		}
		for k, v := range row {
			m[o*in+k] = float32(v)
		}
	}
	return m
}

// cubic is Keys' cubic convolution kernel with coefficient a.
func cubic(x, a float64) float64 {
	x = math.Abs(x)
	switch {
	case x <= 1:
		return ((a+2)*x-(a+3))*x*x + 1
	case x < 2:
		return ((a*x-5*a)*x+8*a)*x - 4*a
	}
	return 0
}

// PosGrid returns the patch position embeddings [gh*gw, D] for a gh x gw
// patch grid (not the CLS row): the learned G x G grid resampled by r. It is
// an error when r.FixedGrid is set and differs.
func PosGrid(c Config, w *Weights, r Resample, gh, gw int) ([]float32, error) {
	g, d := c.PosGrid, c.Dim
	if gh <= 0 || gw <= 0 {
		return nil, fmt.Errorf("%w: patch grid %dx%d", ErrConfig, gh, gw)
	}
	if r.FixedGrid != [2]int{} && r.FixedGrid != [2]int{gh, gw} {
		return nil, fmt.Errorf("%w: the model's position resample is fixed to a %dx%d patch grid, input has %dx%d",
			ErrConfig, r.FixedGrid[0], r.FixedGrid[1], gh, gw)
	}
	if g <= 0 || d <= 0 || w == nil || len(w.Pos) != (1+g*g)*d {
		return nil, fmt.Errorf("%w: position embeddings do not hold 1+%d*%d rows of %d", ErrConfig, g, g, d)
	}
	my, mx := r.Matrix(g, gh), r.Matrix(g, gw)
	// Along the columns first: tmp[a][j] = sum_c mx[j][c] pos[a][c].
	tmp := make([]float64, g*gw*d)
	parallelFor(g, func(lo, hi int) {
		for a := lo; a < hi; a++ {
			for j := range gw {
				t := tmp[(a*gw+j)*d : (a*gw+j+1)*d]
				for cc := range g {
					wt := float64(mx[j*g+cc])
					if wt == 0 {
						continue
					}
					src := w.Pos[(1+a*g+cc)*d : (1+a*g+cc+1)*d]
					for k, v := range src {
						t[k] += wt * float64(v)
					}
				}
			}
		}
	})
	out := make([]float32, gh*gw*d)
	parallelFor(gh, func(lo, hi int) {
		acc := make([]float64, d)
		for i := lo; i < hi; i++ {
			for j := range gw {
				clear(acc)
				for a := range g {
					wt := float64(my[i*g+a])
					if wt == 0 {
						continue
					}
					for k, v := range tmp[(a*gw+j)*d : (a*gw+j+1)*d] {
						acc[k] += wt * v
					}
				}
				dst := out[(i*gw+j)*d : (i*gw+j+1)*d]
				for k, v := range acc {
					dst[k] = float32(v)
				}
			}
		}
	})
	return out, nil
}

// checkWeights reports the first tensor of w whose size does not fit c.
func checkWeights(c Config, w *Weights) error {
	if w == nil {
		return fmt.Errorf("%w: no weights", ErrConfig)
	}
	d, m, p, g, r := c.Dim, c.MLPDim, c.PatchSize, c.PosGrid, c.Registers
	if len(w.Blocks) != c.Depth {
		return fmt.Errorf("%w: %d blocks of weights for depth %d", ErrConfig, len(w.Blocks), c.Depth)
	}
	type want struct {
		name string
		v    []float32
		n    int
	}
	ws := []want{
		{"PatchW", w.PatchW, d * 3 * p * p}, {"PatchB", w.PatchB, d}, {"CLS", w.CLS, d},
		{"Registers", w.Registers, r * d}, {"Pos", w.Pos, (1 + g*g) * d}, {"NormW", w.NormW, d}, {"NormB", w.NormB, d},
	}
	for i, b := range w.Blocks {
		pre := fmt.Sprintf("Blocks[%d].", i)
		ws = append(ws,
			want{pre + "Norm1W", b.Norm1W, d}, want{pre + "Norm1B", b.Norm1B, d},
			want{pre + "QKVW", b.QKVW, d * 3 * d}, want{pre + "QKVB", b.QKVB, 3 * d},
			want{pre + "ProjW", b.ProjW, d * d}, want{pre + "ProjB", b.ProjB, d}, want{pre + "LS1", b.LS1, d},
			want{pre + "Norm2W", b.Norm2W, d}, want{pre + "Norm2B", b.Norm2B, d},
			want{pre + "FC1W", b.FC1W, d * m}, want{pre + "FC1B", b.FC1B, m},
			want{pre + "FC2W", b.FC2W, m * d}, want{pre + "FC2B", b.FC2B, d}, want{pre + "LS2", b.LS2, d})
	}
	for _, x := range ws {
		if len(x.v) != x.n {
			return fmt.Errorf("%w: %s has %d elements, want %d", ErrConfig, x.name, len(x.v), x.n)
		}
	}
	return nil
}

// Forward runs the model on pixels x [b,3,h,w] and returns last_hidden_state
// [b, 1+R+gh*gw, D], gh = h/P, gw = w/P. Tokens: CLS plus its position, the R
// registers (no position), then the patches row-major plus the resampled
// position grid; pre-norm blocks h += ls1*proj(attn(LN1 h)), h += ls2*fc2(gelu(fc1(LN2 h)));
// a final LayerNorm. It uses all of GOMAXPROCS.
func Forward(l *Loaded, x []float32, b, h, w int) ([]float32, error) {
	if l == nil {
		return nil, fmt.Errorf("%w: no model", ErrConfig)
	}
	c, wt := l.Config, l.Weights
	if err := c.checkArch(); err != nil {
		return nil, err
	}
	if err := checkWeights(c, wt); err != nil {
		return nil, err
	}
	d, p := c.Dim, c.PatchSize
	if b <= 0 || h <= 0 || w <= 0 || h%p != 0 || w%p != 0 {
		return nil, fmt.Errorf("%w: input %dx3x%dx%d: sizes must be positive multiples of the patch size %d", ErrConfig, b, h, w, p)
	}
	if len(x) != b*3*h*w {
		return nil, fmt.Errorf("%w: %d pixels for a %dx3x%dx%d input", ErrConfig, len(x), b, h, w)
	}
	gh, gw := h/p, w/p
	pos, err := PosGrid(c, wt, l.Resample, gh, gw)
	if err != nil {
		return nil, err
	}
	np, r := gh*gw, c.Registers
	T := 1 + r + np
	N := b * T

	// Patch embedding: the stride-P convolution as one product of the
	// unfolded patches [b*np, 3*P*P] with the kernel [D, 3*P*P] transposed.
	kp := 3 * p * p
	cols := make([]float32, b*np*kp)
	parallelFor(b*np, func(lo, hi int) {
		for q := lo; q < hi; q++ {
			n, pi, pj := q/np, (q%np)/gw, q%gw
			dst := cols[q*kp:]
			for ch := range 3 {
				for ky := range p {
					row := x[((n*3+ch)*h+pi*p+ky)*w+pj*p:]
					copy(dst[(ch*p+ky)*p:(ch*p+ky+1)*p], row[:p])
				}
			}
		}
	})
	emb := make([]float32, b*np*d)
	linalg.Sgemm(false, true, b*np, d, kp, 1, cols, kp, wt.PatchW, kp, 0, emb, d)

	hs := make([]float32, N*d)
	for n := range b {
		seq := hs[n*T*d:]
		for k := range d {
			seq[k] = wt.CLS[k] + wt.Pos[k]
		}
		copy(seq[d:(1+r)*d], wt.Registers)
		for q := range np {
			t, e, ps := seq[(1+r+q)*d:(2+r+q)*d], emb[(n*np+q)*d:], pos[q*d:]
			for k := range d {
				t[k] = e[k] + wt.PatchB[k] + ps[k]
			}
		}
	}

	m := c.MLPDim
	ln := make([]float32, N*d)
	qkv := make([]float32, N*3*d)
	ctx := make([]float32, N*d)
	out := make([]float32, N*d)
	fc := make([]float32, N*m)
	for _, blk := range wt.Blocks {
		layerNorm(ln, hs, N, d, blk.Norm1W, blk.Norm1B, c.Eps)
		linear(qkv, ln, N, d, 3*d, blk.QKVW, blk.QKVB)
		attention(ctx, qkv, b, T, d, c.Heads)
		linear(out, ctx, N, d, d, blk.ProjW, blk.ProjB)
		residual(hs, out, N, d, blk.LS1)
		layerNorm(ln, hs, N, d, blk.Norm2W, blk.Norm2B, c.Eps)
		linear(fc, ln, N, d, m, blk.FC1W, blk.FC1B)
		parallelFor(N, func(lo, hi int) {
			for i, v := range fc[lo*m : hi*m] {
				f := float64(v)
				fc[lo*m+i] = float32(0.5 * f * (1 + math.Erf(f/math.Sqrt2)))
			}
		})
		linear(out, fc, N, m, d, blk.FC2W, blk.FC2B)
		residual(hs, out, N, d, blk.LS2)
	}
	layerNorm(out, hs, N, d, wt.NormW, wt.NormB, c.Eps)
	return out, nil
}

// linear sets dst [n,out] = src [n,in] W [in,out] + bias.
func linear(dst, src []float32, n, in, out int, w, bias []float32) {
	for i := range n {
		copy(dst[i*out:(i+1)*out], bias)
	}
	linalg.Sgemm(false, false, n, out, in, 1, src, in, w, out, 1, dst, out)
}

// residual adds gamma * y to every row of h.
func residual(h, y []float32, n, d int, gamma []float32) {
	parallelFor(n, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			hr, yr := h[i*d:(i+1)*d], y[i*d:(i+1)*d]
			for k := range d {
				hr[k] += gamma[k] * yr[k]
			}
		}
	})
}

// layerNorm normalises every row of src [n,d] into dst, statistics in float64.
func layerNorm(dst, src []float32, n, d int, gamma, beta []float32, eps float32) {
	parallelFor(n, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			x, y := src[i*d:(i+1)*d], dst[i*d:(i+1)*d]
			var mean, v float64
			for _, e := range x {
				mean += float64(e)
			}
			mean /= float64(d)
			for _, e := range x {
				v += (float64(e) - mean) * (float64(e) - mean)
			}
			inv := 1 / math.Sqrt(v/float64(d)+float64(eps))
			for k, e := range x {
				y[k] = float32((float64(e)-mean)*inv)*gamma[k] + beta[k]
			}
		}
	})
}

// attention computes softmax(q k^T / sqrt(hd)) v per image and head from
// qkv [b*T, 3D] (q, k, v side by side, each head-major) into ctx [b*T, D].
func attention(ctx, qkv []float32, b, T, d, heads int) {
	hd := d / heads
	scale := float32(1 / math.Sqrt(float64(hd)))
	jobs := b * heads
	workers := min(jobs, runtime.GOMAXPROCS(0))
	next := make(chan int, jobs)
	for j := range jobs {
		next <- j
	}
	close(next)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			scores := make([]float32, T*T)
			for j := range next {
				n, hh := j/heads, j%heads
				base := n * T * 3 * d
				q, k, v := qkv[base+hh*hd:], qkv[base+d+hh*hd:], qkv[base+2*d+hh*hd:]
				linalg.Sgemm(false, true, T, T, hd, scale, q, 3*d, k, 3*d, 0, scores, T)
				for t := range T {
					softmax(scores[t*T : (t+1)*T])
				}
				linalg.Sgemm(false, false, T, hd, T, 1, scores, T, v, 3*d, 0, ctx[n*T*d+hh*hd:], d)
			}
		})
	}
	wg.Wait()
}

// softmax replaces row by its softmax, the normaliser summed in float64.
func softmax(row []float32) {
	mx := row[0]
	for _, v := range row {
		mx = max(mx, v)
	}
	var z float64
	for i, v := range row {
		e := math.Exp(float64(v - mx))
		row[i] = float32(e)
		z += e
	}
	inv := 1 / z
	for i, v := range row {
		row[i] = float32(float64(v) * inv)
	}
}

// parallelFor runs f over [0, n) split into contiguous chunks, one per
// GOMAXPROCS at most, and waits.
func parallelFor(n int, f func(lo, hi int)) {
	workers := min(n, runtime.GOMAXPROCS(0))
	if workers <= 1 {
		if n > 0 {
			f(0, n)
		}
		return
	}
	var wg sync.WaitGroup
	for i := range workers {
		lo, hi := n*i/workers, n*(i+1)/workers
		wg.Go(func() { f(lo, hi) })
	}
	wg.Wait()
}
