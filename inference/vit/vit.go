// Package vit owns the DINOv2 vision-transformer architecture on the Go side.
// It generates ONNX models of it with seeded random weights, for tests and
// benchmarks where the real weights cannot be downloaded: the graph has the
// Hugging Face export's IO contract (pixel_values [B,3,H,W] -> last_hidden_state
// [B,1+R+(H/14)(W/14),D]), accepts any batch and any H, W that are multiples of
// the patch size, and costs what the real model costs to run; its features mean
// nothing. It also reads such models back (Load: mkvit graphs and Hugging Face
// torch.onnx exports, weights and position resample), and has a plain float32
// forward pass of the architecture (Forward), the reference a GPU implementation
// is checked against. Serving runs models in ONNX Runtime, not here.
package vit

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	"anomalynode/inference/onnxgen"
)

// IO names of the Hugging Face / optimum export of Dinov2Model.
const (
	InputName  = "pixel_values"
	OutputName = "last_hidden_state"
)

// ErrConfig is wrapped by every error about an invalid Config or preset name.
var ErrConfig = errors.New("vit: invalid config")

// Config describes one DINOv2-style ViT. All sizes are in elements.
type Config struct {
	// Dim is the token width D.
	Dim int
	// Depth is the number of transformer blocks.
	Depth int
	// Heads is the number of attention heads; it must divide Dim.
	Heads int
	// MLPDim is the hidden width of each block's MLP.
	MLPDim int
	// PatchSize is the side of a patch in pixels (14 for DINOv2).
	PatchSize int
	// PosGrid is the side of the learned position-embedding grid (37 for
	// DINOv2, trained at 518 px); other input grids get a bicubic resample.
	PosGrid int
	// SeparablePosResize resamples the position grid as two interpolation
	// matrices (from small Resizes of an identity) applied by MatMul, instead
	// of one 2-D Resize over all D channels. Same values; ONNX Runtime's CPU
	// cubic Resize is slow enough at D=384 that this saves tens of ms per run.
	SeparablePosResize bool
	// Registers is the number of register tokens R (0 plain, 4 "with registers").
	Registers int
	// LayerScale is the value every LayerScale gamma starts at.
	LayerScale float32
	// Eps is the LayerNorm epsilon.
	Eps float32
	// InitStd is the standard deviation of the truncated-normal weights.
	InitStd float64
	// Seed makes the weights reproducible: same Config, same bytes.
	Seed uint64
}

var presets = map[string]Config{
	// tiny: a few hundred KB; fast enough to check numerically in unit tests.
	"tiny": {Dim: 48, Depth: 2, Heads: 2, MLPDim: 192, PatchSize: 14, PosGrid: 16},
	// vits14: the ViT-S/14 of facebook/dinov2-small (about 22M parameters).
	"vits14": {Dim: 384, Depth: 12, Heads: 6, MLPDim: 1536, PatchSize: 14, PosGrid: 37},
}

