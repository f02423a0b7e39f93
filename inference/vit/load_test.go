package vit

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"anomalynode/inference/onnxgen"

	ort "github.com/yalue/onnxruntime_go"
)

// The Hugging Face exports in testdata were made with transformers 5.17 and
// torch 2.11 (torch.onnx dynamo, opset 20) from random-weight configs: D=64, 2
// layers, 4 heads, MLP 256, patch 14, position grid 37. hf-plain-tiny is a
// Dinov2Model with dynamic H, W; hf-reg-tiny a Dinov2WithRegistersModel (4
// registers) traced at 448x448, whose antialiased position Resize has constant
// sizes (a 32x32 patch grid only). Both keep their weights in .onnx.data.
const (
	hfPlain = "testdata/hf-plain-tiny.onnx"
	hfReg   = "testdata/hf-reg-tiny.onnx"
)

// fileSession runs a model file (external data beside it) returning only the
// named output.
func fileSession(t testing.TB, path, input, output string) *session {
	t.Helper()
	opts, err := ort.NewSessionOptions()
	if err != nil {
		t.Fatal(err)
	}
	defer opts.Destroy()
	if err := opts.SetIntraOpNumThreads(1); err != nil {
		t.Fatal(err)
	}
	s, err := ort.NewDynamicAdvancedSession(path, []string{input}, []string{output}, opts)
	if err != nil {
		t.Fatalf("ONNX Runtime rejects %s: %v", path, err)
	}
	t.Cleanup(func() { s.Destroy() })
	return &session{s: s}
}

// relL2 is ||got - want|| / ||want||.
func relL2(got, want []float32) float64 {
	var num, den float64
	for i := range want {
		e := float64(got[i]) - float64(want[i])
		num += e * e
		den += float64(want[i]) * float64(want[i])
	}
	return math.Sqrt(num / den)
}

// compareWithORT runs Forward and ONNX Runtime on the same input and checks
// the raw last_hidden_state agrees to a relative L2 error of 1e-5.
func compareWithORT(t *testing.T, l *Loaded, s *session, b, h, w int) {
	t.Helper()
	x := pixels(b, h, w)
	shape, want := s.run(t, x, b, h, w)
	got, err := Forward(l, x, b, h, w)
	if err != nil {
		t.Fatal(err)
	}
	tokens := 1 + l.Config.Registers + (h/l.Config.PatchSize)*(w/l.Config.PatchSize)
	if wantShape := ort.NewShape(int64(b), int64(tokens), int64(l.Config.Dim)); !shape.Equals(wantShape) {
		t.Fatalf("ORT shape %v, want %v", shape, wantShape)
	}
	if len(got) != len(want) {
		t.Fatalf("Forward returned %d values, ORT %d", len(got), len(want))
	}
	e := relL2(got, want)
	t.Logf("%dx3x%dx%d: relative L2 error of Forward against ONNX Runtime %.3g", b, h, w, e)
	if !(e < 1e-5) {
		t.Errorf("relative L2 error %.3g >= 1e-5", e)
	}
}

func sameWeights(t *testing.T, got, want *Weights) {
	t.Helper()
	eq := func(name string, a, b []float32) {
		if !slices.Equal(a, b) {
			t.Errorf("%s differs (%d vs %d elements)", name, len(a), len(b))
		}
	}
	eq("PatchW", got.PatchW, want.PatchW)
	eq("PatchB", got.PatchB, want.PatchB)
	eq("CLS", got.CLS, want.CLS)
	eq("Registers", got.Registers, want.Registers)
	eq("Pos", got.Pos, want.Pos)
	eq("NormW", got.NormW, want.NormW)
	eq("NormB", got.NormB, want.NormB)
	if len(got.Blocks) != len(want.Blocks) {
		t.Fatalf("%d blocks, want %d", len(got.Blocks), len(want.Blocks))
	}
	for i, g := range got.Blocks {
		w := want.Blocks[i]
		p := fmt.Sprintf("Blocks[%d].", i)
		eq(p+"Norm1W", g.Norm1W, w.Norm1W)
		eq(p+"Norm1B", g.Norm1B, w.Norm1B)
		eq(p+"QKVW", g.QKVW, w.QKVW)
		eq(p+"QKVB", g.QKVB, w.QKVB)
		eq(p+"ProjW", g.ProjW, w.ProjW)
		eq(p+"ProjB", g.ProjB, w.ProjB)
		eq(p+"LS1", g.LS1, w.LS1)
		eq(p+"Norm2W", g.Norm2W, w.Norm2W)
		eq(p+"Norm2B", g.Norm2B, w.Norm2B)
		eq(p+"FC1W", g.FC1W, w.FC1W)
		eq(p+"FC1B", g.FC1B, w.FC1B)
		eq(p+"FC2W", g.FC2W, w.FC2W)
		eq(p+"FC2B", g.FC2B, w.FC2B)
		eq(p+"LS2", g.LS2, w.LS2)
	}
}

