package vit

import "math"

// This file is an independent, deliberately plain float64 forward pass of the
// generated architecture, written from the DINOv2 definition rather than from
// the graph, so that a wrong graph (axis, transpose, head split, resample)
// shows up as a numeric mismatch against ONNX Runtime.

// refForward returns last_hidden_state [B][T][D] for pixels x [B,3,H,W].
func refForward(c Config, w *Weights, x []float32, b, hgt, wid int) [][][]float64 {
	d, p := c.Dim, c.PatchSize
	gh, gw := hgt/p, wid/p
	pos := refPosGrid(c, w, gh, gw) // [gh*gw][D]
	out := make([][][]float64, b)
	for n := range b {
		var seq [][]float64
		cls := make([]float64, d)
		for k := range d {
			cls[k] = float64(w.CLS[k]) + float64(w.Pos[k])
		}
		seq = append(seq, cls)
		for r := range c.Registers {
			reg := make([]float64, d)
			for k := range d {
				reg[k] = float64(w.Registers[r*d+k])
			}
			seq = append(seq, reg)
		}
		for i := range gh {
			for j := range gw {
				t := make([]float64, d)
				for k := range d {
					s := float64(w.PatchB[k])
					for ch := range 3 {
						for ky := range p {
							for kx := range p {
								px := x[((n*3+ch)*hgt+i*p+ky)*wid+j*p+kx]
								s += float64(w.PatchW[((k*3+ch)*p+ky)*p+kx]) * float64(px)
							}
						}
					}
					t[k] = s + pos[i*gw+j][k]
				}
				seq = append(seq, t)
			}
		}
		for _, blk := range w.Blocks {
			seq = refBlock(c, blk, seq)
		}
		for t := range seq {
			seq[t] = refLayerNorm(seq[t], w.NormW, w.NormB, c.Eps)
		}
		out[n] = seq
	}
	return out
}

// refPosGrid resamples the G x G position grid to gh x gw with bicubic
// interpolation (a = -0.75, half-pixel centres, edge samples repeated), which
// is PyTorch's interpolate(mode="bicubic", align_corners=False).
func refPosGrid(c Config, w *Weights, gh, gw int) [][]float64 {
	g, d := c.PosGrid, c.Dim
	src := func(i, j, k int) float64 {
		i = min(max(i, 0), g-1)
		j = min(max(j, 0), g-1)
		return float64(w.Pos[(1+i*g+j)*d+k])
	}
	out := make([][]float64, gh*gw)
	for oi := range gh {
		yi := (float64(oi)+0.5)*float64(g)/float64(gh) - 0.5
		y0 := int(math.Floor(yi))
		wy := cubicWeights(yi - float64(y0))
		for oj := range gw {
			xj := (float64(oj)+0.5)*float64(g)/float64(gw) - 0.5
			x0 := int(math.Floor(xj))
			wx := cubicWeights(xj - float64(x0))
			v := make([]float64, d)
			for k := range d {
				var s float64
				for a := range 4 {
					for bb := range 4 {
						s += wy[a] * wx[bb] * src(y0-1+a, x0-1+bb, k)
					}
				}
				v[k] = s
			}
			out[oi*gw+oj] = v
		}
	}
	return out
}

// cubicWeights are Keys' cubic convolution weights (a = -0.75) of the four
// samples at offsets -1, 0, 1, 2 from the floor of the position, t in [0,1).
func cubicWeights(t float64) [4]float64 {
	const a = -0.75
	k := func(x float64) float64 {
		x = math.Abs(x)
		switch {
		case x <= 1:
			return (a+2)*x*x*x - (a+3)*x*x + 1
		case x < 2:
			return a*x*x*x - 5*a*x*x + 8*a*x - 4*a
		}
		return 0
	}
	return [4]float64{k(t + 1), k(t), k(1 - t), k(2 - t)}
}

func refLayerNorm(x []float64, g, b []float32, eps float32) []float64 {
	var mean, v float64
	for _, e := range x {
		mean += e
	}
	mean /= float64(len(x))
	for _, e := range x {
		v += (e - mean) * (e - mean)
	}
	v /= float64(len(x))
	out := make([]float64, len(x))
	for i, e := range x {
		out[i] = (e-mean)/math.Sqrt(v+float64(eps))*float64(g[i]) + float64(b[i])
	}
	return out
}

// refLinear is y = x W + b with W stored [in, out].
func refLinear(x []float64, wt, b []float32, out int) []float64 {
	y := make([]float64, out)
	for o := range out {
		s := float64(b[o])
		for i, e := range x {
			s += e * float64(wt[i*out+o])
		}
		y[o] = s
	}
	return y
}

func refBlock(c Config, blk Block, seq [][]float64) [][]float64 {
	d, heads := c.Dim, c.Heads
	hd := d / heads
	T := len(seq)
	q, k, v := make([][]float64, T), make([][]float64, T), make([][]float64, T)
	for t := range T {
		qkv := refLinear(refLayerNorm(seq[t], blk.Norm1W, blk.Norm1B, c.Eps), blk.QKVW, blk.QKVB, 3*d)
		q[t], k[t], v[t] = qkv[:d], qkv[d:2*d], qkv[2*d:]
	}
	next := make([][]float64, T)
	for t := range T {
		ctx := make([]float64, d)
		for hh := range heads {
			lo := hh * hd
			scores := make([]float64, T)
			maxS := math.Inf(-1)
			for u := range T {
				var s float64
				for e := range hd {
					s += q[t][lo+e] * k[u][lo+e]
				}
				scores[u] = s / math.Sqrt(float64(hd))
				maxS = max(maxS, scores[u])
			}
			var z float64
			for u := range T {
				scores[u] = math.Exp(scores[u] - maxS)
				z += scores[u]
			}
			for u := range T {
				for e := range hd {
					ctx[lo+e] += scores[u] / z * v[u][lo+e]
				}
			}
		}
		attn := refLinear(ctx, blk.ProjW, blk.ProjB, d)
		h := make([]float64, d)
		for e := range d {
			h[e] = seq[t][e] + float64(blk.LS1[e])*attn[e]
		}
		f := refLinear(refLayerNorm(h, blk.Norm2W, blk.Norm2B, c.Eps), blk.FC1W, blk.FC1B, c.MLPDim)
		for i, e := range f {
			f[i] = 0.5 * e * (1 + math.Erf(e/math.Sqrt2))
		}
		mlp := refLinear(f, blk.FC2W, blk.FC2B, d)
		for e := range d {
			h[e] += float64(blk.LS2[e]) * mlp[e]
		}
		next[t] = h
	}
	return next
}
