//go:build !cuda

package cuda

import (
	"fmt"
	"math"

	"anomalynode/inference"
	"anomalynode/inference/vit"
)

// Embedder runs a DINOv2 ViT read from an ONNX file. Without the cuda tag it
// is the plain float32 Go forward pass (vit.Forward) on the CPU: the same
// weights and arithmetic order the GPU build follows, slow but exact, for
// tests and for machines without a GPU (ONNX Runtime is the fast CPU path).
type Embedder struct {
	l *vit.Loaded
}

// NewEmbedder loads the ONNX file's weights (o.Device and o.Precision are
// checked but unused without the cuda tag).
func NewEmbedder(o EmbedderOptions) (*Embedder, error) {
	if _, err := ParsePrecision(string(o.Precision)); err != nil {
		return nil, err
	}
	l, err := vit.Load(o.ModelPath)
	if err != nil {
		return nil, err
	}
	return &Embedder{l: l}, nil
}

// Embed runs the model on input [b,3,h,w] and returns the unit-length patch
// tokens (CLS and registers dropped), as inference.Embedder does.
func (e *Embedder) Embed(input []float32, b, h, w int) (*inference.Embedding, error) {
	c := e.l.Config
	if err := checkInput(input, b, h, w, c.PatchSize); err != nil {
		return nil, err
	}
	out, err := vit.Forward(e.l, input[:b*3*h*w], b, h, w)
	if err != nil {
		return nil, fmt.Errorf("cuda: embed: %w", err)
	}
	np := (h / c.PatchSize) * (w / c.PatchSize)
	t, d := 1+c.Registers+np, c.Dim
	emb := &inference.Embedding{Batch: b, Patches: np, Dim: d, Registers: c.Registers, Tokens: make([]float32, b*np*d)}
	for i := range b {
		copy(emb.Tokens[i*np*d:(i+1)*np*d], out[(i*t+1+c.Registers)*d:(i+1)*t*d])
	}
	for r := 0; r < b*np; r++ {
		row := emb.Tokens[r*d : (r+1)*d]
		var s float64
		for _, v := range row {
			s += float64(v) * float64(v)
		}
		if s > 0 {
			inv := float32(1 / math.Sqrt(s))
			for k := range row {
				row[k] *= inv
			}
		}
	}
	return emb, nil
}

// Dim is the token width D.
func (e *Embedder) Dim() int { return e.l.Config.Dim }

// OnGPU reports whether the forward pass runs on a GPU: never without the tag.
func (e *Embedder) OnGPU() bool { return false }

// Precision is the arithmetic in use: fp32 on the CPU.
func (e *Embedder) Precision() Precision { return PrecisionFP32 }

// MemoryUsed is the GPU memory held: none on the CPU.
func (e *Embedder) MemoryUsed() int64 { return 0 }

// Close releases nothing on the CPU.
func (e *Embedder) Close() error { return nil }

// ScoringEmbedder is an Embedder whose tokens are scored against a DPMM
// model's prototypes (inference.ScoringBackbone); on the CPU by
// inference.DPMMScorer.
type ScoringEmbedder struct {
	*Embedder
	s *inference.DPMMScorer
}

// NewScoringEmbedder loads the ONNX file's weights and the model's scorer.
func NewScoringEmbedder(o EmbedderOptions, model *inference.Model) (*ScoringEmbedder, error) {
	sc, err := inference.NewDPMMScorer(model)
	if err != nil {
		return nil, err
	}
	e, err := newEmbedderFor(o, model)
	if err != nil {
		return nil, err
	}
	return &ScoringEmbedder{Embedder: e, s: sc}, nil
}

// EmbedScore implements inference.ScoringBackbone.
func (s *ScoringEmbedder) EmbedScore(input []float32, b, h, w int) ([]float32, int, error) {
	emb, err := s.Embed(input, b, h, w)
	if err != nil {
		return nil, 0, err
	}
	scores := make([]float32, b*emb.Patches)
	for i := range b {
		s.s.Score(emb.Slice(i), emb.Patches, scores[i*emb.Patches:(i+1)*emb.Patches])
	}
	return scores, emb.Patches, nil
}
