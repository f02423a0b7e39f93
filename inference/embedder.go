package inference

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// ErrNoRuntime is returned when the ONNX Runtime library cannot be found or loaded.
var ErrNoRuntime = errors.New("ONNX Runtime library not available")

// ErrNoCUDA is returned when device cuda is asked of a library without CUDA.
var ErrNoCUDA = errors.New("ONNX Runtime library has no CUDA execution provider")

// Default IO names of the Hugging Face DINOv2 export.
const (
	DefaultInputName  = "pixel_values"
	DefaultOutputName = "last_hidden_state"
)

var runtimeState struct {
	sync.Mutex
	path string
	err  error
	done bool
}

// InitRuntime loads the ONNX Runtime shared library once per process. An empty
// libPath uses $ONNXRUNTIME_LIB. Later calls return the first call's result
// (and an error if they name a different library).
func InitRuntime(libPath string) error {
	if libPath == "" {
		libPath = os.Getenv("ONNXRUNTIME_LIB")
	}
	if libPath == "" {
		libPath = bundledRuntime()
	}
	rs := &runtimeState
	rs.Lock()
	defer rs.Unlock()
	if rs.done {
		if rs.err == nil && libPath != "" && libPath != rs.path {
			return fmt.Errorf("inference: ONNX Runtime already loaded from %s, cannot also load %s", rs.path, libPath)
		}
		return rs.err
	}
	if libPath == "" {
		// Not cached: the variable may be set and the call retried.
		return fmt.Errorf("inference: %w: set inference.ort_library or $ONNXRUNTIME_LIB (run 'make deps' to install it under .deps/onnxruntime/)", ErrNoRuntime)
	}
	if _, err := os.Stat(libPath); err != nil {
		return fmt.Errorf("inference: %w: %s: %v (run 'make deps' to install it)", ErrNoRuntime, libPath, err)
	}
	ort.SetSharedLibraryPath(libPath)
	rs.done, rs.path = true, libPath
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		rs.err = fmt.Errorf("inference: %w: load %s: %v (run 'make deps' for a matching version)", ErrNoRuntime, libPath, err)
		return rs.err
	}
	return nil
}

// bundledRuntime finds the library 'make deps' installs, beside a binary built
// by 'make build' (bin/../.deps/onnxruntime/), so a checkout runs without
// setting $ONNXRUNTIME_LIB; "" when there is none.
func bundledRuntime() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	p := filepath.Join(filepath.Dir(exe), "..", ".deps", "onnxruntime", "libonnxruntime.so.1")
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// RuntimeVersion is the loaded ONNX Runtime's version ("" before InitRuntime).
func RuntimeVersion() string {
	if !ort.IsInitialized() {
		return ""
	}
	return ort.GetVersion()
}

// EmbedderOptions configures an ONNX Runtime session.
type EmbedderOptions struct {
	// ModelPath is the ONNX file.
	ModelPath string
	// Device is "cpu" (default) or "cuda". With cuda, a library without the CUDA
	// provider is an error (ErrNoCUDA), never a silent fallback.
	Device string
	// CUDADevice is the GPU ordinal for cuda.
	CUDADevice int
	// Threads is the intra-op thread count (0: ONNX Runtime's default, all cores).
	Threads int
	// GraphOptimization is disable, basic, extended or all (default).
	GraphOptimization string
	// InputName and OutputName override the names read from the model.
	InputName, OutputName string
	// PatchSize is the ViT patch size (default 14).
	PatchSize int
}

// Embedder runs a DINOv2-style ViT and returns unit-length patch tokens.
type Embedder struct {
	session   *ort.DynamicAdvancedSession
	in, out   string
	dim       int
	patch     int
	device    string
	modelPath string
	mu        sync.Mutex // one Run at a time: ORT parallelises inside a run
}

