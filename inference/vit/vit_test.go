package vit

import (
	"anomalynode/internal/peers"
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"syscall"
	"testing"
	"time"

	ort "github.com/yalue/onnxruntime_go"
)

// TestMain initialises ONNX Runtime once for the test binary: the library path
// comes from ONNXRUNTIME_LIB, or the repository's .deps/ when unset.
func TestMain(m *testing.M) {
	lib := peers.ORTLibrary()
	ort.SetSharedLibraryPath(lib)
	if err := ort.InitializeEnvironment(); err != nil {
		// Not a skip: these tests exist to run the models in the real runtime.
		println("vit test: ONNX Runtime at", lib, "(set ONNXRUNTIME_LIB or run make deps):", err.Error())
		os.Exit(1)
	}
	code := m.Run()
	_ = ort.DestroyEnvironment()
	os.Exit(code)
}

func tinyConfig(t testing.TB, registers int) Config {
	t.Helper()
	c, err := Preset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	c.Registers = registers
	c.Seed = 7
	return c
}

// pixels returns a deterministic, image-like input: smooth gradients per
// channel plus a checker, in the range of ImageNet-normalised values.
func pixels(b, h, w int) []float32 {
	x := make([]float32, b*3*h*w)
	for n := range b {
		for ch := range 3 {
			for i := range h {
				for j := range w {
					v := math.Sin(float64(i)*0.05+float64(ch)) + math.Cos(float64(j)*0.07*float64(n+1))
					if (i/7+j/7)%2 == 0 {
						v += 0.5
					}
					x[((n*3+ch)*h+i)*w+j] = float32(v)
				}
			}
		}
	}
	return x
}

// session runs an encoded model with the given intra-op thread count.
type session struct {
	s *ort.DynamicAdvancedSession
}

func newSession(t testing.TB, model []byte, threads int) *session {
	t.Helper()
	opts, err := ort.NewSessionOptions()
	if err != nil {
		t.Fatal(err)
	}
	defer opts.Destroy()
	if err := opts.SetIntraOpNumThreads(threads); err != nil {
		t.Fatal(err)
	}
	if err := opts.SetInterOpNumThreads(1); err != nil {
		t.Fatal(err)
	}
	s, err := ort.NewDynamicAdvancedSessionWithONNXData(model, []string{InputName}, []string{OutputName}, opts)
	if err != nil {
		t.Fatalf("ONNX Runtime rejects the model: %v", err)
	}
	t.Cleanup(func() { s.Destroy() })
	return &session{s: s}
}

// run feeds x [b,3,h,w] and returns the output's shape and data (ORT allocates
// the output, so the shape is the model's, not one we asked for).
func (s *session) run(t testing.TB, x []float32, b, h, w int) (ort.Shape, []float32) {
	t.Helper()
	in, err := ort.NewTensor(ort.NewShape(int64(b), 3, int64(h), int64(w)), x)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Destroy()
	outs := []ort.Value{nil}
	if err := s.s.Run([]ort.Value{in}, outs); err != nil {
		t.Fatalf("run %dx3x%dx%d: %v", b, h, w, err)
	}
	defer outs[0].Destroy()
	out, ok := outs[0].(*ort.Tensor[float32])
	if !ok {
		t.Fatalf("output is %T, want float32 tensor", outs[0])
	}
	return out.GetShape().Clone(), append([]float32(nil), out.GetData()...)
}

func TestIOContract(t *testing.T) {
	model, err := Generate(tinyConfig(t, 0))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(model); n < 100_000 || n > 1_000_000 {
		t.Errorf("tiny model is %d bytes, want a few hundred KB", n)
	}
	ins, outs, err := ort.GetInputOutputInfoWithONNXData(model)
	if err != nil {
		t.Fatal(err)
	}
	if len(ins) != 1 || ins[0].Name != InputName || !ins[0].Dimensions.Equals(ort.NewShape(-1, 3, -1, -1)) ||
		ins[0].DataType != ort.TensorElementDataTypeFloat {
		t.Errorf("inputs = %v, want %s float [-1 3 -1 -1]", ins, InputName)
	}
	if len(outs) != 1 || outs[0].Name != OutputName || !outs[0].Dimensions.Equals(ort.NewShape(-1, -1, 48)) ||
		outs[0].DataType != ort.TensorElementDataTypeFloat {
		t.Errorf("outputs = %v, want %s float [-1 -1 48]", outs, OutputName)
	}
}

func TestOutputShapes(t *testing.T) {
	for _, r := range []int{0, 4} {
		c := tinyConfig(t, r)
		c.SeparablePosResize = r == 4 // both position resamplers, without doubling the cases
		model, err := Generate(c)
		if err != nil {
			t.Fatal(err)
		}
		s := newSession(t, model, 1)
		for _, b := range []int{1, 2} {
			for _, hw := range [][2]int{{224, 224}, {154, 252}, {448, 322}} {
				t.Run(fmt.Sprintf("R%d/B%d/%dx%d", r, b, hw[0], hw[1]), func(t *testing.T) {
					shape, data := s.run(t, pixels(b, hw[0], hw[1]), b, hw[0], hw[1])
					want := ort.NewShape(int64(b), int64(1+r+(hw[0]/14)*(hw[1]/14)), 48)
					if !shape.Equals(want) {
						t.Fatalf("shape = %v, want %v", shape, want)
					}
					for i, v := range data {
						if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
							t.Fatalf("output[%d] = %v", i, v)
						}
					}
				})
			}
		}
	}
}

