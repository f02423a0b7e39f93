//go:build cuda

package cuda

import (
	"fmt"
	"math"
	"runtime"
	"sync"
	"unsafe"

	"gorgonia.org/cu"

	"anomalynode/inference"
	"anomalynode/inference/vit"
)

// Embedder runs a DINOv2 ViT on a GPU: our own forward pass, GEMMs on cuBLAS
// (cublasGemmEx, tensor cores for tf32 and bf16), attention as two
// strided-batched GEMMs around a softmax kernel, and small kernels for the
// patch embedding, LayerNorm, GELU and residuals (kernels.cu). The weights
// are the ONNX file's own (vit.Load), so one model file serves both devices.
// All device work runs on the device goroutine, on one stream; uploads go
// through pinned host memory.
type Embedder struct {
	dev  *device
	l    *vit.Loaded
	prec Precision
	ty   gemmType
	sfx  string // kernel name suffix: _f32 or _bf16

	attnBlock int // bytes of scores per attention pass (attentionBlock)

	stream cu.Stream
	blas   *exBLAS
	fn     map[string]cu.Function

	w   gpuWeights
	pos map[[2]int]cu.DevicePtr // resampled position grids by patch grid

	act  [nAct]dmem // activations, grown on demand
	hin  pinned     // input staging
	hout pinned     // token staging
	mem  []*dmem    // every allocation, freed by Close
}

// gpuWeights are the model's weights on the device: GEMM operands in the
// GEMM input type, everything else in float32.
type gpuWeights struct {
	patchW                    cu.DevicePtr // [3*P*P, D] (the Conv weight transposed)
	patchB, cls, clsPos, regs cu.DevicePtr
	normW, normB              cu.DevicePtr
	blocks                    []gpuBlock
}

type gpuBlock struct {
	norm1W, norm1B, qkvB, projB, ls1 cu.DevicePtr
	norm2W, norm2B, fc1B, fc2B, ls2  cu.DevicePtr
	qkvW, projW, fc1W, fc2W          cu.DevicePtr
}

// Activation buffers (see forward for what each holds when).
const (
	actIn    = iota // input [b,3,h,w] f32
	actCols         // im2col [b*np, 3PP] T
	actPatch        // patch projections [b*np, D] f32
	actH            // residual stream [b*t, D] f32
	actXN           // LayerNorm output / merged heads [b*t, D] T
	actBig          // qkv and fc1 outputs f32; fp32 and tf32: the attention scores too
	actQKV          // heads [3, b, heads, t, hd] T
	actP            // softmax output (bf16: the scores, softmax in place) / GELU output T
	actMid          // attention context / projection outputs [b*t, D] f32
	actOut          // unit patch tokens [b*np, D] f32
	nAct
)

// dmem is device memory that grows on demand.
type dmem struct {
	p    cu.DevicePtr
	size int
}

func (m *dmem) ensure(size int) error {
	if size <= m.size {
		return nil
	}
	m.free()
	p, err := cu.MemAlloc(int64(size))
	if err != nil {
		return fmt.Errorf("cuda: allocate %d MiB on the GPU: %w", size>>20, err)
	}
	m.p, m.size = p, size
	return nil
}

func (m *dmem) free() {
	if m.size > 0 {
		cu.MemFree(m.p)
		m.p, m.size = 0, 0
	}
}

// NewEmbedder loads the ONNX file's weights onto GPU o.Device.
func NewEmbedder(o EmbedderOptions) (*Embedder, error) {
	prec, err := ParsePrecision(string(o.Precision))
	if err != nil {
		return nil, err
	}
	l, err := vit.Load(o.ModelPath)
	if err != nil {
		return nil, err
	}
	return newEmbedderLoaded(l, EmbedderOptions{Device: o.Device, Precision: prec})
}