// NewEmbedder opens a session on the model. InitRuntime must have succeeded.
func NewEmbedder(o EmbedderOptions) (*Embedder, error) {
	if !ort.IsInitialized() {
		return nil, fmt.Errorf("inference: embedder: %w: call InitRuntime first", ErrNoRuntime)
	}
	if o.PatchSize == 0 {
		o.PatchSize = DefaultPatchSize
	}
	if _, err := os.Stat(o.ModelPath); err != nil {
		return nil, fmt.Errorf("inference: embedder: %w", err)
	}
	ins, outs, err := ort.GetInputOutputInfo(o.ModelPath)
	if err != nil {
		return nil, fmt.Errorf("inference: embedder: read %s: %w", o.ModelPath, err)
	}
	in, err := pickName("input", ins, o.InputName, DefaultInputName)
	if err != nil {
		return nil, err
	}
	out, err := pickName("output", outs, o.OutputName, DefaultOutputName)
	if err != nil {
		return nil, err
	}
	if d := in.Dimensions; len(d) != 4 || (d[1] != 3 && d[1] > 0) {
		return nil, fmt.Errorf("inference: embedder: input %q has shape %v, want [B,3,H,W]", in.Name, d)
	}
	if in.DataType != ort.TensorElementDataTypeFloat || out.DataType != ort.TensorElementDataTypeFloat {
		return nil, fmt.Errorf("inference: embedder: input/output must be float32 (have %v / %v)", in.DataType, out.DataType)
	}
	if len(out.Dimensions) != 3 {
		return nil, fmt.Errorf("inference: embedder: output %q has shape %v, want [B,T,D]", out.Name, out.Dimensions)
	}
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("inference: embedder: %w", err)
	}
	defer so.Destroy()
	if o.Threads > 0 {
		if err := so.SetIntraOpNumThreads(o.Threads); err != nil {
			return nil, fmt.Errorf("inference: embedder: threads: %w", err)
		}
		if err := so.SetInterOpNumThreads(1); err != nil {
			return nil, fmt.Errorf("inference: embedder: threads: %w", err)
		}
	}
	level, err := graphOptLevel(o.GraphOptimization)
	if err != nil {
		return nil, err
	}
	if err := so.SetGraphOptimizationLevel(level); err != nil {
		return nil, fmt.Errorf("inference: embedder: graph optimisation: %w", err)
	}
	device := o.Device
	if device == "" {
		device = "cpu"
	}
	switch device {
	case "cpu":
	case "cuda":
		co, err := ort.NewCUDAProviderOptions()
		if err != nil {
			return nil, fmt.Errorf("inference: embedder: %w: %v", ErrNoCUDA, err)
		}
		defer co.Destroy()
		if err := co.Update(map[string]string{"device_id": fmt.Sprint(o.CUDADevice)}); err != nil {
			return nil, fmt.Errorf("inference: embedder: %w: %v", ErrNoCUDA, err)
		}
		if err := so.AppendExecutionProviderCUDA(co); err != nil {
			return nil, fmt.Errorf("inference: embedder: %w (the npm onnxruntime-node build is CPU-only; install a CUDA build of ONNX Runtime and point inference.ort_library at it, or set inference.device: cpu): %v", ErrNoCUDA, err)
		}
	default:
		return nil, fmt.Errorf("inference: embedder: device %q must be cpu or cuda", device)
	}
	sess, err := ort.NewDynamicAdvancedSession(o.ModelPath, []string{in.Name}, []string{out.Name}, so)
	if err != nil {
		return nil, fmt.Errorf("inference: embedder: open %s: %w", o.ModelPath, err)
	}
	return &Embedder{session: sess, in: in.Name, out: out.Name, dim: int(out.Dimensions[2]), patch: o.PatchSize, device: device, modelPath: o.ModelPath}, nil
}

func pickName(kind string, infos []ort.InputOutputInfo, override, def string) (ort.InputOutputInfo, error) {
	names := make([]string, len(infos))
	for i, in := range infos {
		names[i] = in.Name
	}
	want := override
	if want == "" {
		if len(infos) == 1 {
			return infos[0], nil
		}
		want = def
	}
	if i := slices.Index(names, want); i >= 0 {
		return infos[i], nil
	}
	return ort.InputOutputInfo{}, fmt.Errorf("inference: embedder: model has no %s %q (it has %v); set the %s name in the model config", kind, want, names, kind)
}

