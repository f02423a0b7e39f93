package vit

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
)

// Resample says how the learned position grid is resampled to the input's
// patch grid, read from the graph's Resize node(s).
type Resample struct {
	CubicA         float64 // cubic_coeff_a (-0.75 PyTorch bicubic, -0.5 antialiased)
	Antialias      bool
	ExcludeOutside bool
	FixedGrid      [2]int // non-zero (gh, gw): the graph's Resize sizes are constants, so only this patch grid is valid

	// pytorchHalfPixel: coordinate_transformation_mode pytorch_half_pixel,
	// which differs from half_pixel only for an output of one sample.
	pytorchHalfPixel bool
}

// Loaded is a DINOv2-style ViT read back from an ONNX file.
type Loaded struct {
	Config   Config // architecture; InitStd, LayerScale and Seed are not recorded in a graph and stay zero
	Weights  *Weights
	Resample Resample
	Input    string // the graph's pixel input (pixel_values)
	Output   string // the graph's last_hidden_state output
}

// allowedOps are the op types mkvit graphs and Hugging Face dynamo exports of
// Dinov2Model / Dinov2WithRegistersModel use; Load refuses anything else.
var allowedOps = map[string]bool{
	"Conv": true, "Reshape": true, "Transpose": true, "Slice": true, "Shape": true, "Concat": true,
	"Expand": true, "Add": true, "Sub": true, "Mul": true, "Div": true, "MatMul": true, "Gemm": true,
	"Softmax": true, "LayerNormalization": true, "Erf": true, "Gelu": true, "Resize": true,
	"Gather": true, "Squeeze": true, "Unsqueeze": true, "Constant": true, "Cast": true,
	"Identity": true, "Sqrt": true, "Pow": true, "ReduceMean": true, "ConstantOfShape": true,
	"Range": true, "Equal": true, "Where": true,
}

// Load reads the architecture and weights of a DINOv2-style ViT from an ONNX
// file: an mkvit graph, or a Hugging Face torch.onnx (dynamo) export of
// Dinov2Model or Dinov2WithRegistersModel, whose weights may live in an
// external data file beside it. Anything it cannot map with certainty (an
// unknown op, a missing tensor, an unexpected count) is an error naming it.
func Load(path string) (*Loaded, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("vit: load: %w", err)
	}
	l, err := loadBytes(b, filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrModel, path, err)
	}
	return l, nil
}

// loadBytes maps an encoded model; dir is where its external data lives
// (empty: none allowed).
func loadBytes(b []byte, dir string) (*Loaded, error) {
	g, err := decodeModel(b, dir)
	if err != nil {
		return nil, err
	}
	m := &mapper{g: g}
	return m.load()
}

type mapper struct {
	g *graph
	c Config
	// steps bounds the graph walks (evalScalar, scaleOf, concatConst), which
	// branch: a hostile graph must not make them exponential.
	steps int
}

const maxSteps = 100_000

// step counts one step of a walk and reports whether the budget is spent.
func (m *mapper) step() bool {
	m.steps++
	return m.steps > maxSteps
}

// init returns the named initializer's float32 data, checking its shape.
func (m *mapper) init(name string, dims ...int64) ([]float32, error) {
	t, ok := m.g.inits[name]
	if !ok {
		return nil, modelErr("initializer %q not found", name)
	}
	if dims != nil && !slices.Equal(t.dims, dims) {
		return nil, modelErr("initializer %q has shape %v, want %v", name, t.dims, dims)
	}
	return m.g.floatData(t)
}

