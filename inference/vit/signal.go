package vit

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"anomalynode/inference/onnxgen"
)

// SignalPreset is the mkvit preset name of the signal backbone.
const SignalPreset = "signal"

// SignalConfig describes the signal backbone: a fixed, hand-designed feature
// extractor with the embedder IO contract of a DINOv2 export. It is NOT DINOv2
// and NOT for clinical use; it exists so that tests and the demo run a
// backbone whose patch descriptors tell synthetic lesions from normal anatomy
// (a random-weight ViT's do not).
//
// Per pixel of the model input it computes the grey level (the ImageNet
// normalisation undone), Gaussian blurs at Sigmas, differences of Gaussians
// between neighbouring scales, the gradient magnitude and the local standard
// deviation; averages them over each patch (stride PatchSize); adds
// patch-grid context (the patch's intensity against Gaussian neighbourhoods
// of ContextSigmas patches) and the spread of the grey level inside the
// patch; standardises every feature with the fixed Mean and Std; and encodes
// each standardised value z by Bins Gaussian bumps (centres evenly spread over
// [-BinRange, BinRange]). The bumps put a feature's value into the direction
// of the token, which is what cosine similarity (the scorer) sees; a plain
// vector of standardised features would lose its length.
type SignalConfig struct {
	// PatchSize is the side of a patch in pixels (14, as DINOv2).
	PatchSize int
	// Sigmas are the pixel-level Gaussian scales in input pixels, increasing;
	// the first is the smoothing of the intensity and gradient channels.
	Sigmas []float64
	// ContextSigmas are the patch-grid Gaussian scales in patches, increasing.
	ContextSigmas []float64
	// Mean and Std standardise the features (SignalFeatures of them).
	Mean, Std []float32
	// Bins is the number of Gaussian bumps per feature.
	Bins int
	// BinRange is the largest |centre| of a bump, in standard deviations.
	BinRange float64
	// Symmetry adds two features that compare each patch with its mirror
	// image across the head's midline (estimated per image from the head
	// mask's moments, see mirror): the asymmetry and the asymmetric local
	// contrast (see SignalModel). SymmetryShift is how far, in half patches,
	// the mirror may be shifted to find its match (head rotation and shift).
	Symmetry      bool
	SymmetryShift int
	// Raw outputs the standardised features without the bumps (D = the
	// number of features): with Mean 0 and Std 1, the raw features, which is
	// how Mean and Std are measured.
	Raw bool
}

// SignalFeatures is the number of features per patch for c, before encoding.
func (c SignalConfig) SignalFeatures() int {
	// intensity, DoGs, gradient, local std, in-patch std, context DoGs, context level
	n := 1 + (len(c.Sigmas) - 1) + 1 + 1 + 1 + len(c.ContextSigmas) + 1
	if c.Symmetry {
		n += 2
	}
	return n
}

// Dim is the token width D.
func (c SignalConfig) Dim() int {
	if c.Raw {
		return c.SignalFeatures()
	}
	return c.SignalFeatures() * c.Bins
}

// FeatureNames names the features in token order (before encoding).
func (c SignalConfig) FeatureNames() []string {
	names := []string{fmt.Sprintf("intensity(s%g)", c.Sigmas[0])}
	for i := 1; i < len(c.Sigmas); i++ {
		names = append(names, fmt.Sprintf("dog(s%g-s%g)", c.Sigmas[i-1], c.Sigmas[i]))
	}
	names = append(names, "gradient", "local-std", "patch-std")
	prev := "patch"
	for _, s := range c.ContextSigmas {
		names = append(names, fmt.Sprintf("context(%s-c%g)", prev, s))
		prev = "c" + strconv.FormatFloat(s, 'g', -1, 64)
	}
	names = append(names, "context-level("+prev+")")
	if c.Symmetry {
		names = append(names, "asymmetry", "asymmetric-contrast")
	}
	return names
}