// newEmbedderLoaded puts the loaded model l on the GPU.
func newEmbedderLoaded(l *vit.Loaded, o EmbedderOptions) (*Embedder, error) {
	prec, err := ParsePrecision(string(o.Precision))
	if err != nil {
		return nil, err
	}
	dev, err := openDevice(o.Device)
	if err != nil {
		return nil, err
	}
	e := &Embedder{dev: dev, l: l, prec: prec, ty: gemmTypeOf(prec), sfx: "_f32", attnBlock: attentionBlock, pos: map[[2]int]cu.DevicePtr{}}
	if prec == PrecisionBF16 {
		e.sfx = "_bf16"
	}
	if err := dev.do(e.init); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

var vitKernels = []string{"im2col", "layerNorm", "splitHeads", "softmax", "softmaxWarp", "mergeHeads", "biasGelu"}

// init runs on the device thread: stream, cuBLAS handle, kernels, weights.
func (e *Embedder) init() error {
	var err error
	if e.stream, err = cu.MakeStream(cu.NonBlocking); err != nil {
		return fmt.Errorf("cuda: create stream: %w", err)
	}
	if e.blas, err = newExBLAS(e.stream); err != nil {
		return err
	}
	e.fn = map[string]cu.Function{}
	names := []string{"assemble", "residual", "patchTokens"}
	for _, k := range vitKernels {
		names = append(names, k+e.sfx)
	}
	for _, n := range names {
		if e.fn[n], err = e.dev.mod.Function(n); err != nil {
			return fmt.Errorf("cuda: kernel %s: %w", n, err)
		}
	}
	return e.uploadWeights()
}

// upload copies float32 values to new device memory, converted to bf16 when
// gemm is set and the precision is bf16.
func (e *Embedder) upload(v []float32, gemm bool) (cu.DevicePtr, error) {
	m := &dmem{}
	e.mem = append(e.mem, m)
	var src unsafe.Pointer
	size := 4 * len(v)
	if gemm && e.ty.size == 2 {
		h := toBF16(v)
		src, size = unsafe.Pointer(&h[0]), 2*len(h)
	} else {
		src = unsafe.Pointer(&v[0])
	}
	if err := m.ensure(size); err != nil {
		return 0, err
	}
	if err := cu.MemcpyHtoD(m.p, src, int64(size)); err != nil {
		return 0, fmt.Errorf("cuda: upload weights: %w", err)
	}
	return m.p, nil
}

// toBF16 rounds to bfloat16 (nearest even), as the kernels' st() does.
func toBF16(v []float32) []uint16 {
	out := make([]uint16, len(v))
	for i, f := range v {
		u := math.Float32bits(f)
		if u&0x7fffffff > 0x7f800000 {
			out[i] = 0x7fc0
			continue
		}
		u += 0x7fff + (u>>16)&1
		out[i] = uint16(u >> 16)
	}
	return out
}

func (e *Embedder) uploadWeights() error {
	c, w := e.l.Config, e.l.Weights
	d, p := c.Dim, c.PatchSize
	k := 3 * p * p
	// Conv weight [D, 3, P, P] -> GEMM operand [3PP, D].
	pw := make([]float32, k*d)
	for o := range d {
		for i := range k {
			pw[i*d+o] = w.PatchW[o*k+i]
		}
	}
	var err error
	up := func(dst *cu.DevicePtr, v []float32, gemm bool) {
		if err == nil {
			if len(v) == 0 {
				v = make([]float32, 1) // no registers: a valid, unused pointer
			}
			*dst, err = e.upload(v, gemm)
		}
	}
	up(&e.w.patchW, pw, true)
	up(&e.w.patchB, w.PatchB, false)
	up(&e.w.cls, w.CLS, false)
	up(&e.w.clsPos, w.Pos[:d], false)
	up(&e.w.regs, w.Registers, false)
	up(&e.w.normW, w.NormW, false)
	up(&e.w.normB, w.NormB, false)
	e.w.blocks = make([]gpuBlock, len(w.Blocks))
	for i, b := range w.Blocks {
		g := &e.w.blocks[i]
		up(&g.norm1W, b.Norm1W, false)
		up(&g.norm1B, b.Norm1B, false)
		up(&g.qkvW, b.QKVW, true)
		up(&g.qkvB, b.QKVB, false)
		up(&g.projW, b.ProjW, true)
		up(&g.projB, b.ProjB, false)
		up(&g.ls1, b.LS1, false)
		up(&g.norm2W, b.Norm2W, false)
		up(&g.norm2B, b.Norm2B, false)
		up(&g.fc1W, b.FC1W, true)
		up(&g.fc1B, b.FC1B, false)
		up(&g.fc2W, b.FC2W, true)
		up(&g.fc2B, b.FC2B, false)
		up(&g.ls2, b.LS2, false)
	}
	return err
}

// posGrid returns the position grid resampled to gh x gw on the device,
// computed on the host once per grid (vit.PosGrid, the graph's own Resize).
func (e *Embedder) posGrid(gh, gw int) (cu.DevicePtr, error) {
	if p, ok := e.pos[[2]int{gh, gw}]; ok {
		return p, nil
	}
	g, err := vit.PosGrid(e.l.Config, e.l.Weights, e.l.Resample, gh, gw)
	if err != nil {
		return 0, err
	}
	p, err := e.upload(g, false)
	if err != nil {
		return 0, err
	}
	e.pos[[2]int{gh, gw}] = p
	return p, nil
}

// launch runs kernel name on the stream, grid blocks of 256 threads. Every
// argument is 8 bytes (pointers, long long); a float argument is passed as
// f32(v), whose low 4 bytes the driver reads.
func (e *Embedder) launch(name string, grid int, args ...uint64) error {
	params := make([]unsafe.Pointer, len(args))
	for i := range args {
		params[i] = unsafe.Pointer(&args[i])
	}
	if err := e.fn[name].Launch(max(grid, 1), 1, 1, threads, 1, 1, 0, e.stream, params); err != nil {
		return fmt.Errorf("cuda: launch %s: %w", name, err)
	}
	return nil
}

func f32(v float32) uint64 { return uint64(math.Float32bits(v)) }

// strided is the grid of a grid-stride kernel over n elements.
func strided(n int) int { return min((n+threads-1)/threads, 8192) }

// rowsOf is the grid of a warp-per-row kernel over n rows.
func rowsOf(n int) int { return (n + threads/32 - 1) / (threads / 32) }

// shape is one forward pass's sizes.
type shape struct {
	b, h, w, p, gh, gw, np, r, t, n, d, m, heads, hd, k int
}

func (e *Embedder) shapeOf(b, h, w int) shape {
	c := e.l.Config
	s := shape{b: b, h: h, w: w, p: c.PatchSize, r: c.Registers, d: c.Dim, m: c.MLPDim, heads: c.Heads}
	s.gh, s.gw = h/s.p, w/s.p
	s.np = s.gh * s.gw
	s.t = 1 + s.r + s.np
	s.n = b * s.t
	s.hd = s.d / s.heads
	s.k = 3 * s.p * s.p
	return s
}

// softmaxRowMax is the longest row softmaxWarp holds (kernels.cu SOFTMAX_PER x 32).
const softmaxRowMax = 2048

// attentionBlock bounds the scores of one attention pass (bytes), and so
// the score memory: larger batches take several passes. On the H200, passes
// small enough to keep the scores in L2 were slower than one pass for every
// pair (bf16, batch 32: 650, 873 and 995 slices/s with 12, 24 and 48 MiB
// passes, 1076 with one pass; docs/gpu.md).
const attentionBlock = 4 << 30

// attentionPairs is how many (slice, head) pairs one attention pass takes.
func (e *Embedder) attentionPairs(s shape) int {
	return max(1, min(s.b*s.heads, e.attnBlock/(s.t*s.t*e.ty.size)))
}

// attention computes softmax(q k^T * scale) v for every (slice, head) pair,
// attentionPairs at a time, reusing the same score block (scores; probs
// may be the same memory); the context goes to ctx [b, heads, t, hd] float32.
func (e *Embedder) attention(s shape, scale float32, q, k, v, scores, probs, ctx cu.DevicePtr) error {
	pairs, per := s.b*s.heads, e.attentionPairs(s)
	pair := cu.DevicePtr(s.t * s.hd * e.ty.size)
	for p0 := 0; p0 < pairs; p0 += per {
		pn := min(per, pairs-p0)
		off := cu.DevicePtr(p0) * pair
		if err := e.blas.scores(e.ty, pn, s.t, s.hd, scale, q+off, k+off, scores); err != nil {
			return err
		}
		rows := uint64(pn * s.t)
		var err error
		if s.t <= softmaxRowMax {
			err = e.launch("softmaxWarp"+e.sfx, rowsOf(pn*s.t), uint64(scores), rows, uint64(s.t), uint64(probs))
		} else {
			err = e.launch("softmax"+e.sfx, pn*s.t, uint64(scores), rows, uint64(s.t), uint64(probs))
		}
		if err != nil {
			return err
		}
		if err := e.blas.context(e.ty, pn, s.t, s.hd, probs, v+off, ctx+cu.DevicePtr(p0*s.t*s.hd*4)); err != nil {
			return err
		}
	}
	return nil
}

// reserve sizes the activation buffers for s (device thread).
func (e *Embedder) reserve(s shape) error {
	ts := e.ty.size
	block := e.attentionPairs(s) * s.t * s.t // one attention pass's scores
	scoresBig := block
	if ts == 2 {
		scoresBig = 0 // bf16 scores live in actP
	}
	// The element-wise kernels index in 32 bits.
	for _, n := range []int{s.b * 3 * s.h * s.w, s.b * s.np * s.k, 3 * s.n * s.d, s.n * s.m} {
		if n >= 1<<32 {
			return fmt.Errorf("cuda: a batch of %d slices of %dx%d is too large for one run; lower inference.batch", s.b, s.h, s.w)
		}
	}
	sizes := [nAct]int{
		actIn:    4 * s.b * 3 * s.h * s.w,
		actCols:  ts * s.b * s.np * s.k,
		actPatch: 4 * s.b * s.np * s.d,
		actH:     4 * s.n * s.d,
		actXN:    ts * s.n * s.d,
		actBig:   4 * max(s.n*3*s.d, s.n*s.m, scoresBig),
		actQKV:   ts * 3 * s.n * s.d,
		actP:     ts * max(block, s.n*s.m),
		actMid:   4 * s.n * s.d,
		actOut:   4 * s.b * s.np * s.d,
	}
	for i, size := range sizes {
		if err := e.act[i].ensure(size); err != nil {
			return err
		}
	}
	return nil
}

// forward runs the model on the input already in actIn, leaving the unit
// patch tokens in actOut (device thread; asynchronous on the stream).
func (e *Embedder) forward(s shape) error {
	pos, err := e.posGrid(s.gh, s.gw)
	if err != nil {
		return err
	}
	a := func(i int) uint64 { return uint64(e.act[i].p) }
	ptr := func(i int) cu.DevicePtr { return e.act[i].p }
	u := func(v int) uint64 { return uint64(v) }
	eps := f32(e.l.Config.Eps)
	nd := s.n * s.d
	qkv := ptr(actQKV)
	kp := qkv + cu.DevicePtr(nd*e.ty.size)
	vp := kp + cu.DevicePtr(nd*e.ty.size)
	steps := []func() error{
		func() error {
			return e.launch("im2col"+e.sfx, strided(s.b*s.np*s.k), a(actIn), u(s.b), u(s.h), u(s.w), u(s.p), a(actCols))
		},
		func() error {
			return e.blas.rowMajor(e.ty, s.b*s.np, s.d, s.k, 1, ptr(actCols), e.w.patchW, ptr(actPatch))
		},
		func() error {
			return e.launch("assemble", strided(nd), a(actPatch), uint64(e.w.patchB), uint64(e.w.cls), uint64(e.w.clsPos),
				uint64(e.w.regs), uint64(pos), u(s.b), u(s.np), u(s.r), u(s.d), a(actH))
		},
	}
	scale := float32(1 / math.Sqrt(float64(s.hd)))
	scores := actBig // fp32, tf32: float scores; bf16: bf16 scores, softmax in place
	if e.ty.size == 2 {
		scores = actP
	}
	for i := range e.w.blocks {
		g := &e.w.blocks[i]
		steps = append(steps,
			// Attention: LN1, QKV projection, heads, softmax(q k^T / sqrt(hd)) v, output projection, LayerScale residual.
			func() error {
				return e.launch("layerNorm"+e.sfx, rowsOf(s.n), a(actH), uint64(g.norm1W), uint64(g.norm1B), u(s.n), u(s.d), eps, a(actXN))
			},
			func() error { return e.blas.rowMajor(e.ty, s.n, 3*s.d, s.d, 1, ptr(actXN), g.qkvW, ptr(actBig)) },
			func() error {
				return e.launch("splitHeads"+e.sfx, strided(3*nd), a(actBig), uint64(g.qkvB), u(s.b), u(s.t), u(s.heads), u(s.hd), a(actQKV))
			},
			func() error { return e.attention(s, scale, qkv, kp, vp, ptr(scores), ptr(actP), ptr(actMid)) },
			func() error {
				return e.launch("mergeHeads"+e.sfx, strided(nd), a(actMid), u(s.b), u(s.t), u(s.heads), u(s.hd), a(actXN))
			},
			func() error { return e.blas.rowMajor(e.ty, s.n, s.d, s.d, 1, ptr(actXN), g.projW, ptr(actMid)) },
			func() error {
				return e.launch("residual", strided(nd), a(actH), a(actMid), uint64(g.projB), uint64(g.ls1), u(s.n), u(s.d))
			},
			// MLP: LN2, fc1, GELU, fc2, LayerScale residual.
			func() error {
				return e.launch("layerNorm"+e.sfx, rowsOf(s.n), a(actH), uint64(g.norm2W), uint64(g.norm2B), u(s.n), u(s.d), eps, a(actXN))
			},
			func() error { return e.blas.rowMajor(e.ty, s.n, s.m, s.d, 1, ptr(actXN), g.fc1W, ptr(actBig)) },
			func() error {
				return e.launch("biasGelu"+e.sfx, strided(s.n*s.m), a(actBig), uint64(g.fc1B), u(s.n), u(s.m), a(actP))
			},
			func() error { return e.blas.rowMajor(e.ty, s.n, s.d, s.m, 1, ptr(actP), g.fc2W, ptr(actMid)) },
			func() error {
				return e.launch("residual", strided(nd), a(actH), a(actMid), uint64(g.fc2B), uint64(g.ls2), u(s.n), u(s.d))
			},
		)
	}
	steps = append(steps, func() error {
		return e.launch("patchTokens", rowsOf(s.b*s.np), a(actH), uint64(e.w.normW), uint64(e.w.normB),
			u(s.b), u(s.np), u(s.r), u(s.d), eps, a(actOut))
	})
	for _, f := range steps {
		if err := f(); err != nil {
			return err
		}
	}
	return nil
}

// Embed runs the model on input [b,3,h,w] and returns the unit-length patch
// tokens (CLS and registers dropped), as inference.Embedder does.
func (e *Embedder) Embed(input []float32, b, h, w int) (*inference.Embedding, error) {
	if err := checkInput(input, b, h, w, e.l.Config.PatchSize); err != nil {
		return nil, err
	}
	s := e.shapeOf(b, h, w)
	emb := &inference.Embedding{Batch: b, Patches: s.np, Dim: s.d, Registers: s.r, Tokens: make([]float32, b*s.np*s.d)}
	err := e.dev.do(func() error {
		if err := e.stage(input[:b*3*h*w], s); err != nil {
			return err
		}
		if err := e.forward(s); err != nil {
			return err
		}
		return e.fetch(emb.Tokens)
	})
	if err != nil {
		return nil, fmt.Errorf("cuda: embed %d slice(s) of %dx%d: %w", b, h, w, err)
	}
	return emb, nil
}

// stage sizes the buffers for s and uploads x through pinned memory (device thread).
func (e *Embedder) stage(x []float32, s shape) error {
	if err := e.reserve(s); err != nil {
		return err
	}
	if err := e.hin.ensure(4 * len(x)); err != nil {
		return err
	}
	parallelCopy(e.hin.floats(len(x)), x)
	if err := cu.MemcpyHtoDAsync(e.act[actIn].p, e.hin.p, int64(4*len(x)), e.stream); err != nil {
		return fmt.Errorf("upload input: %w", err)
	}
	return nil
}

// fetch copies the tokens of the last forward pass to dst and waits for the
// stream (device thread).
func (e *Embedder) fetch(dst []float32) error {
	if err := e.hout.ensure(4 * len(dst)); err != nil {
		return err
	}
	if err := cu.MemcpyDtoHAsync(e.hout.p, e.act[actOut].p, int64(4*len(dst)), e.stream); err != nil {
		return fmt.Errorf("download tokens: %w", err)
	}
	if err := e.stream.Synchronize(); err != nil {
		return fmt.Errorf("run: %w", err)
	}
	parallelCopy(dst, e.hout.floats(len(dst)))
	return nil
}

// Dim is the token width D.
func (e *Embedder) Dim() int { return e.l.Config.Dim }

// OnGPU reports whether the forward pass runs on a GPU.
func (e *Embedder) OnGPU() bool { return true }

// Precision is the arithmetic in use.
func (e *Embedder) Precision() Precision { return e.prec }

// MemoryUsed is the device memory the embedder holds (weights, position
// grids and activations), in bytes.
func (e *Embedder) MemoryUsed() int64 {
	var n int64
	e.dev.do(func() error {
		for _, m := range e.mem {
			n += int64(m.size)
		}
		for i := range e.act {
			n += int64(e.act[i].size)
		}
		return nil
	})
	return n
}

// Close frees the device memory, the stream and the context.
func (e *Embedder) Close() error {
	if e.dev == nil {
		return nil
	}
	e.dev.do(func() error {
		for _, m := range e.mem {
			m.free()
		}
		for i := range e.act {
			e.act[i].free()
		}
		e.hin.free()
		e.hout.free()
		e.blas.close()
		var none cu.Stream
		if e.stream != none {
			e.stream.Destroy()
		}
		return nil
	})
	err := e.dev.close()
	e.dev = nil
	return err
}

// ScoringEmbedder is an Embedder whose patch tokens are scored against a
// DPMM model's prototypes on the GPU where they are
// (inference.ScoringBackbone): only the scores come back to the host.
type ScoringEmbedder struct {
	*Embedder
	p *prototypes
}

// NewScoringEmbedder loads the ONNX file's weights and model's prototypes
// (as inference.NewDPMMScorer selects and normalises them) onto one GPU.
func NewScoringEmbedder(o EmbedderOptions, model *inference.Model) (*ScoringEmbedder, error) {
	protos, idx, err := model.UnitPrototypes()
	if err != nil {
		return nil, err
	}
	e, err := newEmbedderFor(o, model)
	if err != nil {
		return nil, err
	}
	s, err := scoringOn(e, protos, len(idx))
	if err != nil {
		e.Close()
		return nil, err
	}
	return s, nil
}

// scoringOn uploads m unit prototypes (rows of e.Dim()) to e's device.
func scoringOn(e *Embedder, protos []float32, m int) (*ScoringEmbedder, error) {
	s := &ScoringEmbedder{Embedder: e}
	err := e.dev.do(func() (err error) {
		s.p, err = newPrototypes(e.dev, protos, m)
		return err
	})
	return s, err
}

// EmbedScore implements inference.ScoringBackbone.
func (s *ScoringEmbedder) EmbedScore(input []float32, b, h, w int) ([]float32, int, error) {
	e := s.Embedder
	if err := checkInput(input, b, h, w, e.l.Config.PatchSize); err != nil {
		return nil, 0, err
	}
	sh := e.shapeOf(b, h, w)
	n, d := b*sh.np, sh.d
	scores := make([]float32, n)
	err := e.dev.do(func() error {
		if err := e.stage(input[:b*3*h*w], sh); err != nil {
			return err
		}
		if err := e.forward(sh); err != nil {
			return err
		}
		// The scorer's GEMM and kernel run on the default stream.
		if err := e.stream.Synchronize(); err != nil {
			return fmt.Errorf("run: %w", err)
		}
		tokens := func(q0, qn int) (*buffer, error) {
			return &buffer{p: e.act[actOut].p + cu.DevicePtr(4*q0*d), cap: qn * d}, nil
		}
		return s.p.score(e.dev, n, d, tokens, scores)
	})
	if err != nil {
		return nil, 0, fmt.Errorf("cuda: embed and score %d slice(s) of %dx%d: %w", b, h, w, err)
	}
	return scores, sh.np, nil
}

// parallelCopy copies src to dst (pinned staging memory) with one goroutine
// per core: a batch of 32 slices at 448 px is 77 MB, which one core copies in
// about as long as the GPU takes to run the model on it.
func parallelCopy(dst, src []float32) {
	const chunk = 1 << 20
	if len(src) <= chunk {
		copy(dst, src)
		return
	}
	parts := min(runtime.GOMAXPROCS(0), (len(src)+chunk-1)/chunk)
	per := (len(src) + parts - 1) / parts
	var wg sync.WaitGroup
	for lo := 0; lo < len(src); lo += per {
		hi := min(lo+per, len(src))
		wg.Add(1)
		go func() {
			defer wg.Done()
			copy(dst[lo:hi], src[lo:hi])
		}()
	}
	wg.Wait()
}