func (m *mapper) load() (*Loaded, error) {
	g := m.g
	for _, n := range g.nodes {
		if n.domain != "" && n.domain != "ai.onnx" {
			return nil, modelErr("node %q: op %s in domain %q is not supported", n.name, n.opType, n.domain)
		}
		if len(n.outputs) == 0 || n.outputs[0] == "" {
			return nil, modelErr("node %q (%s) has no output", n.name, n.opType)
		}
		if !allowedOps[n.opType] {
			return nil, modelErr("node %q: op %s is not supported", n.name, n.opType)
		}
		if n.opType == "Gelu" {
			if a := n.attrs["approximate"]; a != nil && a.s != "none" {
				return nil, modelErr("node %q: Gelu approximate=%q is not supported (only exact)", n.name, a.s)
			}
		}
	}

	// Embeddings fix D, P, G and R.
	cls, ok := g.inits["embeddings.cls_token"]
	if !ok {
		return nil, modelErr("initializer %q not found", "embeddings.cls_token")
	}
	if len(cls.dims) != 3 || cls.dims[0] != 1 || cls.dims[1] != 1 || cls.dims[2] <= 0 {
		return nil, modelErr("embeddings.cls_token has shape %v, want [1,1,D]", cls.dims)
	}
	d := cls.dims[2]
	pw, ok := g.inits["embeddings.patch_embeddings.projection.weight"]
	if !ok {
		return nil, modelErr("initializer %q not found", "embeddings.patch_embeddings.projection.weight")
	}
	if len(pw.dims) != 4 || pw.dims[0] != d || pw.dims[1] != 3 || pw.dims[2] != pw.dims[3] || pw.dims[2] <= 0 {
		return nil, modelErr("patch projection weight has shape %v, want [%d,3,P,P]", pw.dims, d)
	}
	p := pw.dims[2]
	pos, ok := g.inits["embeddings.position_embeddings"]
	if !ok {
		return nil, modelErr("initializer %q not found", "embeddings.position_embeddings")
	}
	if len(pos.dims) != 3 || pos.dims[0] != 1 || pos.dims[2] != d {
		return nil, modelErr("position embeddings have shape %v, want [1,1+G*G,%d]", pos.dims, d)
	}
	gs := int64(math.Round(math.Sqrt(float64(pos.dims[1] - 1))))
	if gs <= 0 || 1+gs*gs != pos.dims[1] {
		return nil, modelErr("position embeddings have %d rows, not 1 + a square", pos.dims[1])
	}
	var r int64
	if t, ok := g.inits["embeddings.register_tokens"]; ok {
		if len(t.dims) != 3 || t.dims[0] != 1 || t.dims[2] != d {
			return nil, modelErr("embeddings.register_tokens has shape %v, want [1,R,%d]", t.dims, d)
		}
		r = t.dims[1]
	}
	depth := 0
	for {
		if _, ok := g.inits[fmt.Sprintf("encoder.layer.%d.norm1.weight", depth)]; !ok {
			break
		}
		depth++
	}
	if depth == 0 {
		return nil, modelErr("initializer %q not found", "encoder.layer.0.norm1.weight")
	}
	if d > math.MaxInt32 || p > 1<<16 || gs > 1<<16 || r > 1<<16 {
		return nil, modelErr("implausible sizes D=%d P=%d G=%d R=%d", d, p, gs, r)
	}
	m.c = Config{Dim: int(d), Depth: depth, PatchSize: int(p), PosGrid: int(gs), Registers: int(r)}

	w := &Weights{}
	var err error
	if err := m.checkPatchConv(pw.name); err != nil {
		return nil, err
	}
	if w.PatchW, err = m.init(pw.name); err != nil {
		return nil, err
	}
	if w.PatchB, err = m.init("embeddings.patch_embeddings.projection.bias", d); err != nil {
		return nil, err
	}
	if w.CLS, err = m.init("embeddings.cls_token"); err != nil {
		return nil, err
	}
	if w.Pos, err = m.init("embeddings.position_embeddings"); err != nil {
		return nil, err
	}
	if r > 0 {
		if w.Registers, err = m.init("embeddings.register_tokens"); err != nil {
			return nil, err
		}
	}

	eps := float32(-1)
	layerNorm := func(prefix string) (gamma, beta []float32, out string, err error) {
		if gamma, err = m.init(prefix+".weight", d); err != nil {
			return
		}
		if beta, err = m.init(prefix+".bias", d); err != nil {
			return
		}
		ln, err := m.soleConsumer(prefix+".weight", "LayerNormalization", 1)
		if err != nil {
			return nil, nil, "", err
		}
		if len(ln.inputs) < 3 || ln.inputs[2] != prefix+".bias" {
			return nil, nil, "", modelErr("LayerNormalization %q does not take %s.bias", ln.name, prefix)
		}
		if a := ln.attrs["axis"]; a != nil && a.i != -1 && a.i != 2 {
			return nil, nil, "", modelErr("LayerNormalization %q normalises axis %d, not the last", ln.name, a.i)
		}
		e := float32(1e-5) // the ONNX default
		if a := ln.attrs["epsilon"]; a != nil {
			e = a.f
		}
		if eps >= 0 && e != eps {
			return nil, nil, "", modelErr("LayerNormalization %q epsilon %g differs from %g", ln.name, e, eps)
		}
		eps = e
		return gamma, beta, ln.outputs[0], nil
	}

	heads := 0
	linears := 0
	for i := range depth {
		pre := fmt.Sprintf("encoder.layer.%d", i)
		var blk Block
		var ln1, ln2 string
		if blk.Norm1W, blk.Norm1B, ln1, err = layerNorm(pre + ".norm1"); err != nil {
			return nil, err
		}
		// Attention projections: fused qkv (mkvit) or query, key, value (HF).
		var qkvOut string
		if _, fused := g.inits[pre+".attention.qkv.bias"]; fused {
			lin, err := m.linear(pre+".attention.qkv", ln1, d, 3*d)
			if err != nil {
				return nil, err
			}
			blk.QKVW, blk.QKVB, qkvOut = lin.w, lin.b, lin.out
			linears++
		} else {
			var lins [3]*linearWeights
			for j, name := range []string{"query", "key", "value"} {
				if lins[j], err = m.linear(pre+".attention.attention."+name, ln1, d, d); err != nil {
					return nil, err
				}
			}
			// [D,3D]: row i is q's row i, then k's, then v's.
			blk.QKVW, blk.QKVB = make([]float32, 0, d*3*d), make([]float32, 0, 3*d)
			for row := range d {
				for _, lin := range lins {
					blk.QKVW = append(blk.QKVW, lin.w[row*d:(row+1)*d]...)
				}
			}
			for _, lin := range lins {
				blk.QKVB = append(blk.QKVB, lin.b...)
			}
			qkvOut = lins[0].out
			linears += 3
		}
		h, err := m.heads(qkvOut)
		if err != nil {
			return nil, fmt.Errorf("%w (layer %d)", err, i)
		}
		if heads != 0 && h != heads {
			return nil, modelErr("layer %d has %d heads, layer 0 has %d", i, h, heads)
		}
		heads = h

		proj, err := m.linear(pre+".attention.output.dense", "", d, d)
		if err != nil {
			return nil, err
		}
		blk.ProjW, blk.ProjB = proj.w, proj.b
		if blk.LS1, err = m.layerScale(pre+".layer_scale1.lambda1", proj.out, d); err != nil {
			return nil, err
		}
		if blk.Norm2W, blk.Norm2B, ln2, err = layerNorm(pre + ".norm2"); err != nil {
			return nil, err
		}
		fc1b, ok := g.inits[pre+".mlp.fc1.bias"]
		if !ok {
			return nil, modelErr("initializer %q not found", pre+".mlp.fc1.bias")
		}
		if len(fc1b.dims) != 1 || fc1b.dims[0] <= 0 {
			return nil, modelErr("%s has shape %v", fc1b.name, fc1b.dims)
		}
		mlp := fc1b.dims[0]
		if m.c.MLPDim != 0 && int64(m.c.MLPDim) != mlp {
			return nil, modelErr("layer %d MLP width %d differs from layer 0's %d", i, mlp, m.c.MLPDim)
		}
		m.c.MLPDim = int(mlp)
		fc1, err := m.linear(pre+".mlp.fc1", ln2, d, mlp)
		if err != nil {
			return nil, err
		}
		fc2, err := m.linear(pre+".mlp.fc2", "", mlp, d)
		if err != nil {
			return nil, err
		}
		if err := m.checkGelu(fc1.out, fc2.in); err != nil {
			return nil, fmt.Errorf("%w (layer %d MLP)", err, i)
		}
		blk.FC1W, blk.FC1B, blk.FC2W, blk.FC2B = fc1.w, fc1.b, fc2.w, fc2.b
		if blk.LS2, err = m.layerScale(pre+".layer_scale2.lambda1", fc2.out, d); err != nil {
			return nil, err
		}
		linears += 3
		w.Blocks = append(w.Blocks, blk)
	}
	var out string
	if w.NormW, w.NormB, out, err = layerNorm("layernorm"); err != nil {
		return nil, err
	}
	m.c.Heads, m.c.Eps = heads, eps

	// Counts: an architecture with extra pieces (another norm, a gated MLP,
	// more attention) has more of these than the mapped weights explain.
	count := map[string]int{}
	weighted := 0
	for _, n := range g.nodes {
		count[n.opType]++
		if (n.opType == "MatMul" || n.opType == "Gemm") && len(n.inputs) >= 2 {
			for _, in := range n.inputs[:2] {
				if t := g.constant(in); t != nil && len(t.dims) == 2 {
					weighted++
				} else if pr := g.producer[in]; pr != nil && pr.opType == "Transpose" && g.inits[pr.inputs[0]] != nil {
					weighted++
				}
			}
		}
	}
	if n := count["LayerNormalization"]; n != 2*depth+1 {
		return nil, modelErr("%d LayerNormalization nodes, want %d for %d layers", n, 2*depth+1, depth)
	}
	if weighted != linears {
		return nil, modelErr("%d matrix products with a weight, but %d linear layers were mapped", weighted, linears)
	}
	if n := count["Softmax"]; n != depth {
		return nil, modelErr("%d Softmax nodes, want %d for %d layers", n, depth, depth)
	}
	for _, n := range g.nodes {
		if n.opType == "Softmax" {
			if a := n.attrs["axis"]; a != nil && a.i != -1 && a.i != 3 {
				return nil, modelErr("Softmax %q over axis %d, not the last", n.name, a.i)
			}
		}
	}
	if err := m.checkAttentionScale(); err != nil {
		return nil, err
	}

	rs, separable, err := m.resample()
	if err != nil {
		return nil, err
	}
	m.c.SeparablePosResize = separable
	if err := m.c.checkArch(); err != nil {
		return nil, err
	}

	var inputs []string
	for _, in := range g.inputs {
		if g.inits[in] == nil {
			inputs = append(inputs, in)
		}
	}
	if len(inputs) != 1 {
		return nil, modelErr("graph has inputs %v, want one pixel input", inputs)
	}
	if !slices.Contains(g.outputs, out) {
		return nil, modelErr("the final LayerNormalization's output %q is not a graph output", out)
	}
	return &Loaded{Config: m.c, Weights: w, Resample: rs, Input: inputs[0], Output: out}, nil
}