// DefaultSignal is the signal preset. Mean and Std were measured on healthy
// Colin 27 synth series (seeds 101 and 102, 6 slices each, by
// TestSignalStandardised) under the robust VOI, the default for MR
// (docs/mkvit.md says how to re-measure them).
func DefaultSignal() SignalConfig {
	return SignalConfig{
		PatchSize:     14,
		Sigmas:        []float64{1.5, 3, 6, 12},
		ContextSigmas: []float64{1, 2},
		Symmetry:      true,
		SymmetryShift: 1,
		Mean:          []float32{0.153, 0, 0, 0.000128, 0.00916, 0.0338, 0.0413, 0.000158, 0.00103, 0.151, 0.00045, 0.00045},
		Std:           []float32{0.149, 0.00615, 0.0166, 0.0253, 0.0096, 0.0348, 0.0479, 0.0507, 0.0223, 0.119, 0.009, 0.009},
		Bins:          10,
		BinRange:      3,
	}
}

// Validate reports the first thing that makes c unbuildable.
func (c SignalConfig) Validate() error {
	if c.PatchSize <= 0 || len(c.Sigmas) < 2 || c.Bins < 1 || !(c.BinRange > 0) {
		return fmt.Errorf("%w: signal: patch size, >= 2 sigmas, bins and bin range must be positive: %+v", ErrConfig, c)
	}
	for _, ss := range [][]float64{c.Sigmas, c.ContextSigmas} {
		for i, s := range ss {
			if !(s > 0) || (i > 0 && s <= ss[i-1]) {
				return fmt.Errorf("%w: signal: scales %v must be positive and increasing", ErrConfig, ss)
			}
		}
	}
	f := c.SignalFeatures()
	if len(c.Mean) != f || len(c.Std) != f {
		return fmt.Errorf("%w: signal: %d means and %d stds for %d features", ErrConfig, len(c.Mean), len(c.Std), f)
	}
	for _, s := range c.Std {
		if !(s > 0) {
			return fmt.Errorf("%w: signal: std %v must be positive", ErrConfig, s)
		}
	}
	return nil
}

// gaussian returns a normalised 1-D Gaussian kernel of radius ceil(3 sigma).
func gaussian(sigma float64) []float32 {
	r := int(math.Ceil(3 * sigma))
	k := make([]float64, 2*r+1)
	var sum float64
	for i := range k {
		x := float64(i - r)
		k[i] = math.Exp(-x * x / (2 * sigma * sigma))
		sum += k[i]
	}
	out := make([]float32, len(k))
	for i, v := range k {
		out[i] = float32(v / sum)
	}
	return out
}

