package inference

import (
	"errors"
	"fmt"
	"io"

	"github.com/prometheus/client_golang/prometheus"

	"anomalynode/internal/nice"
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
	// Nice, when above 0, is the niceness (1-19) of every thread that
	// works on the model: the backbone is created on such a thread, so
	// ONNX Runtime's intra-op pool inherits it, and the engine decodes,
	// preprocesses, runs and maps at it (EngineOptions.Nice).
	Nice int
	// NewBackbone, when set, builds the backbone from EmbedderPath and the
	// model instead of an ONNX Runtime session (the cuda package's GPU
	// embedder, which this package cannot import, and which scores its tokens
	// on the device as a ScoringBackbone); ONNX Runtime is then not loaded.
	NewBackbone func(path string, m *Model) (Backbone, error)
	// NewScorer, when set, builds the scorer the engine uses (e.g. the cuda
	// package's GPU scorer, which this package cannot import); by default the
	// engine uses the CPU DPMMScorer.
	NewScorer func(m *Model) (Scorer, error)
}

// Served is an opened model: its engine and the parts it was built from.
type Served struct {
	// Model is the loaded model file.
	Model *Model
	// Embedder is the ONNX Runtime session, nil when ModelSetup.NewBackbone
	// built the backbone.
	Embedder *Embedder
	// Backbone is what the engine embeds with: Embedder or what
	// ModelSetup.NewBackbone built (closed by Close).
	Backbone Backbone
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
	// NiceErr is why ModelSetup.Nice could not be applied (nil when it was
	// or was 0); the model then runs at the process's priority.
	NiceErr error
}

// Close releases the backbone and a scorer that hold resources.
func (s *Served) Close() error {
	var err error
	if c, ok := s.Backbone.(io.Closer); ok {
		err = c.Close()
	}
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
	var (
		emb *Embedder
		bb  Backbone
	)
	niceErr := nice.Run(s.Nice, func() { emb, bb, err = openBackbone(s, m, pre.PatchSize) })
	if niceErr != nil {
		s.Nice = 0
	}
	if err != nil {
		closeActive()
		return nil, err
	}
	closeBackbone := func() {
		if c, ok := bb.(io.Closer); ok {
			c.Close()
		}
	}
	if dm, ok := bb.(interface{ Dim() int }); ok {
		if d := dm.Dim(); d > 0 && d != m.D {
			closeActive()
			closeBackbone()
			return nil, fmt.Errorf("inference: embedder %s outputs %d-dim tokens, model %s has D=%d", s.EmbedderPath, d, s.ModelPath, m.D)
		}
	}
	eng, err := NewEngine(EngineOptions{Backbone: bb, Scorer: active, Preprocessor: pre, Threshold: th, Batch: s.Batch, TopFraction: s.TopFraction, Registerer: s.Registerer, Nice: s.Nice})
	if err != nil {
		closeActive()
		closeBackbone()
		return nil, err
	}
	return &Served{Model: m, Embedder: emb, Backbone: bb, Scorer: sc, Active: active, Preprocessor: pre, Threshold: th, Engine: eng, NiceErr: niceErr}, nil
}

// openBackbone builds s's backbone: NewBackbone's, or an ONNX Runtime
// session (returned as both values).
func openBackbone(s ModelSetup, m *Model, patch int) (*Embedder, Backbone, error) {
	if s.NewBackbone != nil {
		bb, err := s.NewBackbone(s.EmbedderPath, m)
		return nil, bb, err
	}
	if err := InitRuntime(s.ORTLibrary); err != nil {
		return nil, nil, err
	}
	in, out := s.InputName, s.OutputName
	if in == "" {
		in = m.Meta.Embedder.InputName
	}
	if out == "" {
		out = m.Meta.Embedder.OutputName
	}
	emb, err := NewEmbedder(EmbedderOptions{ModelPath: s.EmbedderPath, Device: s.Device, CUDADevice: s.CUDADevice,
		Threads: s.Threads, GraphOptimization: s.GraphOptimization, InputName: in, OutputName: out, PatchSize: patch})
	if err != nil {
		return nil, nil, err
	}
	return emb, emb, nil
}