// soleConsumer returns the one node that reads name, which must be op at
// input index idx.
func (m *mapper) soleConsumer(name, op string, idx int) (*node, error) {
	cs := m.g.consumers[name]
	if len(cs) != 1 {
		return nil, modelErr("%q is read by %d nodes, want one %s", name, len(cs), op)
	}
	n := cs[0]
	if n.opType != op || len(n.inputs) <= idx || n.inputs[idx] != name || len(n.outputs) == 0 {
		return nil, modelErr("%q is read by %s %q, want %s input %d", name, n.opType, n.name, op, idx)
	}
	return n, nil
}

func (m *mapper) checkPatchConv(weight string) error {
	conv, err := m.soleConsumer(weight, "Conv", 1)
	if err != nil {
		return err
	}
	p := int64(m.c.PatchSize)
	if len(conv.inputs) < 3 || conv.inputs[2] != "embeddings.patch_embeddings.projection.bias" {
		return modelErr("Conv %q does not take the patch projection bias", conv.name)
	}
	want := map[string][]int64{"strides": {p, p}, "kernel_shape": {p, p}}
	for k, v := range want {
		if a := conv.attrs[k]; a == nil && k == "strides" || a != nil && !slices.Equal(a.ints, v) {
			return modelErr("Conv %q %s is not %v", conv.name, k, v)
		}
	}
	if a := conv.attrs["pads"]; a != nil && slices.ContainsFunc(a.ints, func(v int64) bool { return v != 0 }) {
		return modelErr("Conv %q pads %v", conv.name, a.ints)
	}
	if a := conv.attrs["dilations"]; a != nil && slices.ContainsFunc(a.ints, func(v int64) bool { return v != 1 }) {
		return modelErr("Conv %q dilations %v", conv.name, a.ints)
	}
	if a := conv.attrs["group"]; a != nil && a.i != 1 {
		return modelErr("Conv %q group %d", conv.name, a.i)
	}
	if a := conv.attrs["auto_pad"]; a != nil && a.s != "NOTSET" && a.s != "VALID" {
		return modelErr("Conv %q auto_pad %s", conv.name, a.s)
	}
	return nil
}