func graphOptLevel(s string) (ort.GraphOptimizationLevel, error) {
	switch s {
	case "", "all":
		return ort.GraphOptimizationLevelEnableAll, nil
	case "extended":
		return ort.GraphOptimizationLevelEnableExtended, nil
	case "basic":
		return ort.GraphOptimizationLevelEnableBasic, nil
	case "disable", "none":
		return ort.GraphOptimizationLevelDisableAll, nil
	}
	return 0, fmt.Errorf("inference: embedder: graph optimisation %q must be disable, basic, extended or all", s)
}

// Dim is the token width D (-1 or 0 when the model leaves it dynamic, until
// the first run).
func (e *Embedder) Dim() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.dim
}

// Names returns the input and output names in use.
func (e *Embedder) Names() (input, output string) { return e.in, e.out }

// Device is the execution provider in use.
func (e *Embedder) Device() string { return e.device }

// Close releases the session.
func (e *Embedder) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.session == nil {
		return nil
	}
	err := e.session.Destroy()
	e.session = nil
	return err
}

// Embedding is a batch of unit-length patch tokens.
type Embedding struct {
	// Batch, Patches and Dim give the shape of Tokens.
	Batch, Patches, Dim int
	// Registers is the number of register tokens the model output (dropped).
	Registers int
	// Tokens is [Batch, Patches, Dim], each row L2-normalised.
	Tokens []float32
}

// Slice returns the tokens of batch item i ([Patches*Dim]).
func (e *Embedding) Slice(i int) []float32 {
	n := e.Patches * e.Dim
	return e.Tokens[i*n : (i+1)*n]
}

// Embed runs the model on input [b, 3, h, w] (h, w multiples of the patch
// size) and returns the patch tokens: the CLS token and the R register tokens
// (R read from the output length) are dropped, each patch token normalised.
func (e *Embedder) Embed(input []float32, b, h, w int) (*Embedding, error) {
	if h%e.patch != 0 || w%e.patch != 0 || b < 1 || len(input) < b*3*h*w {
		return nil, fmt.Errorf("inference: embed: input %d values for [%d,3,%d,%d] (patch %d)", len(input), b, h, w, e.patch)
	}
	t, err := ort.NewTensor(ort.NewShape(int64(b), 3, int64(h), int64(w)), input)
	if err != nil {
		return nil, fmt.Errorf("inference: embed: %w", err)
	}
	defer t.Destroy()
	outs := []ort.Value{nil}
	e.mu.Lock()
	if e.session == nil {
		e.mu.Unlock()
		return nil, errors.New("inference: embed: embedder closed")
	}
	err = e.session.Run([]ort.Value{t}, outs)
	e.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("inference: embed: run: %w", err)
	}
	defer outs[0].Destroy()
	ot, ok := outs[0].(*ort.Tensor[float32])
	if !ok {
		return nil, fmt.Errorf("inference: embed: output %q is %T, want a float32 tensor", e.out, outs[0])
	}
	shape := ot.GetShape()
	p := (h / e.patch) * (w / e.patch)
	if len(shape) != 3 || shape[0] != int64(b) {
		return nil, fmt.Errorf("inference: embed: output shape %v for batch %d", shape, b)
	}
	tokens, d := int(shape[1]), int(shape[2])
	r := tokens - 1 - p
	if r < 0 || r > 64 {
		return nil, fmt.Errorf("inference: embed: output has %d tokens, a %dx%d patch grid needs 1 + R + %d (patch size %d wrong?)", tokens, h/e.patch, w/e.patch, p, e.patch)
	}
	data := ot.GetData()
	emb := &Embedding{Batch: b, Patches: p, Dim: d, Registers: r, Tokens: make([]float32, b*p*d)}
	for i := 0; i < b; i++ {
		src := data[(i*tokens+1+r)*d : (i*tokens+tokens)*d]
		dst := emb.Tokens[i*p*d : (i+1)*p*d]
		copy(dst, src)
	}
	normaliseRows(emb.Tokens, d)
	for _, v := range emb.Tokens {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, errors.New("inference: embed: model produced NaN/Inf")
		}
	}
	e.mu.Lock()
	e.dim = d
	e.mu.Unlock()
	return emb, nil
}
