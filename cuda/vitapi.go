package cuda

import (
	"fmt"

	"anomalynode/inference"
)

// Precision is the arithmetic of the GPU forward pass's matrix products:
// fp32 (plain), tf32 (tensor cores, fp32 storage) or bf16 (bf16 weights and
// GEMM inputs, fp32 accumulation, residual stream and normalisation in fp32).
type Precision string

// Values of the inference.gpu_precision setting.
const (
	PrecisionFP32 Precision = "fp32"
	PrecisionTF32 Precision = "tf32"
	PrecisionBF16 Precision = "bf16"
)

// DefaultPrecision is what an empty inference.gpu_precision means.
const DefaultPrecision = PrecisionBF16

// ParsePrecision checks a gpu_precision value ("" is DefaultPrecision).
func ParsePrecision(s string) (Precision, error) {
	switch p := Precision(s); p {
	case "":
		return DefaultPrecision, nil
	case PrecisionFP32, PrecisionTF32, PrecisionBF16:
		return p, nil
	}
	return "", fmt.Errorf("cuda: gpu_precision %q must be fp32, tf32 or bf16", s)
}

// EmbedderOptions configures an Embedder.
type EmbedderOptions struct {
	// ModelPath is the ONNX file, the same one the ONNX Runtime embedder runs;
	// its weights are read by inference/vit.Load.
	ModelPath string
	// Device is the GPU ordinal.
	Device int
	// Precision of the matrix products ("" is DefaultPrecision). Without the
	// cuda tag the forward pass runs in fp32 on the CPU whatever this says.
	Precision Precision
}

var (
	_ inference.Backbone                       = (*Embedder)(nil)
	_ func(EmbedderOptions) (*Embedder, error) = NewEmbedder
	_ interface {
		Close() error
		OnGPU() bool
		Dim() int
	} = (*Embedder)(nil)
)

// checkInput is the shape check both builds make before a forward pass.
func checkInput(input []float32, b, h, w, patch int) error {
	if b < 1 || h < patch || w < patch || h%patch != 0 || w%patch != 0 || len(input) < b*3*h*w {
		return fmt.Errorf("cuda: embed: %d values for [%d,3,%d,%d] (patch %d)", len(input), b, h, w, patch)
	}
	return nil
}

// newEmbedderFor opens o's embedder and checks that its tokens have model's
// width D.
func newEmbedderFor(o EmbedderOptions, model *inference.Model) (*Embedder, error) {
	e, err := NewEmbedder(o)
	if err != nil {
		return nil, err
	}
	if e.Dim() != model.D {
		e.Close()
		return nil, fmt.Errorf("cuda: embedder %s outputs %d-dim tokens, the model has D=%d", o.ModelPath, e.Dim(), model.D)
	}
	return e, nil
}