// linearWeights is one mapped linear layer y = x W + b.
type linearWeights struct {
	w, b    []float32 // [in,out], [out]
	in, out string    // the value x and the value y
}

// linear finds the linear layer with the named bias (prefix.bias): the Add
// that reads the bias adds it to a MatMul of x with an initializer [in,out],
// or with a Transpose of one [out,in]; or a Gemm takes the bias as C. x must
// be wantIn when that is not empty.
func (m *mapper) linear(prefix, wantIn string, in, out int64) (*linearWeights, error) {
	g := m.g
	bias, err := m.init(prefix+".bias", out)
	if err != nil {
		return nil, err
	}
	cs := g.consumers[prefix+".bias"]
	if len(cs) != 1 {
		return nil, modelErr("%s.bias is read by %d nodes, want one Add or Gemm", prefix, len(cs))
	}
	n := cs[0]
	lw := &linearWeights{b: bias}
	var prod *node
	switch {
	case n.opType == "Add" && len(n.inputs) == 2:
		other := n.inputs[0]
		if other == prefix+".bias" {
			other = n.inputs[1]
		}
		prod = g.producer[other]
		if prod == nil || prod.opType != "MatMul" || len(prod.inputs) != 2 {
			return nil, modelErr("%s.bias is added to %q, which no MatMul produces", prefix, other)
		}
	case n.opType == "Gemm" && len(n.inputs) == 3 && n.inputs[2] == prefix+".bias":
		prod = n
		for _, k := range []string{"alpha", "beta"} {
			if a := n.attrs[k]; a != nil && a.f != 1 {
				return nil, modelErr("Gemm %q %s=%g", n.name, k, a.f)
			}
		}
		if a := n.attrs["transA"]; a != nil && a.i != 0 {
			return nil, modelErr("Gemm %q transA=%d", n.name, a.i)
		}
	default:
		return nil, modelErr("%s.bias is read by %s %q, want Add or Gemm", prefix, n.opType, n.name)
	}
	lw.out = n.outputs[0]
	lw.in = prod.inputs[0]
	wname := prod.inputs[1]
	transposed := prod.opType == "Gemm" && prod.attrs["transB"] != nil && prod.attrs["transB"].i == 1
	t := g.constant(wname)
	if t == nil {
		if tr := g.producer[wname]; tr != nil && tr.opType == "Transpose" && prod.opType == "MatMul" {
			if a := tr.attrs["perm"]; a == nil || slices.Equal(a.ints, []int64{1, 0}) {
				t, transposed = g.constant(tr.inputs[0]), true
			}
		}
	}
	if t == nil {
		return nil, modelErr("the weight of %s (%q) is not a constant", prefix, wname)
	}
	want := []int64{in, out}
	if transposed {
		want = []int64{out, in}
	}
	if !slices.Equal(t.dims, want) {
		return nil, modelErr("the weight of %s (%q) has shape %v, want %v", prefix, t.name, t.dims, want)
	}
	wt, err := g.floatData(t)
	if err != nil {
		return nil, err
	}
	if transposed {
		tr := make([]float32, len(wt))
		for o := range out {
			for i := range in {
				tr[i*out+o] = wt[o*in+i]
			}
		}
		wt = tr
	}
	lw.w = wt
	if wantIn != "" && lw.in != wantIn {
		return nil, modelErr("%s reads %q, not the preceding LayerNormalization's output %q", prefix, lw.in, wantIn)
	}
	return lw, nil
}