// mkvitModel returns the encoded tiny mkvit model with 4 registers and random
// affine parameters, its config and weights. The weights are larger than the
// preset's, so attention is peaked rather than nearly uniform and every
// sub-layer moves the output; biases, LayerNorm and LayerScale parameters are
// random, so none of them is a no-op.
func mkvitModel(t testing.TB, separable bool) ([]byte, Config, *Weights) {
	t.Helper()
	c := tinyConfig(t, 4)
	c.SeparablePosResize = separable
	c.InitStd, c.LayerScale = 0.2, 1
	w, err := NewWeights(c)
	if err != nil {
		t.Fatal(err)
	}
	randomizeAffine(w)
	m, err := Model(c, w)
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b, c, w
}

func writeTemp(t testing.TB, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadMkvit(t *testing.T) {
	for _, separable := range []bool{false, true} {
		t.Run(fmt.Sprintf("separable=%v", separable), func(t *testing.T) {
			model, c, w := mkvitModel(t, separable)
			l, err := Load(writeTemp(t, "m.onnx", model))
			if err != nil {
				t.Fatal(err)
			}
			want := c
			want.InitStd, want.LayerScale, want.Seed = 0, 0, 0
			if l.Config != want {
				t.Errorf("Config = %+v, want %+v", l.Config, want)
			}
			if r := (Resample{CubicA: -0.75}); l.Resample != r {
				t.Errorf("Resample = %+v, want %+v", l.Resample, r)
			}
			if l.Input != InputName || l.Output != OutputName {
				t.Errorf("IO = %q -> %q", l.Input, l.Output)
			}
			sameWeights(t, l.Weights, w)
			s := newSession(t, model, 1)
			for _, hw := range [][2]int{{224, 224}, {154, 252}} {
				compareWithORT(t, l, s, 2, hw[0], hw[1])
			}
		})
	}
}

func TestLoadHuggingFace(t *testing.T) {
	cases := []struct {
		path   string
		regs   int
		rs     Resample
		inputs [][2]int
	}{
		{hfPlain, 0, Resample{CubicA: -0.75}, [][2]int{{448, 448}, {224, 308}}},
		{hfReg, 4, Resample{CubicA: -0.5, Antialias: true, ExcludeOutside: true, FixedGrid: [2]int{32, 32}}, [][2]int{{448, 448}}},
	}
	for _, tc := range cases {
		t.Run(filepath.Base(tc.path), func(t *testing.T) {
			l, err := Load(tc.path)
			if err != nil {
				t.Fatal(err)
			}
			want := Config{Dim: 64, Depth: 2, Heads: 4, MLPDim: 256, PatchSize: 14, PosGrid: 37, Registers: tc.regs, Eps: 1e-6}
			if l.Config != want {
				t.Errorf("Config = %+v, want %+v", l.Config, want)
			}
			if l.Resample != tc.rs {
				t.Errorf("Resample = %+v, want %+v", l.Resample, tc.rs)
			}
			if l.Input != "pixel_values" || l.Output != "last_hidden_state" {
				t.Errorf("IO = %q -> %q", l.Input, l.Output)
			}
			s := fileSession(t, tc.path, l.Input, l.Output)
			for _, hw := range tc.inputs {
				compareWithORT(t, l, s, 2, hw[0], hw[1])
			}
		})
	}
}

// TestMatrixMatchesORT builds a one-node Resize of an identity with each
// attribute combination and checks that ONNX Runtime's output is Matrix.
func TestMatrixMatchesORT(t *testing.T) {
	sizes := [][2]int{{37, 32}, {37, 16}, {37, 22}, {37, 64}, {5, 3}, {4, 2}, {16, 37}, {7, 7}}
	for _, r := range resampleVariants() {
		for _, io := range sizes {
			in, out := io[0], io[1]
			g := onnxgen.NewGraph("resize")
			x := g.Input("x", onnxgen.Float32, onnxgen.Fixed(1), onnxgen.Fixed(1), onnxgen.Fixed(int64(in)), onnxgen.Fixed(int64(in)))
			sz := g.Int64("sizes", []int64{4}, []int64{1, 1, int64(out), int64(in)})
			g.Node("Resize", []string{x, "", "", sz}, []string{"y"},
				onnxgen.AttrString("mode", "cubic"),
				onnxgen.AttrFloat("cubic_coeff_a", float32(r.CubicA)),
				onnxgen.AttrInt("antialias", int64(boolTo01(r.Antialias))),
				onnxgen.AttrInt("exclude_outside", int64(boolTo01(r.ExcludeOutside))),
				onnxgen.AttrString("coordinate_transformation_mode", "half_pixel"))
			g.Output("y", onnxgen.Float32, onnxgen.Fixed(1), onnxgen.Fixed(1), onnxgen.Fixed(int64(out)), onnxgen.Fixed(int64(in)))
			model, err := (&onnxgen.Model{Graph: g, Opset: 18, IRVersion: 8}).Marshal()
			if err != nil {
				t.Fatal(err)
			}
			opts, err := ort.NewSessionOptions()
			if err != nil {
				t.Fatal(err)
			}
			s, err := ort.NewDynamicAdvancedSessionWithONNXData(model, []string{"x"}, []string{"y"}, opts)
			opts.Destroy()
			if err != nil {
				t.Fatal(err)
			}
			eye := make([]float32, in*in)
			for i := range in {
				eye[i*in+i] = 1
			}
			xt, err := ort.NewTensor(ort.NewShape(1, 1, int64(in), int64(in)), eye)
			if err != nil {
				t.Fatal(err)
			}
			outs := []ort.Value{nil}
			if err := s.Run([]ort.Value{xt}, outs); err != nil {
				t.Fatal(err)
			}
			want := outs[0].(*ort.Tensor[float32]).GetData()
			got := r.Matrix(in, out)
			var worst float64
			for i := range want {
				worst = max(worst, math.Abs(float64(got[i])-float64(want[i])))
			}
			// ORT maps coordinates in float32 through a float32 scale (22/37
			// is not exact), which moves weights by up to about 2e-6.
			if worst > 5e-6 {
				t.Errorf("%+v %d->%d: max |Matrix - ORT Resize| = %.3g", r, in, out, worst)
			}
			outs[0].Destroy()
			xt.Destroy()
			s.Destroy()
		}
	}
}

func resampleVariants() []Resample {
	var rs []Resample
	for _, a := range []float64{-0.75, -0.5} {
		for _, aa := range []bool{false, true} {
			for _, ex := range []bool{false, true} {
				rs = append(rs, Resample{CubicA: a, Antialias: aa, ExcludeOutside: ex})
			}
		}
	}
	return rs
}

func TestMatrix(t *testing.T) {
	for _, r := range resampleVariants() {
		for _, io := range [][2]int{{37, 32}, {37, 16}, {16, 37}, {5, 3}, {3, 1}, {1, 4}, {9, 9}} {
			in, out := io[0], io[1]
			m := r.Matrix(in, out)
			for o := range out {
				var s float64
				for _, v := range m[o*in : (o+1)*in] {
					s += float64(v)
				}
				if math.Abs(s-1) > 1e-6 {
					t.Errorf("%+v %d->%d: row %d sums to %.8f", r, in, out, o, s)
				}
			}
			if in == out {
				for i := range in {
					for j := range in {
						if want := float32(boolTo01(i == j)); m[i*in+j] != want {
							t.Errorf("%+v %d->%d: [%d,%d] = %g, want identity", r, in, out, i, j, m[i*in+j])
						}
					}
				}
			}
		}
	}
	if m := (Resample{}).Matrix(0, 3); m != nil {
		t.Errorf("Matrix(0, 3) = %v, want nil", m)
	}

	// Antialiased 4 -> 2 with a = -0.5: the filter is stretched by 2 (s = 1/2),
	// so output 0 (x_in = 0.5) weighs inputs 0..3 at scaled distances 0.25,
	// 0.25, 0.75, 1.25: kernel values 0.8671875, 0.8671875, 0.2265625,
	// -0.0703125, summing to 1.890625. Without exclude_outside, the taps at
	// -3, -2, -1 (scaled 1.75, 1.25, 0.75: -0.0234375, -0.0703125, 0.2265625)
	// add to input 0 and tap 4 (1.75) to input 3: 1, 0.8671875, 0.2265625,
	// -0.09375, summing to 2. Output 1 is the mirror image.
	cases := []struct {
		r    Resample
		row0 []float64
	}{
		{Resample{CubicA: -0.5, Antialias: true, ExcludeOutside: true},
			[]float64{0.8671875 / 1.890625, 0.8671875 / 1.890625, 0.2265625 / 1.890625, -0.0703125 / 1.890625}},
		{Resample{CubicA: -0.5, Antialias: true}, []float64{0.5, 0.43359375, 0.11328125, -0.046875}},
	}
	for _, tc := range cases {
		m := tc.r.Matrix(4, 2)
		for k := range 4 {
			if math.Abs(float64(m[k])-tc.row0[k]) > 1e-7 || math.Abs(float64(m[4+3-k])-tc.row0[k]) > 1e-7 {
				t.Errorf("%+v: rows %v, want %v and its mirror", tc.r, m, tc.row0)
				break
			}
		}
	}
}

func TestPosGridFixed(t *testing.T) {
	l, err := Load(hfReg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := PosGrid(l.Config, l.Weights, l.Resample, 32, 32); err != nil {
		t.Errorf("32x32: %v", err)
	}
	if _, err := PosGrid(l.Config, l.Weights, l.Resample, 16, 22); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "32x32") {
		t.Errorf("16x22 on a model fixed to 32x32: err = %v", err)
	}
	if _, err := Forward(l, pixels(1, 224, 308), 1, 224, 308); !errors.Is(err, ErrConfig) {
		t.Errorf("Forward 224x308 on a model fixed to 448x448: err = %v", err)
	}
}

// TestPosGridNoResample checks that at the grid's own size the resample is
// the identity: PosGrid returns the learned rows unchanged.
func TestPosGridNoResample(t *testing.T) {
	for _, path := range []string{hfPlain, hfReg} {
		l, err := Load(path)
		if err != nil {
			t.Fatal(err)
		}
		l.Resample.FixedGrid = [2]int{}
		g := l.Config.PosGrid
		got, err := PosGrid(l.Config, l.Weights, l.Resample, g, g)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, l.Weights.Pos[l.Config.Dim:]) {
			t.Errorf("%s: PosGrid at %dx%d is not the learned grid", path, g, g)
		}
	}
}