// PresetNames lists the presets Preset accepts.
func PresetNames() []string {
	names := make([]string, 0, len(presets))
	for n := range presets {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Preset returns the named configuration with default LayerScale, epsilon,
// init std, no registers and seed 0.
func Preset(name string) (Config, error) {
	c, ok := presets[name]
	if !ok {
		return Config{}, fmt.Errorf("%w: unknown preset %q (have %v)", ErrConfig, name, PresetNames())
	}
	c.LayerScale = 0.1
	c.Eps = 1e-6
	c.InitStd = 0.02
	return c, nil
}

// Validate reports the first thing that makes c unbuildable.
func (c Config) Validate() error {
	if err := c.checkArch(); err != nil {
		return err
	}
	if c.InitStd <= 0 {
		return fmt.Errorf("%w: init std must be positive", ErrConfig)
	}
	return nil
}

// checkArch is Validate without the initialisation parameters, which a model
// read back from a file (Load) does not have.
func (c Config) checkArch() error {
	switch {
	case c.Dim <= 0 || c.Depth <= 0 || c.Heads <= 0 || c.MLPDim <= 0 || c.PatchSize <= 0 || c.PosGrid <= 0:
		return fmt.Errorf("%w: sizes must be positive: %+v", ErrConfig, c)
	case c.Dim%c.Heads != 0:
		return fmt.Errorf("%w: heads %d do not divide dim %d", ErrConfig, c.Heads, c.Dim)
	case c.Registers < 0:
		return fmt.Errorf("%w: registers %d < 0", ErrConfig, c.Registers)
	case c.Eps <= 0:
		return fmt.Errorf("%w: eps must be positive", ErrConfig)
	}
	return nil
}

// Params is the number of weights the model holds (float32 elements).
func (c Config) Params() int64 {
	d, m, p := int64(c.Dim), int64(c.MLPDim), int64(c.PatchSize)
	embed := d*3*p*p + d + d + int64(c.Registers)*d + (1+int64(c.PosGrid*c.PosGrid))*d
	block := 2*d + (d*3*d + 3*d) + (d*d + d) + d + 2*d + (d*m + m) + (m*d + d) + d
	return embed + int64(c.Depth)*block + 2*d
}

// Block holds one transformer block's weights. Linear weights are stored
// [in, out], row-major, as MatMul consumes them; QKV is the query, key and value
// projections side by side ([D, 3D], columns q then k then v, each head-major).
type Block struct {
	Norm1W, Norm1B []float32 // [D]
	QKVW, QKVB     []float32 // [D,3D], [3D]
	ProjW, ProjB   []float32 // [D,D], [D]
	LS1            []float32 // [D] LayerScale gamma after attention
	Norm2W, Norm2B []float32 // [D]
	FC1W, FC1B     []float32 // [D,M], [M]
	FC2W, FC2B     []float32 // [M,D], [D]
	LS2            []float32 // [D] LayerScale gamma after the MLP
}

// Weights are all of a model's parameters.
type Weights struct {
	PatchW    []float32 // [D,3,P,P] Conv weight
	PatchB    []float32 // [D]
	CLS       []float32 // [D]
	Registers []float32 // [R,D]
	Pos       []float32 // [1+G*G, D]: CLS position, then the G x G grid row-major
	Blocks    []Block
	NormW     []float32 // [D] final LayerNorm
	NormB     []float32 // [D]
}

// NewWeights draws c's weights from its seed: truncated normals (at 2 std)
// for projections, embeddings and tokens, zero biases, LayerNorm gamma 1 and
// beta 0, and LayerScale gammas of c.LayerScale.
func NewWeights(c Config) (*Weights, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(c.Seed, 0x64696e6f7632)) // second word: "dinov2"
	normal := func(n int) []float32 {
		out := make([]float32, n)
		for i := range out {
			z := rng.NormFloat64()
			for math.Abs(z) > 2 {
				z = rng.NormFloat64()
			}
			out[i] = float32(z * c.InitStd)
		}
		return out
	}
	fill := func(n int, v float32) []float32 {
		out := make([]float32, n)
		for i := range out {
			out[i] = v
		}
		return out
	}
	d, m, p := c.Dim, c.MLPDim, c.PatchSize
	w := &Weights{
		PatchW:    normal(d * 3 * p * p),
		PatchB:    make([]float32, d),
		CLS:       normal(d),
		Registers: normal(c.Registers * d),
		Pos:       normal((1 + c.PosGrid*c.PosGrid) * d),
		NormW:     fill(d, 1),
		NormB:     make([]float32, d),
	}
	for range c.Depth {
		w.Blocks = append(w.Blocks, Block{
			Norm1W: fill(d, 1), Norm1B: make([]float32, d),
			QKVW: normal(d * 3 * d), QKVB: make([]float32, 3*d),
			ProjW: normal(d * d), ProjB: make([]float32, d),
			LS1:    fill(d, c.LayerScale),
			Norm2W: fill(d, 1), Norm2B: make([]float32, d),
			FC1W: normal(d * m), FC1B: make([]float32, m),
			FC2W: normal(m * d), FC2B: make([]float32, d),
			LS2: fill(d, c.LayerScale),
		})
	}
	return w, nil
}

// Model builds the ONNX graph of c with weights w.
func Model(c Config, w *Weights) (*onnxgen.Model, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	// Tensor sizes are checked when the model is encoded; the block count is not a tensor.
	if len(w.Blocks) != c.Depth {
		return nil, fmt.Errorf("%w: %d blocks of weights for depth %d", ErrConfig, len(w.Blocks), c.Depth)
	}
	d, m, p, gs := int64(c.Dim), int64(c.MLPDim), int64(c.PatchSize), int64(c.PosGrid)
	heads, hd := int64(c.Heads), int64(c.Dim/c.Heads)
	r := int64(c.Registers)

	g := onnxgen.NewGraph("dinov2")
	i64 := func(name string, v ...int64) string { return g.Int64(name, []int64{int64(len(v))}, v) }
	scalar := func(name string, v float32) string { return g.Float32(name, nil, []float32{v}) }
	op := func(name string, in ...string) string { return g.Op(name, in) }

	x := g.Input(InputName, onnxgen.Float32,
		onnxgen.Sym("batch_size"), onnxgen.Fixed(3), onnxgen.Sym("height"), onnxgen.Sym("width"))

	// Patch embedding: one stride-P convolution, then [B,D,h,w] -> [B,h*w,D].
	conv := g.Op("Conv", []string{x,
		g.Float32("embeddings.patch_embeddings.projection.weight", []int64{d, 3, p, p}, w.PatchW),
		g.Float32("embeddings.patch_embeddings.projection.bias", []int64{d}, w.PatchB)},
		onnxgen.AttrInts("kernel_shape", p, p), onnxgen.AttrInts("strides", p, p))
	batch := g.Op("Slice", []string{op("Shape", x), i64("c_0", 0), i64("c_1", 1)})
	grid := g.Op("Slice", []string{op("Shape", conv), i64("c_2", 2), i64("c_4", 4)})
	tokens := g.Op("Transpose", []string{op("Reshape", conv, i64("shape_0_D_m1", 0, d, -1))},
		onnxgen.AttrInts("perm", 0, 2, 1))

	// Position embeddings: the learned G x G grid resampled to the input's grid
	// with bicubic interpolation, as Hugging Face's interpolate_pos_encoding does.
	pos := g.Float32("embeddings.position_embeddings", []int64{1, 1 + gs*gs, d}, w.Pos)
	axis1 := i64("axes_1", 1)
	clsPos := g.Op("Slice", []string{pos, i64("c_0b", 0), i64("c_1b", 1), axis1})
	patchPos := g.Op("Slice", []string{pos, i64("c_1c", 1), i64("c_1pg", 1+gs*gs), axis1})
	patchPos = g.Op("Transpose", []string{op("Reshape", patchPos, i64("shape_1_G_G_D", 1, gs, gs, d))},
		onnxgen.AttrInts("perm", 0, 3, 1, 2))
	resize := func(x, sizes string) string {
		return g.Op("Resize", []string{x, "", "", sizes},
			onnxgen.AttrString("mode", "cubic"),
			onnxgen.AttrFloat("cubic_coeff_a", -0.75),
			onnxgen.AttrString("coordinate_transformation_mode", "half_pixel"))
	}
	if c.SeparablePosResize {
		// Bicubic is separable: resample an identity to get the G -> h and
		// G -> w interpolation matrices (tiny Resizes), then apply them to
		// all channels as two MatMuls.
		eye := make([]float32, gs*gs)
		for i := range gs {
			eye[i*gs+i] = 1
		}
		basis := g.Float32("pos_resize_identity", []int64{1, gs, gs, 1}, eye)
		head, tail := i64("shape_1_G", 1, gs), i64("shape_1", 1)
		axis0 := onnxgen.AttrInt("axis", 0)
		hSize := g.Op("Slice", []string{grid, i64("c_0c", 0), i64("c_1d", 1)})
		wSize := g.Op("Slice", []string{grid, i64("c_1e", 1), i64("c_2b", 2)})
		gMinus1 := i64("shape_G_m1", gs, -1)
		wyT := op("Reshape", resize(basis, g.Op("Concat", []string{head, hSize, tail}, axis0)), gMinus1) // [G,h]
		wxT := op("Reshape", resize(basis, g.Op("Concat", []string{head, wSize, tail}, axis0)), gMinus1) // [G,w]
		wy := g.Op("Transpose", []string{wyT}, onnxgen.AttrInts("perm", 1, 0))
		patchPos = op("MatMul", op("MatMul", wy, patchPos), wxT) // [1,D,h,w]
	} else {
		sizes := g.Op("Concat", []string{i64("shape_1_D", 1, d), grid}, onnxgen.AttrInt("axis", 0))
		patchPos = resize(patchPos, sizes)
	}
	patchPos = g.Op("Transpose", []string{op("Reshape", patchPos, i64("shape_1_D_m1", 1, d, -1))},
		onnxgen.AttrInts("perm", 0, 2, 1))
	tokens = op("Add", tokens, patchPos)

	// [CLS + its position] then registers (no position) then patches.
	cls := op("Add", g.Float32("embeddings.cls_token", []int64{1, 1, d}, w.CLS), clsPos)
	seq := []string{op("Expand", cls, g.Op("Concat", []string{batch, i64("shape_1_D_tail", 1, d)}, onnxgen.AttrInt("axis", 0)))}
	if r > 0 {
		reg := g.Float32("embeddings.register_tokens", []int64{1, r, d}, w.Registers)
		seq = append(seq, op("Expand", reg, g.Op("Concat", []string{batch, i64("shape_R_D", r, d)}, onnxgen.AttrInt("axis", 0))))
	}
	h := g.Op("Concat", append(seq, tokens), onnxgen.AttrInt("axis", 1))

	layerNorm := func(in, prefix string, gamma, beta []float32) string {
		return g.Op("LayerNormalization", []string{in,
			g.Float32(prefix+".weight", []int64{d}, gamma), g.Float32(prefix+".bias", []int64{d}, beta)},
			onnxgen.AttrInt("axis", -1), onnxgen.AttrFloat("epsilon", c.Eps))
	}
	linear := func(in, prefix string, k, n int64, wt, b []float32) string {
		y := op("MatMul", in, g.Float32(prefix+".weight", []int64{k, n}, wt))
		return op("Add", y, g.Float32(prefix+".bias", []int64{n}, b))
	}
	qkvShape := i64("shape_qkv", 0, 0, 3, heads, hd)
	ctxShape := i64("shape_0_0_D", 0, 0, d)
	idx := []string{g.Int64("idx_q", nil, []int64{0}), g.Int64("idx_k", nil, []int64{1}), g.Int64("idx_v", nil, []int64{2})}
	scale := scalar("attn_scale", float32(1/math.Sqrt(float64(hd))))
	sqrt2 := scalar("sqrt2", float32(math.Sqrt2))
	one, half := scalar("one", 1), scalar("half", 0.5)

	for i, blk := range w.Blocks {
		pre := fmt.Sprintf("encoder.layer.%d", i)
		// Attention: [B,T,3D] -> [3,B,heads,T,hd]; softmax(q k^T / sqrt(hd)) v.
		qkv := linear(layerNorm(h, pre+".norm1", blk.Norm1W, blk.Norm1B), pre+".attention.qkv", d, 3*d, blk.QKVW, blk.QKVB)
		qkv = g.Op("Transpose", []string{op("Reshape", qkv, qkvShape)}, onnxgen.AttrInts("perm", 2, 0, 3, 1, 4))
		var qkvs [3]string
		for j := range qkvs {
			qkvs[j] = g.Op("Gather", []string{qkv, idx[j]}, onnxgen.AttrInt("axis", 0))
		}
		kt := g.Op("Transpose", []string{qkvs[1]}, onnxgen.AttrInts("perm", 0, 1, 3, 2))
		attn := g.Op("Softmax", []string{op("Mul", op("MatMul", qkvs[0], kt), scale)}, onnxgen.AttrInt("axis", -1))
		ctx := g.Op("Transpose", []string{op("MatMul", attn, qkvs[2])}, onnxgen.AttrInts("perm", 0, 2, 1, 3))
		out := linear(op("Reshape", ctx, ctxShape), pre+".attention.output.dense", d, d, blk.ProjW, blk.ProjB)
		out = op("Mul", out, g.Float32(pre+".layer_scale1.lambda1", []int64{d}, blk.LS1))
		h = op("Add", h, out)

		// MLP with exact (erf) GELU.
		f := linear(layerNorm(h, pre+".norm2", blk.Norm2W, blk.Norm2B), pre+".mlp.fc1", d, m, blk.FC1W, blk.FC1B)
		// Written as PyTorch exports nn.GELU, so ORT's GeluFusion recognises it.
		gelu := op("Mul", op("Mul", f, half), op("Add", op("Erf", op("Div", f, sqrt2)), one))
		out = linear(gelu, pre+".mlp.fc2", m, d, blk.FC2W, blk.FC2B)
		out = op("Mul", out, g.Float32(pre+".layer_scale2.lambda1", []int64{d}, blk.LS2))
		h = op("Add", h, out)
	}
	g.Node("LayerNormalization", []string{h,
		g.Float32("layernorm.weight", []int64{d}, w.NormW), g.Float32("layernorm.bias", []int64{d}, w.NormB)},
		[]string{OutputName}, onnxgen.AttrInt("axis", -1), onnxgen.AttrFloat("epsilon", c.Eps))
	g.Output(OutputName, onnxgen.Float32, onnxgen.Sym("batch_size"), onnxgen.Sym("sequence_length"), onnxgen.Fixed(d))

	return &onnxgen.Model{
		Graph:    g,
		Producer: "anomalynode mkvit",
		Doc:      "DINOv2 ViT architecture with seeded RANDOM weights: for tests and benchmarks, not a trained model",
		Metadata: map[string]string{
			"anomalynode.random_weights": "true",
			"anomalynode.seed":           strconv.FormatUint(c.Seed, 10),
			"anomalynode.registers":      strconv.Itoa(c.Registers),
			"anomalynode.dim":            strconv.Itoa(c.Dim),
			"anomalynode.depth":          strconv.Itoa(c.Depth),
			"anomalynode.heads":          strconv.Itoa(c.Heads),
			"anomalynode.patch_size":     strconv.Itoa(c.PatchSize),
			"anomalynode.pos_grid":       strconv.Itoa(c.PosGrid),
			"anomalynode.pos_resize":     map[bool]string{false: "2d", true: "separable"}[c.SeparablePosResize],
		},
	}, nil
}

// Generate draws c's weights and returns the encoded ONNX model.
func Generate(c Config) ([]byte, error) {
	w, err := NewWeights(c)
	if err != nil {
		return nil, err
	}
	m, err := Model(c, w)
	if err != nil {
		return nil, err
	}
	b, err := m.Marshal()
	if err != nil {
		return nil, fmt.Errorf("vit: %w", err)
	}
	return b, nil
}

// WriteFile generates c's model and writes it to path through a temporary
// file and a rename, so a reader never sees half a model. It returns the
// model's sha256 (hex) and size in bytes.
func WriteFile(path string, c Config) (sum string, size int, err error) {
	b, err := Generate(c)
	if err != nil {
		return "", 0, err
	}
	return writeModel(path, b)
}

// WriteSignalFile writes the signal backbone c to path as WriteFile does.
func WriteSignalFile(path string, c SignalConfig) (sum string, size int, err error) {
	b, err := GenerateSignal(c)
	if err != nil {
		return "", 0, err
	}
	return writeModel(path, b)
}

// writeModel writes b to path through a temporary file and a rename and
// returns its sha256 (hex) and size.
func writeModel(path string, b []byte) (sum string, size int, err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return "", 0, fmt.Errorf("vit: write model: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return "", 0, fmt.Errorf("vit: write model: %w", err)
	}
	// CreateTemp makes the file 0600; a model is not secret.
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return "", 0, fmt.Errorf("vit: write model: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", 0, fmt.Errorf("vit: write model: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", 0, fmt.Errorf("vit: write model: %w", err)
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:]), len(b), nil
}