// layerScale reads a LayerScale gamma and checks it multiplies value.
func (m *mapper) layerScale(name, value string, d int64) ([]float32, error) {
	ls, err := m.init(name, d)
	if err != nil {
		return nil, err
	}
	cs := m.g.consumers[name]
	if len(cs) != 1 || cs[0].opType != "Mul" || !slices.Contains(cs[0].inputs, value) {
		return nil, modelErr("%s does not multiply %q", name, value)
	}
	return ls, nil
}

// heads reads the head count from the Reshape that splits the query (or
// qkv) projection's output: the last two constant entries of its shape are
// (heads, head_dim). Failing that, the anomalynode.heads metadata.
func (m *mapper) heads(qOut string) (int, error) {
	d := int64(m.c.Dim)
	for _, n := range m.g.consumers[qOut] {
		if n.opType != "Reshape" || len(n.inputs) != 2 || n.inputs[0] != qOut {
			continue
		}
		tail := m.trailingConst(n.inputs[1])
		if len(tail) >= 2 {
			h, hd := tail[len(tail)-2], tail[len(tail)-1]
			if h > 0 && hd > 0 && h*hd == d {
				return int(h), nil
			}
		}
	}
	if s, ok := m.g.metadata["anomalynode.heads"]; ok {
		h, err := strconv.Atoi(s)
		if err != nil || h <= 0 || int64(h) > d || d%int64(h) != 0 {
			return 0, modelErr("metadata anomalynode.heads = %q is not a divisor of %d", s, d)
		}
		return h, nil
	}
	return 0, modelErr("head count not found: no Reshape of %q to (heads, head_dim) and no anomalynode.heads metadata", qOut)
}