// replaceAll replaces old with new (same length, so protobuf lengths hold)
// and fails when old does not occur.
func replaceAll(t *testing.T, b []byte, old, new string) []byte {
	t.Helper()
	if len(old) != len(new) {
		t.Fatalf("replacement %q -> %q changes the length", old, new)
	}
	if !bytes.Contains(b, []byte(old)) {
		t.Fatalf("%q not in the model", old)
	}
	return bytes.ReplaceAll(b, []byte(old), []byte(new))
}

// withData copies an HF export's external data file into a temporary
// directory, writes model bytes beside it and returns the model's path.
func withData(t *testing.T, src string, model []byte, data []byte) string {
	t.Helper()
	dir := t.TempDir()
	if data == nil {
		var err error
		if data, err = os.ReadFile(src + ".data"); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, filepath.Base(src)+".data"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, filepath.Base(src))
	if err := os.WriteFile(p, model, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadRefuses(t *testing.T) {
	mk, _, _ := mkvitModel(t, false)
	plain, err := os.ReadFile(hfPlain)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(hfPlain + ".data")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		path func(t *testing.T) string
		want string // in the error
	}{
		{"truncated model", func(t *testing.T) string { return writeTemp(t, "m.onnx", mk[:len(mk)/2]) }, "unsupported model"},
		{"truncated external data", func(t *testing.T) string { return withData(t, hfPlain, plain, data[:len(data)-100]) }, "past the end"},
		{"missing bias", func(t *testing.T) string {
			return writeTemp(t, "m.onnx", replaceAll(t, mk, "encoder.layer.1.mlp.fc2.bias", "encoder.layer.1.mlp.fc2.bia_"))
		}, `"encoder.layer.1.mlp.fc2.bias" not found`},
		{"missing HF bias", func(t *testing.T) string {
			return withData(t, hfPlain, replaceAll(t, plain, "encoder.layer.0.attention.attention.key.bias", "encoder.layer.0.attention.attention.key.bia_"), nil)
		}, `"encoder.layer.0.attention.attention.key.bias" not found`},
		{"unknown op", func(t *testing.T) string { return writeTemp(t, "m.onnx", replaceAll(t, mk, "Erf", "Sin")) }, "op Sin is not supported"},
		{"tanh GELU", func(t *testing.T) string {
			return withData(t, hfPlain, replaceAll(t, plain, "\x22\x04none", "\x22\x04tanh"), nil)
		}, `approximate="tanh"`},
		{"external data outside the directory", func(t *testing.T) string {
			return withData(t, hfPlain, replaceAll(t, plain, "hf-plain-tiny.onnx.data", "../plain-tiny.onnx.data"), nil)
		}, "must be a relative path inside"},
		{"absolute external data", func(t *testing.T) string {
			return withData(t, hfPlain, replaceAll(t, plain, "hf-plain-tiny.onnx.data", "/etc/plain-tiny.onnx.da"), nil)
		}, "must be a relative path inside"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(tc.path(t))
			if err == nil {
				t.Fatal("loaded")
			}
			if !errors.Is(err, ErrModel) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want ErrModel containing %q", err, tc.want)
			}
		})
	}
}

