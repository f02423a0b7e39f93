package inference

import (
	"errors"
	"fmt"
	"io"

	"github.com/prometheus/client_golang/prometheus"
)

// ModelSetup is everything needed to serve one fitted model, as plain values
// (the caller maps its configuration onto it).
type ModelSetup struct {
	// ModelPath is the model file written by 'anomalynode fit'.
	ModelPath string
	// EmbedderPath is the ONNX backbone.
	EmbedderPath string
	// VerifyEmbedder checks the backbone's sha256 against the model file.
	VerifyEmbedder bool
	// ORTLibrary is libonnxruntime's path ("" uses $ONNXRUNTIME_LIB).
	ORTLibrary string
	// Device, CUDADevice, Threads and GraphOptimization configure the session.
	Device string
	// CUDADevice is the GPU ordinal for device cuda.
	CUDADevice int
	// Threads is the intra-op thread count (0: all cores).
	Threads int
	// GraphOptimization is disable, basic, extended or all.
	GraphOptimization string
	// InputName and OutputName override the names read from the ONNX file.
	InputName, OutputName string
	// Batch is the most slices per model run.
	Batch int
	// TopFraction is the share of top pixel scores in the slice score.
	TopFraction float64
	// FPR selects the threshold (0.01, 0.05, 0.10).
	FPR float64
	// VOI, when set, overrides the model file's VOI policy.
	VOI *PreprocessSpec
	// Registerer receives the engine's metrics (optional).
	Registerer prometheus.Registerer
	// NewScorer, when set, builds the scorer the engine uses (e.g. the cuda
	// package's GPU scorer, which this package cannot import); by default the
	// engine uses the CPU DPMMScorer.
	NewScorer func(m *Model) (Scorer, error)
}

// Served is an opened model: its engine and the parts it was built from.
type Served struct {
	// Model is the loaded model file.
	Model *Model
	// Embedder is the ONNX session (closed by Close).
	Embedder *Embedder
	// Scorer is the CPU DPMM prototype scorer.
	Scorer *DPMMScorer
	// Active is the scorer the engine uses: Scorer, or what
	// ModelSetup.NewScorer built.
	Active Scorer
	// Preprocessor is the preprocessing in use.
	Preprocessor *Preprocessor
	// Threshold is the pixel threshold for FPR.
	Threshold float32
	// Engine runs slices through all of it.
	Engine *Engine
}

// Close releases the ONNX session and a scorer that holds resources.
func (s *Served) Close() error {
	err := s.Embedder.Close()
	if c, ok := s.Active.(io.Closer); ok && s.Active != Scorer(s.Scorer) {
		err = errors.Join(err, c.Close())
	}
	return err
}

// OpenModel loads a model file, checks its embedder, starts ONNX Runtime and
// builds the engine.
func OpenModel(s ModelSetup) (*Served, error) {
	m, err := LoadModel(s.ModelPath)
	if err != nil {
		return nil, err
	}
	if s.VerifyEmbedder {
		if err := m.VerifyEmbedder(s.EmbedderPath); err != nil {
			return nil, err
		}
	}
	fpr := s.FPR
	if fpr == 0 {
		fpr = 0.01
	}
	th, err := m.Threshold(fpr)
	if err != nil {
		return nil, err
	}
	pre := NewPreprocessor(m.Meta)
	if s.VOI != nil {
		if err := s.VOI.Validate(); err != nil {
			return nil, fmt.Errorf("inference: VOI override: %w", err)
		}
		pre.VOI = *s.VOI
	}
	if err := pre.VOI.Validate(); err != nil {
		return nil, err
	}
	sc, err := NewDPMMScorer(m)
	if err != nil {
		return nil, err
	}
	var active Scorer = sc
	if s.NewScorer != nil {
		if active, err = s.NewScorer(m); err != nil {
			return nil, err
		}
	}
	closeActive := func() {
		if c, ok := active.(io.Closer); ok && s.NewScorer != nil {
			c.Close()
		}
	}
	if err := InitRuntime(s.ORTLibrary); err != nil {
		closeActive()
		return nil, err
	}
	in, out := s.InputName, s.OutputName
	if in == "" {
		in = m.Meta.Embedder.InputName
	}
	if out == "" {
		out = m.Meta.Embedder.OutputName
	}
	emb, err := NewEmbedder(EmbedderOptions{ModelPath: s.EmbedderPath, Device: s.Device, CUDADevice: s.CUDADevice,
		Threads: s.Threads, GraphOptimization: s.GraphOptimization, InputName: in, OutputName: out, PatchSize: pre.PatchSize})
	if err != nil {
		closeActive()
		return nil, err
	}
	if d := emb.Dim(); d > 0 && d != m.D {
		closeActive()
		emb.Close()
		return nil, fmt.Errorf("inference: embedder %s outputs %d-dim tokens, model %s has D=%d", s.EmbedderPath, d, s.ModelPath, m.D)
	}
	eng, err := NewEngine(EngineOptions{Backbone: emb, Scorer: active, Preprocessor: pre, Threshold: th, Batch: s.Batch, TopFraction: s.TopFraction, Registerer: s.Registerer})
	if err != nil {
		closeActive()
		emb.Close()
		return nil, err
	}
	return &Served{Model: m, Embedder: emb, Scorer: sc, Active: active, Preprocessor: pre, Threshold: th, Engine: eng}, nil
}