// SignalModel builds the ONNX graph of c. The output is
// [B, 1 + (H/P)(W/P), D]: a CLS token (the mean of the patch tokens), no
// registers, then the patch tokens row-major, as a DINOv2 export orders them.
func SignalModel(c SignalConfig) (*onnxgen.Model, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	g := onnxgen.NewGraph("signal")
	n := 0
	name := func(s string) string { n++; return fmt.Sprintf("%s_%d", s, n) }
	i64 := func(v ...int64) string { return g.Int64(name("c"), []int64{int64(len(v))}, v) }
	f32 := func(dims []int64, v []float32) string { return g.Float32(name("w"), dims, v) }
	op := func(o string, in ...string) string { return g.Op(o, in) }
	pad := func(x string, r int64) string {
		return g.Op("Pad", []string{x, i64(0, 0, r, r, 0, 0, r, r)}, onnxgen.AttrString("mode", "edge"))
	}
	// blur is a separable Gaussian on a [B,1,h,w] map, edges replicated.
	blur := func(x string, sigma float64) string {
		k := gaussian(sigma)
		r, kl := int64(len(k)/2), int64(len(k))
		y := g.Op("Conv", []string{pad(x, r), f32([]int64{1, 1, 1, kl}, k)})
		return g.Op("Conv", []string{y, f32([]int64{1, 1, kl, 1}, k)})
	}
	x := g.Input(InputName, onnxgen.Float32,
		onnxgen.Sym("batch_size"), onnxgen.Fixed(3), onnxgen.Sym("height"), onnxgen.Sym("width"))

	// Grey level in [0,1]: the three channels are one grey image normalised
	// with ImageNet's per-channel constants; undo that and average them.
	mean := (0.485 + 0.456 + 0.406) / 3
	grey := g.Op("Conv", []string{x, f32([]int64{1, 3, 1, 1}, []float32{0.229 / 3, 0.224 / 3, 0.225 / 3}), f32([]int64{1}, []float32{float32(mean)})})

	p := int64(c.PatchSize)
	pool := func(x string) string {
		return g.Op("AveragePool", []string{x}, onnxgen.AttrInts("kernel_shape", p, p), onnxgen.AttrInts("strides", p, p))
	}
	blurs := make([]string, len(c.Sigmas))
	for i, s := range c.Sigmas {
		blurs[i] = blur(grey, s)
	}
	var feats []string
	feats = append(feats, pool(blurs[0]))
	for i := 1; i < len(blurs); i++ {
		feats = append(feats, pool(op("Sub", blurs[i-1], blurs[i])))
	}
	// Gradient magnitude of the smoothed grey level (central differences).
	grad := g.Op("Conv", []string{pad(blurs[0], 1), f32([]int64{2, 1, 3, 3}, []float32{
		0, 0, 0, -0.5, 0, 0.5, 0, 0, 0,
		0, -0.5, 0, 0, 0, 0, 0, 0.5, 0,
	})})
	eps := f32(nil, []float32{1e-8})
	zero := f32(nil, []float32{0})
	sq := func(x string) string { return op("Mul", x, x) }
	sqrtPos := func(x string) string { return op("Sqrt", op("Add", op("Max", x, zero), eps)) }
	feats = append(feats, pool(sqrtPos(g.Op("ReduceSum", []string{sq(grad), i64(1)}, onnxgen.AttrInt("keepdims", 1)))))
	// Local standard deviation at the second scale.
	s1 := c.Sigmas[1]
	feats = append(feats, pool(sqrtPos(op("Sub", blur(sq(grey), s1), sq(blurs[1])))))
	// Spread of the grey level inside the patch.
	feats = append(feats, sqrtPos(op("Sub", pool(sq(grey)), sq(pool(grey)))))
	// Patch-grid context: the patch against ever wider neighbourhoods.
	prev := feats[0]
	for _, s := range c.ContextSigmas {
		ctx := blur(feats[0], s)
		feats = append(feats, op("Sub", prev, ctx))
		prev = ctx
	}
	feats = append(feats, prev)
	if c.Symmetry {
		// Each half-patch cell of the sigma-1 blur against the mirror
		// image shifted by up to SymmetryShift cells either way: d = A - M_s
		// for every shift s; the asymmetry is the smallest d when all are
		// positive, the largest when all are negative, else 0 (a structure
		// that has a match nearby on the other side is symmetric).
		half := p / 2
		cell := func(x string) string {
			return g.Op("AveragePool", []string{x}, onnxgen.AttrInts("kernel_shape", half, half), onnxgen.AttrInts("strides", half, half))
		}
		a := cell(blurs[1])
		mirror := c.mirror(g, a, i64, f32, op)
		r := int64(c.SymmetryShift)
		k := 2*r + 1
		deltas := make([]float32, k*k*k*k)
		for i := range k * k {
			deltas[i*k*k+i] = 1
		}
		shifted := g.Op("Conv", []string{pad(mirror, r), f32([]int64{k * k, 1, k, k}, deltas)}) // [B,k*k,h,w]
		d := op("Sub", a, shifted)
		lo := g.Op("ReduceMin", []string{d}, onnxgen.AttrInts("axes", 1), onnxgen.AttrInt("keepdims", 1))
		hi := g.Op("ReduceMax", []string{d}, onnxgen.AttrInts("axes", 1), onnxgen.AttrInt("keepdims", 1))
		asym := g.Op("AveragePool", []string{op("Add", op("Max", lo, zero), op("Min", hi, zero))},
			onnxgen.AttrInts("kernel_shape", 2, 2), onnxgen.AttrInts("strides", 2, 2))
		// The asymmetric contrast keeps the asymmetry where the patch also
		// stands out from its own neighbourhood the same way (same sign, the
		// smaller magnitude): a lesion does, its healthy mirror image (which
		// is just as asymmetric, with the opposite sign) does not.
		local := feats[len(c.Sigmas)+3]
		both := op("Add", op("Max", op("Min", asym, local), zero), op("Min", op("Max", asym, local), zero))
		feats = append(feats, asym, both)
	}

	nf, bins := int64(len(feats)), int64(c.Bins)
	z := g.Op("Concat", feats, onnxgen.AttrInt("axis", 1)) // [B,F,h,w]
	z = op("Div", op("Sub", z, f32([]int64{1, nf, 1, 1}, c.Mean)), f32([]int64{1, nf, 1, 1}, c.Std))
	if c.Raw {
		bins = 1
	}
	// Gaussian bumps: [B,F,1,N] - centres [1,1,M,1] -> [B,F,M,N].
	z = op("Reshape", z, i64(0, nf, 1, -1))
	e := z
	if !c.Raw {
		e = c.bumps(g, z, name)
	}
	tokens := g.Op("Transpose", []string{op("Reshape", e, i64(0, nf*bins, -1))}, onnxgen.AttrInts("perm", 0, 2, 1)) // [B,N,D]
	cls := g.Op("ReduceMean", []string{tokens}, onnxgen.AttrInts("axes", 1), onnxgen.AttrInt("keepdims", 1))
	g.Node("Concat", []string{cls, tokens}, []string{OutputName}, onnxgen.AttrInt("axis", 1))
	g.Output(OutputName, onnxgen.Float32, onnxgen.Sym("batch_size"), onnxgen.Sym("sequence_length"), onnxgen.Fixed(nf*bins))

	fmtF := func(v []float32) string {
		s := make([]string, len(v))
		for i, x := range v {
			s[i] = strconv.FormatFloat(float64(x), 'g', -1, 32)
		}
		return strings.Join(s, ",")
	}
	fmt64 := func(v []float64) string {
		s := make([]string, len(v))
		for i, x := range v {
			s[i] = strconv.FormatFloat(x, 'g', -1, 64)
		}
		return strings.Join(s, ",")
	}
	return &onnxgen.Model{
		Graph:    g,
		Producer: "anomalynode mkvit",
		Doc: "anomalynode signal backbone: fixed hand-made image features (Gaussian, DoG, gradient, local spread, context) " +
			"with a DINOv2 export's IO contract; NOT DINOv2 and NOT for clinical use: for tests and demos on synthetic data",
		Metadata: map[string]string{
			"anomalynode.backbone":       SignalPreset,
			"anomalynode.not_dinov2":     "true",
			"anomalynode.dim":            strconv.Itoa(c.Dim()),
			"anomalynode.patch_size":     strconv.Itoa(c.PatchSize),
			"anomalynode.registers":      "0",
			"anomalynode.features":       strings.Join(c.FeatureNames(), ","),
			"anomalynode.sigmas":         fmt64(c.Sigmas),
			"anomalynode.context_sigmas": fmt64(c.ContextSigmas),
			"anomalynode.feature_mean":   fmtF(c.Mean),
			"anomalynode.feature_std":    fmtF(c.Std),
			"anomalynode.bins":           strconv.Itoa(c.Bins),
			"anomalynode.bin_range":      strconv.FormatFloat(c.BinRange, 'g', -1, 64),
		},
	}, nil
}