// TestLoadRefusesWrongScale changes the attention scale constant's value,
// which no shape or name check sees.
func TestLoadRefusesWrongScale(t *testing.T) {
	c := tinyConfig(t, 0)
	w, err := NewWeights(c)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Model(c, w)
	if err != nil {
		t.Fatal(err)
	}
	for i, init := range m.Graph.Initializers() {
		if init.Name == "attn_scale" {
			m.Graph.Initializers()[i].Float32Data = []float32{0.5}
		}
	}
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Load(writeTemp(t, "m.onnx", b)); !errors.Is(err, ErrModel) || !strings.Contains(err.Error(), "scaled by 0.5") {
		t.Errorf("err = %v, want the wrong attention scale named", err)
	}
}

func TestForwardRefuses(t *testing.T) {
	l, err := Load(hfPlain)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Forward(l, pixels(1, 224, 230), 1, 224, 230); !errors.Is(err, ErrConfig) {
		t.Errorf("width not a multiple of 14: err = %v", err)
	}
	if _, err := Forward(l, pixels(1, 224, 224)[:100], 1, 224, 224); !errors.Is(err, ErrConfig) {
		t.Errorf("short input: err = %v", err)
	}
	l.Weights.Blocks[1].FC1B = l.Weights.Blocks[1].FC1B[:10]
	if _, err := Forward(l, pixels(1, 224, 224), 1, 224, 224); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "Blocks[1].FC1B") {
		t.Errorf("short bias: err = %v", err)
	}
}