// TestVitS14Runs loads the full-size preset and runs it on a small input
// (cheap: a 4 x 3 patch grid), so a graph that only the large model breaks fails here too.
func TestVitS14Runs(t *testing.T) {
	c, err := Preset("vits14")
	if err != nil {
		t.Fatal(err)
	}
	c.Registers = 4
	model, err := Generate(c)
	if err != nil {
		t.Fatal(err)
	}
	s := newSession(t, model, 2)
	shape, data := s.run(t, pixels(1, 56, 42), 1, 56, 42)
	if want := ort.NewShape(1, 1+4+4*3, 384); !shape.Equals(want) {
		t.Fatalf("shape = %v, want %v", shape, want)
	}
	var sumSq float64
	for _, v := range data {
		sumSq += float64(v) * float64(v)
	}
	if rms := math.Sqrt(sumSq / float64(len(data))); math.IsNaN(rms) || rms < 0.5 || rms > 2 {
		t.Errorf("output rms %.3f, want about 1 (LayerNorm'd, unit gamma)", rms)
	}
}

// TestMatchesReference compares ORT's output with the float64 reference pass
// over the same weights: at the position grid's own size (no resample), and at
// a non-square size that resamples the grid down in one axis and up in the other.
func TestMatchesReference(t *testing.T) {
	for _, separable := range []bool{false, true} {
		t.Run(fmt.Sprintf("separable=%v", separable), func(t *testing.T) {
			testMatchesReference(t, separable)
		})
	}
}

func testMatchesReference(t *testing.T, separable bool) {
	model, c, w := mkvitModel(t, separable)
	s := newSession(t, model, 1)
	const b = 2
	for _, hw := range [][2]int{{224, 224}, {154, 252}} {
		t.Run(fmt.Sprintf("%dx%d", hw[0], hw[1]), func(t *testing.T) {
			x := pixels(b, hw[0], hw[1])
			shape, got := s.run(t, x, b, hw[0], hw[1])
			want := refForward(c, w, x, b, hw[0], hw[1])
			if int(shape[1]) != len(want[0]) {
				t.Fatalf("tokens = %d, reference %d", shape[1], len(want[0]))
			}
			var worst, sumSq float64
			var at [3]int
			for n := range b {
				for tk := range want[n] {
					for k := range c.Dim {
						ref := want[n][tk][k]
						sumSq += ref * ref
						d := math.Abs(float64(got[(n*len(want[n])+tk)*c.Dim+k]) - ref)
						if d > worst {
							worst, at = d, [3]int{n, tk, k}
						}
					}
				}
			}
			rms := math.Sqrt(sumSq / float64(len(got)))
			t.Logf("max |ORT - reference| = %.2g at %v (output rms %.2f)", worst, at, rms)
			if worst > 1e-4 {
				t.Errorf("max difference %.3g at [batch %d, token %d, dim %d] exceeds 1e-4", worst, at[0], at[1], at[2])
			}
			// The output is LayerNorm'd: a graph that zeroed everything would match nothing, but check anyway.
			if rms < 0.5 {
				t.Errorf("output rms %.3f: the model computes almost nothing", rms)
			}
		})
	}
}

// TestTokensDiffer guards the reference comparison against a degenerate model:
// the register and patch tokens must differ from each other and between images.
func TestTokensDiffer(t *testing.T) {
	model, err := Generate(tinyConfig(t, 4))
	if err != nil {
		t.Fatal(err)
	}
	s := newSession(t, model, 1)
	_, out := s.run(t, pixels(2, 224, 224), 2, 224, 224)
	tokens, d := 1+4+256, 48
	tok := func(n, i int) []float32 { return out[(n*tokens+i)*d : (n*tokens+i+1)*d] }
	if slicesEqual(tok(0, 1), tok(0, 2)) {
		t.Error("register tokens 0 and 1 are identical")
	}
	if slicesEqual(tok(0, 5), tok(0, 6)) {
		t.Error("patch tokens 0 and 1 are identical")
	}
	if slicesEqual(tok(0, 10), tok(1, 10)) {
		t.Error("the two images give the same patch token")
	}
}

// randomizeAffine replaces the generated constants (zero biases, unit
// LayerNorm gammas, equal LayerScales) with random values.
func randomizeAffine(w *Weights) {
	rng := rand.New(rand.NewPCG(1, 2))
	fill := func(v []float32, mean, std float64) {
		for i := range v {
			v[i] = float32(mean + std*rng.NormFloat64())
		}
	}
	fill(w.PatchB, 0, 0.2)
	fill(w.NormW, 1, 0.2)
	fill(w.NormB, 0, 0.2)
	for i := range w.Blocks {
		b := &w.Blocks[i]
		for _, v := range [][]float32{b.QKVB, b.ProjB, b.FC1B, b.FC2B, b.Norm1B, b.Norm2B} {
			fill(v, 0, 0.2)
		}
		for _, v := range [][]float32{b.Norm1W, b.Norm2W, b.LS1, b.LS2} {
			fill(v, 1, 0.2)
		}
	}
}