// mirror reflects the [B,1,h,w] map a across the head's midline, estimated
// per image from its intensity moments: the centroid and the major axis
// (heads are longer front to back than side to side; a small pull towards
// the vertical keeps round slices, near the top of the head, from turning
// on noise). Reflecting p across the line through c at angle phi is
// c + R (p - c), R = [[cos 2phi, sin 2phi], [sin 2phi, -cos 2phi]], and
// (cos 2phi, sin 2phi) is (mu20 - mu02, 2 mu11) normalised, so no angle is
// computed. The reflected map is read with GridSample (bilinear, border).
func (c SignalConfig) mirror(g *onnxgen.Graph, a string, i64 func(...int64) string, f32 func([]int64, []float32) string, op func(string, ...string) string) string {
	scalar := func(v float32) string { return f32(nil, []float32{v}) }
	sum := func(x string) string {
		return g.Op("ReduceSum", []string{x, i64(2, 3)}, onnxgen.AttrInt("keepdims", 1))
	}
	// The head mask (soft, from just above the background), not the
	// intensities: a bias field would move an intensity centroid.
	m := op("Min", op("Max", op("Mul", op("Sub", a, scalar(0.03)), scalar(50)), scalar(0)), scalar(1))
	ones := op("Add", op("Mul", a, scalar(0)), scalar(1))
	x := op("Sub", op("CumSum", ones, i64(3)), scalar(1)) // column index, [B,1,h,w]
	y := op("Sub", op("CumSum", ones, i64(2)), scalar(1)) // row index
	total := op("Add", sum(m), scalar(1e-6))
	mean := func(v string) string { return op("Div", sum(op("Mul", m, v)), total) }
	cx, cy := mean(x), mean(y)
	dx, dy := op("Sub", x, cx), op("Sub", y, cy)
	m20, m02, m11 := mean(op("Mul", dx, dx)), mean(op("Mul", dy, dy)), mean(op("Mul", dx, dy))
	u := op("Sub", op("Sub", m20, m02), op("Mul", op("Add", m20, m02), scalar(0.03)))
	v := op("Mul", m11, scalar(2))
	n := op("Sqrt", op("Add", op("Add", op("Mul", u, u), op("Mul", v, v)), scalar(1e-12)))
	c2, s2 := op("Div", u, n), op("Div", v, n)
	xs := op("Add", cx, op("Add", op("Mul", c2, dx), op("Mul", s2, dy)))
	ys := op("Add", cy, op("Sub", op("Mul", s2, dx), op("Mul", c2, dy)))
	// GridSample with align_corners: -1 and 1 are the first and last centres.
	norm := func(p, idx string) string {
		last := g.Op("ReduceMax", []string{idx}, onnxgen.AttrInts("axes", 2, 3), onnxgen.AttrInt("keepdims", 1))
		return op("Sub", op("Div", op("Mul", p, scalar(2)), op("Max", last, scalar(1))), scalar(1))
	}
	grid := g.Op("Transpose", []string{g.Op("Concat", []string{norm(xs, x), norm(ys, y)}, onnxgen.AttrInt("axis", 1))},
		onnxgen.AttrInts("perm", 0, 2, 3, 1)) // [B,h,w,2]
	return g.Op("GridSample", []string{a, grid}, onnxgen.AttrString("mode", "bilinear"),
		onnxgen.AttrString("padding_mode", "border"), onnxgen.AttrInt("align_corners", 1))
}

// GenerateSignal returns the encoded ONNX model of c.
func GenerateSignal(c SignalConfig) ([]byte, error) {
	m, err := SignalModel(c)
	if err != nil {
		return nil, err
	}
	b, err := m.Marshal()
	if err != nil {
		return nil, fmt.Errorf("vit: %w", err)
	}
	return b, nil
}

// bumps encodes z [B,F,1,N] as exp(-(z - centre)^2 / (2 w^2)) for Bins centres
// evenly spread over [-BinRange, BinRange] (w their spacing): [B,F,Bins,N].
func (c SignalConfig) bumps(g *onnxgen.Graph, z string, name func(string) string) string {
	bins := int64(c.Bins)
	centres := make([]float32, bins)
	width := 2 * c.BinRange / float64(max(bins-1, 1))
	for i := range centres {
		if bins > 1 {
			centres[i] = float32(-c.BinRange + float64(i)*width)
		}
	}
	d := g.Op("Sub", []string{z, g.Float32(name("centres"), []int64{1, 1, bins, 1}, centres)})
	k := g.Float32(name("gain"), nil, []float32{float32(-1 / (2 * width * width))})
	return g.Op("Exp", []string{g.Op("Mul", []string{g.Op("Mul", []string{d, d}), k})})
}