// FuzzLoadBytes feeds arbitrary bytes to the ONNX reader and mapper: they may
// be refused, never panic. The seeds are very small mkvit models (large seeds
// make the fuzzer's minimisation crawl), both position resamplers.
func FuzzLoadBytes(f *testing.F) {
	for _, separable := range []bool{false, true} {
		c := Config{Dim: 8, Depth: 1, Heads: 2, MLPDim: 16, PatchSize: 2, PosGrid: 2, Registers: 1,
			SeparablePosResize: separable, LayerScale: 1, Eps: 1e-6, InitStd: 0.02}
		b, err := Generate(c)
		if err != nil {
			f.Fatal(err)
		}
		if _, err := loadBytes(b, ""); err != nil {
			f.Fatalf("seed: %v", err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := loadBytes(b, "")
		if err == nil && l.Weights == nil {
			t.Fatal("no error and no weights")
		}
	})
}

// BenchmarkGoForward times Forward on vits14 with 4 registers at 448 x 448,
// batch 1, on all of GOMAXPROCS.
func BenchmarkGoForward(b *testing.B) {
	c, err := Preset("vits14")
	if err != nil {
		b.Fatal(err)
	}
	c.Registers = 4
	w, err := NewWeights(c)
	if err != nil {
		b.Fatal(err)
	}
	l := &Loaded{Config: c, Weights: w, Resample: Resample{CubicA: -0.75}}
	x := pixels(1, 448, 448)
	for b.Loop() {
		if _, err := Forward(l, x, 1, 448, 448); err != nil {
			b.Fatal(err)
		}
	}
}

// TestLinearForms checks the three ways a linear layer's weight is found from
// its bias: MatMul by [in,out] then Add (bias first or second), MatMul by a
// Transpose of [out,in], and Gemm with transB.
func TestLinearForms(t *testing.T) {
	const in, out = 3, 2
	want := []float32{1, 2, 3, 4, 5, 6}  // [in,out]
	wantT := []float32{1, 3, 5, 2, 4, 6} // the same, stored [out,in]
	bias := []float32{0.5, -0.5}
	forms := map[string]func(g *onnxgen.Graph, x string){
		"MatMul+Add": func(g *onnxgen.Graph, x string) {
			y := g.Op("MatMul", []string{x, g.Float32("w", []int64{in, out}, want)})
			g.Node("Add", []string{y, g.Float32("l.bias", []int64{out}, bias)}, []string{"y"})
		},
		"Add(bias,MatMul)": func(g *onnxgen.Graph, x string) {
			y := g.Op("MatMul", []string{x, g.Float32("w", []int64{in, out}, want)})
			g.Node("Add", []string{g.Float32("l.bias", []int64{out}, bias), y}, []string{"y"})
		},
		"Transpose+MatMul": func(g *onnxgen.Graph, x string) {
			wt := g.Op("Transpose", []string{g.Float32("w", []int64{out, in}, wantT)}, onnxgen.AttrInts("perm", 1, 0))
			y := g.Op("MatMul", []string{x, wt})
			g.Node("Add", []string{y, g.Float32("l.bias", []int64{out}, bias)}, []string{"y"})
		},
		"Gemm transB": func(g *onnxgen.Graph, x string) {
			g.Node("Gemm", []string{x, g.Float32("w", []int64{out, in}, wantT), g.Float32("l.bias", []int64{out}, bias)},
				[]string{"y"}, onnxgen.AttrInt("transB", 1))
		},
	}
	for name, build := range forms {
		t.Run(name, func(t *testing.T) {
			g := onnxgen.NewGraph("linear")
			x := g.Input("x", onnxgen.Float32, onnxgen.Fixed(4), onnxgen.Fixed(in))
			build(g, x)
			g.Output("y", onnxgen.Float32, onnxgen.Fixed(4), onnxgen.Fixed(out))
			b, err := (&onnxgen.Model{Graph: g}).Marshal()
			if err != nil {
				t.Fatal(err)
			}
			dg, err := decodeModel(b, "")
			if err != nil {
				t.Fatal(err)
			}
			m := &mapper{g: dg}
			lw, err := m.linear("l", x, in, out)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(lw.w, want) || !slices.Equal(lw.b, bias) || lw.out != "y" {
				t.Errorf("w %v b %v out %q, want %v %v y", lw.w, lw.b, lw.out, want, bias)
			}
			if _, err := m.linear("l", x, out, in); err == nil {
				t.Error("a weight of the wrong shape was accepted")
			}
		})
	}
}