// trailingConst returns the known trailing entries of a 1-D int64 value: all
// of it when constant; for a Concat, the pieces after its last non-constant one.
func (m *mapper) trailingConst(name string) []int64 {
	if t := m.g.constant(name); t != nil {
		v, err := m.g.intData(t)
		if err != nil || len(t.dims) > 1 {
			return nil
		}
		return v
	}
	return m.concatConst(name, false)
}

// leadingConst is trailingConst from the front.
func (m *mapper) leadingConst(name string) []int64 {
	if t := m.g.constant(name); t != nil {
		v, err := m.g.intData(t)
		if err != nil || len(t.dims) > 1 {
			return nil
		}
		return v
	}
	return m.concatConst(name, true)
}

func (m *mapper) concatConst(name string, leading bool) []int64 {
	n := m.g.producer[name]
	if n == nil || n.opType != "Concat" || m.step() {
		return nil
	}
	var known [][]int64
	ins := slices.Clone(n.inputs)
	if !leading {
		slices.Reverse(ins)
	}
	for _, in := range ins {
		t := m.g.constant(in)
		if t == nil {
			sub := m.concatConst(in, leading)
			if sub != nil {
				known = append(known, sub)
			}
			break
		}
		v, err := m.g.intData(t)
		if err != nil || len(t.dims) > 1 {
			break
		}
		known = append(known, v)
	}
	if !leading {
		slices.Reverse(known)
	}
	return slices.Concat(known...)
}

// checkGelu checks that the MLP's activation, the sub-graph from fc1's output
// to fc2's input, is the exact GELU: a Gelu node, or its erf formula, checked
// by evaluating it at a few points.
func (m *mapper) checkGelu(from, to string) error {
	for _, x := range []float64{-3, -1.3, -0.4, 0, 0.2, 0.9, 2.5} {
		got, err := m.evalScalar(to, from, x, 0)
		if err != nil {
			return err
		}
		want := 0.5 * x * (1 + math.Erf(x/math.Sqrt2))
		if math.Abs(got-want) > 1e-5*(1+math.Abs(want)) {
			return modelErr("the activation between %q and %q is not the exact GELU (%.6g at %g, want %.6g)", from, to, got, x, want)
		}
	}
	return nil
}

// evalScalar evaluates value name as an elementwise function of the value
// from at x, through elementwise ops with scalar constants.
func (m *mapper) evalScalar(name, from string, x float64, depth int) (float64, error) {
	if name == from {
		return x, nil
	}
	if depth > 16 || m.step() {
		return 0, modelErr("the activation feeding %q is too deep", name)
	}
	if t := m.g.constant(name); t != nil {
		if numel(t.dims) != 1 {
			return 0, modelErr("the activation uses non-scalar constant %q", name)
		}
		if t.dataType != dtFloat {
			return 0, modelErr("the activation uses %s constant %q", dtypeName(t.dataType), name)
		}
		v, err := m.g.floatData(t)
		if err != nil {
			return 0, err
		}
		return float64(v[0]), nil
	}
	n := m.g.producer[name]
	if n == nil {
		return 0, modelErr("the activation reads %q, which is neither fc1's output nor a constant", name)
	}
	args := make([]float64, len(n.inputs))
	for i, in := range n.inputs {
		v, err := m.evalScalar(in, from, x, depth+1)
		if err != nil {
			return 0, err
		}
		args[i] = v
	}
	arity := map[string]int{"Add": 2, "Sub": 2, "Mul": 2, "Div": 2, "Pow": 2, "Erf": 1, "Sqrt": 1, "Gelu": 1, "Identity": 1}
	if k, ok := arity[n.opType]; !ok || k != len(args) {
		return 0, modelErr("the activation uses %s %q", n.opType, n.name)
	}
	switch n.opType {
	case "Add":
		return args[0] + args[1], nil
	case "Sub":
		return args[0] - args[1], nil
	case "Mul":
		return args[0] * args[1], nil
	case "Div":
		return args[0] / args[1], nil
	case "Pow":
		return math.Pow(args[0], args[1]), nil
	case "Erf":
		return math.Erf(args[0]), nil
	case "Sqrt":
		return math.Sqrt(args[0]), nil
	case "Gelu":
		return 0.5 * args[0] * (1 + math.Erf(args[0]/math.Sqrt2)), nil
	}
	return args[0], nil // Identity
}

