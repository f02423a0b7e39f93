package onnxgen

import (
	"anomalynode/internal/peers"
	"errors"
	"math"
	"os"
	"testing"

	ort "github.com/yalue/onnxruntime_go"
)

// TestMain initialises ONNX Runtime once for the test binary: the library path
// comes from ONNXRUNTIME_LIB, or the repository's .deps/ when unset.
func TestMain(m *testing.M) {
	lib := peers.ORTLibrary()
	ort.SetSharedLibraryPath(lib)
	if err := ort.InitializeEnvironment(); err != nil {
		// Not a skip: these tests exist to run the models in the real runtime.
		println("onnxgen test: ONNX Runtime at", lib, "(set ONNXRUNTIME_LIB or run make deps):", err.Error())
		os.Exit(1)
	}
	code := m.Run()
	_ = ort.DestroyEnvironment()
	os.Exit(code)
}

// affineGraph is y = gelu(x W + b) * s with a symbolic batch dimension: a
// MatMul through ORT's GEMM, broadcasting, attributes and a scalar constant.
func affineGraph() (*Model, []float32, []float32) {
	w := []float32{1, -2, 0.5, 3, 0.25, -1}
	b := []float32{0.1, -0.2}
	g := NewGraph("affine")
	x := g.Input("x", Float32, Sym("batch"), Fixed(3))
	h := g.Op("MatMul", []string{x, g.Float32("w", []int64{3, 2}, w)})
	h = g.Op("Add", []string{h, g.Float32("b", []int64{2}, b)})
	// Gelu via erf; Div by a rank-0 constant checks scalar initializers.
	e := g.Op("Erf", []string{g.Op("Div", []string{h, g.Float32("sqrt2", nil, []float32{float32(math.Sqrt2)})})})
	e = g.Op("Add", []string{e, g.Float32("one", nil, []float32{1})})
	h = g.Op("Mul", []string{g.Op("Mul", []string{h, e}), g.Float32("half", nil, []float32{0.5})})
	// Flatten(axis=1) is an identity on 2-D data; it is here to carry an INT attribute.
	g.Node("Flatten", []string{h}, []string{"y"}, AttrInt("axis", 1))
	g.Output("y", Float32, Sym("batch"), Fixed(2))
	return &Model{Graph: g, Producer: "onnxgen-test", Metadata: map[string]string{"b": "2", "a": "1"}}, w, b
}

func TestRunsInONNXRuntime(t *testing.T) {
	m, w, b := affineGraph()
	data, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	ins, outs, err := ort.GetInputOutputInfoWithONNXData(data)
	if err != nil {
		t.Fatalf("ORT rejects the model: %v", err)
	}
	if len(ins) != 1 || ins[0].Name != "x" || !ins[0].Dimensions.Equals(ort.NewShape(-1, 3)) {
		t.Fatalf("inputs = %v, want x [-1 3]", ins)
	}
	if len(outs) != 1 || outs[0].Name != "y" || !outs[0].Dimensions.Equals(ort.NewShape(-1, 2)) {
		t.Fatalf("outputs = %v, want y [-1 2]", outs)
	}
	meta, err := ort.GetModelMetadataWithONNXData(data)
	if err != nil {
		t.Fatal(err)
	}
	defer meta.Destroy()
	if p, _ := meta.GetProducerName(); p != "onnxgen-test" {
		t.Errorf("producer = %q", p)
	}
	if v, ok, _ := meta.LookupCustomMetadataMap("b"); !ok || v != "2" {
		t.Errorf("metadata b = %q, %v", v, ok)
	}

	sess, err := ort.NewDynamicAdvancedSessionWithONNXData(data, []string{"x"}, []string{"y"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Destroy()
	for _, batch := range []int64{1, 3} {
		x := make([]float32, batch*3)
		for i := range x {
			x[i] = float32(i)*0.3 - 1
		}
		in, err := ort.NewTensor(ort.NewShape(batch, 3), x)
		if err != nil {
			t.Fatal(err)
		}
		out, err := ort.NewEmptyTensor[float32](ort.NewShape(batch, 2))
		if err != nil {
			t.Fatal(err)
		}
		if err := sess.Run([]ort.Value{in}, []ort.Value{out}); err != nil {
			t.Fatal(err)
		}
		got := out.GetData()
		for r := int64(0); r < batch; r++ {
			for c := 0; c < 2; c++ {
				v := float64(b[c])
				for k := 0; k < 3; k++ {
					v += float64(x[r*3+int64(k)]) * float64(w[k*2+c])
				}
				want := 0.5 * v * (1 + math.Erf(v/math.Sqrt2))
				if d := math.Abs(float64(got[r*2+int64(c)]) - want); d > 1e-5 {
					t.Errorf("batch %d y[%d,%d] = %v, want %v", batch, r, c, got[r*2+int64(c)], want)
				}
			}
		}
		in.Destroy()
		out.Destroy()
	}
}

func TestMarshalDeterministic(t *testing.T) {
	m1, _, _ := affineGraph()
	m2, _, _ := affineGraph()
	a, err := m1.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	b, err := m2.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if string(a) != string(b) {
		t.Fatal("the same graph encoded to different bytes")
	}
}

func TestValidate(t *testing.T) {
	cases := []struct {
		name  string
		build func(g *Graph)
	}{
		{"undefined input", func(g *Graph) {
			g.Node("Relu", []string{"nope"}, []string{"y"})
			g.Output("y", Float32)
		}},
		{"defined twice", func(g *Graph) {
			x := g.Input("x", Float32, Fixed(1))
			g.Float32("x", []int64{1}, []float32{1})
			g.Node("Relu", []string{x}, []string{"y"})
			g.Output("y", Float32)
		}},
		{"data does not match dims", func(g *Graph) {
			g.Node("Relu", []string{g.Float32("c", []int64{2, 2}, []float32{1, 2, 3})}, []string{"y"})
			g.Output("y", Float32)
		}},
		{"output not produced", func(g *Graph) {
			g.Input("x", Float32, Fixed(1))
			g.Output("y", Float32)
		}},
		{"no outputs", func(g *Graph) {
			g.Input("x", Float32, Fixed(1))
		}},
		{"used before defined", func(g *Graph) {
			g.Node("Relu", []string{"a"}, []string{"y"})
			g.Node("Relu", []string{g.Input("x", Float32, Fixed(1))}, []string{"a"})
			g.Output("y", Float32)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := NewGraph("bad")
			c.build(g)
			_, err := (&Model{Graph: g}).Marshal()
			if !errors.Is(err, ErrInvalidGraph) {
				t.Fatalf("err = %v, want ErrInvalidGraph", err)
			}
		})
	}
}

func TestParams(t *testing.T) {
	g := NewGraph("p")
	g.Float32("w", []int64{3, 4}, make([]float32, 12))
	g.Float32("s", nil, []float32{1})
	g.Int64("shape", []int64{2}, []int64{1, 2})
	if got := g.Params(); got != 13 {
		t.Fatalf("Params = %d, want 13 (float32 elements only)", got)
	}
}