func slicesEqual(a, b []float32) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestDeterministic(t *testing.T) {
	c := tinyConfig(t, 4)
	a, err := Generate(c)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Generate(c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatal("same seed gave different bytes")
	}
	c.Seed++
	other, err := Generate(c)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a, other) {
		t.Fatal("a different seed gave the same bytes")
	}
}

// TestParams checks vits14 against facebook/dinov2-small, whose state dict has
// 22,056,576 parameters: ours lacks only its 384-element mask token, used in
// training. The graph's own float32 initializers must agree with Config.Params
// (plus its four scalar constants).
func TestParams(t *testing.T) {
	c, err := Preset("vits14")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Params(), int64(22_056_576-384); got != want {
		t.Errorf("vits14 Params = %d, want %d", got, want)
	}
	w, err := NewWeights(c)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Model(c, w)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Graph.Params(); got != c.Params()+4 {
		t.Errorf("graph holds %d float32 elements, Config.Params+4 = %d", got, c.Params()+4)
	}
	tiny := tinyConfig(t, 0)
	if p := tiny.Params(); p < 50_000 || p > 250_000 {
		t.Errorf("tiny Params = %d, want a few hundred KB of float32", p)
	}
}

func TestWeightsMustMatchConfig(t *testing.T) {
	c := tinyConfig(t, 0)
	w, err := NewWeights(c)
	if err != nil {
		t.Fatal(err)
	}
	deeper := c
	deeper.Depth++
	if _, err := Model(deeper, w); !errors.Is(err, ErrConfig) {
		t.Errorf("depth mismatch: err = %v, want ErrConfig", err)
	}
	wider := c
	wider.Registers = 2 // two register tokens declared, none in the weights
	m, err := Model(wider, w)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Marshal(); err == nil {
		t.Error("register tensor of the wrong size was encoded")
	}
}

func TestPresetAndValidate(t *testing.T) {
	if _, err := Preset("vitg14"); !errors.Is(err, ErrConfig) {
		t.Errorf("unknown preset: err = %v", err)
	}
	bad := []func(*Config){
		func(c *Config) { c.Heads = 5 },
		func(c *Config) { c.Registers = -1 },
		func(c *Config) { c.Dim = 0 },
		func(c *Config) { c.Eps = 0 },
	}
	for i, mod := range bad {
		c := tinyConfig(t, 0)
		mod(&c)
		if _, err := Generate(c); !errors.Is(err, ErrConfig) {
			t.Errorf("case %d: err = %v, want ErrConfig", i, err)
		}
	}
}

// BenchmarkForward times one vits14 forward pass (batch 1, 2 intra-op threads)
// at 448 x 448 (the method's resolution) and 224 x 224: ms/forward for the
// default model (one 2-D cubic Resize of the position grid, as real exports
// have), and interleaved with it, in the same loop, the separable-resample
// model, so their ratio is measured under the same machine load. cpu-ms is the
// process CPU time of the default model's runs, which shared machines disturb less.
func BenchmarkForward(b *testing.B) {
	sessions := map[bool]*session{}
	for _, separable := range []bool{false, true} {
		c, err := Preset("vits14")
		if err != nil {
			b.Fatal(err)
		}
		c.SeparablePosResize = separable
		model, err := Generate(c)
		if err != nil {
			b.Fatal(err)
		}
		sessions[separable] = newSession(b, model, 2)
	}
	for _, size := range []int{448, 224} {
		b.Run(fmt.Sprintf("vits14/%d", size), func(b *testing.B) {
			x := pixels(1, size, size)
			for _, s := range sessions {
				s.run(b, x, 1, size, size) // warm-up: ORT plans memory on the first run
			}
			var plain, separable, cpu time.Duration
			for b.Loop() {
				t0, c0 := time.Now(), cpuTime(b)
				sessions[false].run(b, x, 1, size, size)
				t1, c1 := time.Now(), cpuTime(b)
				sessions[true].run(b, x, 1, size, size)
				plain, cpu = plain+t1.Sub(t0), cpu+c1-c0
				separable += time.Since(t1)
			}
			n := float64(b.N)
			b.ReportMetric(float64(plain.Microseconds())/1e3/n, "ms/forward")
			b.ReportMetric(float64(cpu.Microseconds())/1e3/n, "cpu-ms/forward")
			b.ReportMetric(float64(separable.Microseconds())/1e3/n, "separable-ms/forward")
			b.ReportMetric(float64(separable)/float64(plain), "separable/2d")
			b.ReportMetric(0, "ns/op") // covers both models; the metrics above are per model
		})
	}
}

// cpuTime is the user+system CPU time of the whole process so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