// checkAttentionScale checks that every Softmax sees q k^T scaled by
// 1/sqrt(head_dim): the product of the scalar constants that multiply (or
// divide) the values between the projections and the Softmax.
func (m *mapper) checkAttentionScale() error {
	hd := float64(m.c.Dim / max(m.c.Heads, 1))
	want := 1 / math.Sqrt(hd)
	for _, n := range m.g.nodes {
		if n.opType != "Softmax" {
			continue
		}
		s, err := m.scaleOf(n.inputs[0], 0)
		if err != nil {
			return err
		}
		if math.Abs(s-want) > 1e-5*want {
			return modelErr("Softmax %q scores are scaled by %.6g, want 1/sqrt(%g) = %.6g", n.name, s, hd, want)
		}
	}
	return nil
}

// scaleOf is the product of the scalar factors applied to name since the
// projections (the Add of a linear bias), walking data inputs only.
func (m *mapper) scaleOf(name string, depth int) (float64, error) {
	n := m.g.producer[name]
	if n == nil || depth > 32 || m.step() {
		return 0, modelErr("attention scores: cannot trace %q back to the projections", name)
	}
	switch n.opType {
	case "Add":
		return 1, nil // a projection's bias
	case "MatMul":
		a, err := m.scaleOf(n.inputs[0], depth+1)
		if err != nil {
			return 0, err
		}
		b, err := m.scaleOf(n.inputs[1], depth+1)
		return a * b, err
	case "Mul", "Div":
		for i, in := range n.inputs {
			t := m.g.constant(in)
			if t == nil {
				continue
			}
			if numel(t.dims) != 1 || t.dataType != dtFloat {
				return 0, modelErr("attention scores: %s %q by non-scalar %q", n.opType, n.name, in)
			}
			v, err := m.g.floatData(t)
			if err != nil {
				return 0, err
			}
			s, err := m.scaleOf(n.inputs[1-i], depth+1)
			if n.opType == "Mul" {
				return s * float64(v[0]), err
			}
			if i == 0 {
				return 0, modelErr("attention scores: %s %q divides a constant", n.opType, n.name)
			}
			return s / float64(v[0]), err
		}
		return 0, modelErr("attention scores: %s %q of two computed values", n.opType, n.name)
	case "Transpose", "Reshape", "Gather", "Slice", "Squeeze", "Unsqueeze", "Identity", "Cast":
		return m.scaleOf(n.inputs[0], depth+1)
	}
	return 0, modelErr("attention scores pass through %s %q", n.opType, n.name)
}

