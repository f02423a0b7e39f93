package inference

import (
	"anomalynode/internal/peers"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	ort "github.com/yalue/onnxruntime_go"

	"anomalynode/inference/vit"
)

// ortLib is the library the tests load; a missing one fails them (run make deps).
func ortLib() string { return peers.ORTLibrary() }

func initORT(t testing.TB) {
	t.Helper()
	if err := InitRuntime(ortLib()); err != nil {
		t.Fatalf("%v", err)
	}
}

var (
	vitOnce  sync.Map // preset key -> path
	vitDir   string
	vitDirMu sync.Mutex
)

// testViT writes (once per test binary) a vit model and returns its path.
func testViT(t testing.TB, preset string, registers int) string {
	t.Helper()
	key := preset + "/" + string(rune('0'+registers))
	if p, ok := vitOnce.Load(key); ok {
		return p.(string)
	}
	vitDirMu.Lock()
	defer vitDirMu.Unlock()
	if vitDir == "" {
		d, err := os.MkdirTemp("", "inference-vit")
		if err != nil {
			t.Fatal(err)
		}
		vitDir = d
	}
	c, err := vit.Preset(preset)
	if err != nil {
		t.Fatal(err)
	}
	c.Registers = registers
	c.SeparablePosResize = true
	p := filepath.Join(vitDir, preset+"-r"+string(rune('0'+registers))+".onnx")
	if _, _, err := vit.WriteFile(p, c); err != nil {
		t.Fatal(err)
	}
	vitOnce.Store(key, p)
	return p
}

func TestMain(m *testing.M) {
	code := m.Run()
	if vitDir != "" {
		os.RemoveAll(vitDir)
	}
	os.Exit(code)
}

func TestInitRuntimeMissing(t *testing.T) {
	err := InitRuntime(filepath.Join(t.TempDir(), "nope.so"))
	if !errors.Is(err, ErrNoRuntime) || !strings.Contains(err.Error(), "make deps") {
		t.Fatalf("err = %v, want ErrNoRuntime naming make deps", err)
	}
}

func TestEmbedderTokens(t *testing.T) {
	initORT(t)
	for _, regs := range []int{0, 4} {
		path := testViT(t, "tiny", regs)
		e, err := NewEmbedder(EmbedderOptions{ModelPath: path, Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		if in, out := e.Names(); in != DefaultInputName || out != DefaultOutputName {
			t.Fatalf("names %s %s", in, out)
		}
		b, h, w := 2, 28, 42
		r := rand.New(rand.NewPCG(1, uint64(regs)))
		input := make([]float32, b*3*h*w)
		for i := range input {
			input[i] = float32(r.NormFloat64())
		}
		emb, err := e.Embed(input, b, h, w)
		if err != nil {
			t.Fatal(err)
		}
		if emb.Batch != 2 || emb.Patches != 6 || emb.Dim != 48 || emb.Registers != regs {
			t.Fatalf("R=%d: got batch %d patches %d dim %d registers %d", regs, emb.Batch, emb.Patches, emb.Dim, emb.Registers)
		}
		// Independent check: run the raw model and normalise the patch tokens here.
		raw := rawRun(t, path, input, b, h, w)
		tokens := 1 + regs + 6
		for i := 0; i < b; i++ {
			for p := 0; p < 6; p++ {
				row := raw[(i*tokens+1+regs+p)*48 : (i*tokens+2+regs+p)*48]
				var n float64
				for _, v := range row {
					n += float64(v) * float64(v)
				}
				n = math.Sqrt(n)
				got := emb.Slice(i)[p*48 : (p+1)*48]
				for k := range row {
					if math.Abs(float64(row[k])/n-float64(got[k])) > 1e-5 {
						t.Fatalf("R=%d item %d patch %d dim %d: %v, want %v", regs, i, p, k, got[k], float64(row[k])/n)
					}
				}
			}
		}
	}
}

func rawRun(t *testing.T, path string, input []float32, b, h, w int) []float32 {
	t.Helper()
	s, err := ort.NewDynamicAdvancedSession(path, []string{DefaultInputName}, []string{DefaultOutputName}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Destroy()
	in, err := ort.NewTensor(ort.NewShape(int64(b), 3, int64(h), int64(w)), input)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Destroy()
	outs := []ort.Value{nil}
	if err := s.Run([]ort.Value{in}, outs); err != nil {
		t.Fatal(err)
	}
	defer outs[0].Destroy()
	return append([]float32(nil), outs[0].(*ort.Tensor[float32]).GetData()...)
}

func TestEmbedderErrors(t *testing.T) {
	initORT(t)
	path := testViT(t, "tiny", 0)
	if _, err := NewEmbedder(EmbedderOptions{ModelPath: path, InputName: "image"}); err == nil || !strings.Contains(err.Error(), "pixel_values") {
		t.Fatalf("bad input name: %v", err)
	}
	if _, err := NewEmbedder(EmbedderOptions{ModelPath: path, GraphOptimization: "max"}); err == nil {
		t.Fatal("bad graph optimisation accepted")
	}
	if _, err := NewEmbedder(EmbedderOptions{ModelPath: filepath.Join(t.TempDir(), "x.onnx")}); err == nil {
		t.Fatal("missing model accepted")
	}
	// The npm library is CPU-only: cuda must fail loudly, not fall back.
	e, err := NewEmbedder(EmbedderOptions{ModelPath: path, Device: "cuda"})
	if err == nil {
		e.Close()
		t.Skip("this ONNX Runtime library has the CUDA provider and a device: nothing to check")
	}
	if !errors.Is(err, ErrNoCUDA) {
		t.Fatalf("cuda: %v, want ErrNoCUDA", err)
	}
	e, err = NewEmbedder(EmbedderOptions{ModelPath: path, GraphOptimization: "basic", Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if _, err := e.Embed(make([]float32, 3*27*28), 1, 27, 28); err == nil {
		t.Fatal("height not a multiple of 14 accepted")
	}
	// Wrong patch size: the token count does not fit the grid.
	e2, err := NewEmbedder(EmbedderOptions{ModelPath: path, PatchSize: 7, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	if _, err := e2.Embed(make([]float32, 3*28*28), 1, 28, 28); err == nil {
		t.Fatal("patch size 7 on a patch-14 model accepted")
	}
}