// resample reads the position-grid Resize node(s): one 2-D Resize of the
// grid, or mkvit's two Resizes of an identity basis (separable), or none.
func (m *mapper) resample() (Resample, bool, error) {
	var resizes []*node
	for _, n := range m.g.nodes {
		if n.opType == "Resize" {
			resizes = append(resizes, n)
		}
	}
	g := m.c.PosGrid
	switch len(resizes) {
	case 0:
		return Resample{CubicA: -0.75, FixedGrid: [2]int{g, g}}, false, nil
	case 1, 2:
	default:
		return Resample{}, false, modelErr("%d Resize nodes, want at most 2", len(resizes))
	}
	var r Resample
	for i, n := range resizes {
		ri, err := resizeAttrs(n)
		if err != nil {
			return Resample{}, false, err
		}
		if i > 0 && ri != r {
			return Resample{}, false, modelErr("Resize %q attributes differ from %q's", n.name, resizes[0].name)
		}
		r = ri
		if len(n.inputs) < 4 || n.inputs[3] == "" {
			return Resample{}, false, modelErr("Resize %q has no sizes input", n.name)
		}
		if len(n.inputs) > 2 && n.inputs[2] != "" {
			return Resample{}, false, modelErr("Resize %q has a scales input; only sizes are supported", n.name)
		}
	}
	if len(resizes) == 2 {
		// mkvit's separable form: both resize the same G x G identity.
		for _, n := range resizes {
			t := m.g.constant(n.inputs[0])
			if t == nil || !slices.Equal(t.dims, []int64{1, int64(g), int64(g), 1}) {
				return Resample{}, false, modelErr("two Resize nodes, but %q does not resample a [1,%d,%d,1] basis", n.name, g, g)
			}
			v, err := m.g.floatData(t)
			if err != nil {
				return Resample{}, false, err
			}
			for i := range g {
				for j := range g {
					if want := float32(boolTo01(i == j)); v[i*g+j] != want {
						return Resample{}, false, modelErr("two Resize nodes, but %q is not an identity", t.name)
					}
				}
			}
			if m.g.constant(n.inputs[3]) != nil {
				return Resample{}, false, modelErr("separable Resize %q with constant sizes is not supported", n.name)
			}
		}
		return r, true, nil
	}
	n := resizes[0]
	if !m.fromPos(n.inputs[0], 0) {
		return Resample{}, false, modelErr("Resize %q does not resample the position embeddings", n.name)
	}
	d := int64(m.c.Dim)
	if t := m.g.constant(n.inputs[3]); t != nil {
		sizes, err := m.g.intData(t)
		if err != nil {
			return Resample{}, false, err
		}
		if len(sizes) != 4 || sizes[0] != 1 || sizes[1] != d || sizes[2] <= 0 || sizes[3] <= 0 || sizes[2] > 1<<20 || sizes[3] > 1<<20 {
			return Resample{}, false, modelErr("Resize %q sizes %v, want [1,%d,gh,gw]", n.name, sizes, d)
		}
		r.FixedGrid = [2]int{int(sizes[2]), int(sizes[3])}
	} else if lead := m.leadingConst(n.inputs[3]); len(lead) < 2 || lead[0] != 1 || lead[1] != d {
		return Resample{}, false, modelErr("Resize %q sizes do not start with [1,%d]", n.name, d)
	}
	return r, false, nil
}

func boolTo01(b bool) int {
	if b {
		return 1
	}
	return 0
}

// fromPos reports whether value name is the position embeddings reshaped:
// reached through Slice, Reshape, Transpose only.
func (m *mapper) fromPos(name string, depth int) bool {
	if name == "embeddings.position_embeddings" {
		return true
	}
	n := m.g.producer[name]
	if n == nil || depth > 8 || len(n.inputs) == 0 {
		return false
	}
	switch n.opType {
	case "Slice", "Reshape", "Transpose", "Identity":
		return m.fromPos(n.inputs[0], depth+1)
	}
	return false
}

func resizeAttrs(n *node) (Resample, error) {
	str := func(k, def string) string {
		if a := n.attrs[k]; a != nil {
			return a.s
		}
		return def
	}
	r := Resample{CubicA: -0.75}
	if mode := str("mode", "nearest"); mode != "cubic" {
		return r, modelErr("Resize %q mode %q, want cubic", n.name, mode)
	}
	switch ct := str("coordinate_transformation_mode", "half_pixel"); ct {
	case "half_pixel":
	case "pytorch_half_pixel":
		r.pytorchHalfPixel = true
	default:
		return r, modelErr("Resize %q coordinate_transformation_mode %q, want half_pixel or pytorch_half_pixel", n.name, ct)
	}
	if k := str("keep_aspect_ratio_policy", "stretch"); k != "stretch" {
		return r, modelErr("Resize %q keep_aspect_ratio_policy %q", n.name, k)
	}
	if a := n.attrs["axes"]; a != nil {
		return r, modelErr("Resize %q has an axes attribute", n.name)
	}
	if a := n.attrs["cubic_coeff_a"]; a != nil {
		r.CubicA = float64(a.f)
	}
	if a := n.attrs["antialias"]; a != nil {
		r.Antialias = a.i != 0
	}
	if a := n.attrs["exclude_outside"]; a != nil {
		r.ExcludeOutside = a.i != 0
	}
	return r, nil
}
