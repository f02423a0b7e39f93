package configs

import (
	"math"
	"strconv"
)

// Inference configures the embedder runtime shared by all models.
type Inference struct {
	// Device is cpu (ONNX Runtime) or cuda: our own DINOv2 forward pass and
	// DPMM scoring on an NVIDIA GPU (a binary built with -tags cuda; an error
	// at start-up, never a silent fallback, without the tag or a device).
	Device string `yaml:"device"`
	// CUDADevice is the GPU ordinal used with device cuda.
	CUDADevice int `yaml:"cuda_device"`
	// GPUPrecision is the arithmetic of the GPU forward pass: fp32, tf32 or
	// bf16 (bf16 weights and matrix inputs, fp32 accumulation; the default).
	GPUPrecision string `yaml:"gpu_precision"`
	// ORTLibrary is the path of libonnxruntime.so; empty uses $ONNXRUNTIME_LIB.
	ORTLibrary string `yaml:"ort_library"`
	// Threads is ONNX Runtime's intra-op thread count (0: all cores).
	Threads int `yaml:"threads"`
	// Batch is the largest number of slices per model run.
	Batch int `yaml:"batch"`
	// GraphOptimization is ONNX Runtime's graph optimisation level: disable,
	// basic, extended or all.
	GraphOptimization string `yaml:"graph_optimization"`
	// TopFraction is the share of highest pixel scores averaged into a slice's
	// score (0.01: the top 1 %).
	TopFraction float64 `yaml:"top_fraction"`
	// Nice is the scheduling niceness, 0-19, of the threads that run the
	// models (ONNX Runtime's, decoding, preprocessing, maps), so that
	// receiving and storing win the cores they share (default 10; 0 leaves
	// them at the process's). Linux only; raising it needs no privilege, and
	// where it is refused the node warns at start-up and runs them unchanged.
	Nice *int `yaml:"nice"`
}

// DefaultNice is inference.nice when it is not set.
const DefaultNice = 10

func (i *Inference) setDefaults() {
	if i.Device == "" {
		i.Device = "cpu"
	}
	if i.Batch == 0 {
		i.Batch = 4
	}
	if i.GPUPrecision == "" {
		i.GPUPrecision = "bf16"
	}
	if i.GraphOptimization == "" {
		i.GraphOptimization = "all"
	}
	if i.TopFraction == 0 {
		i.TopFraction = 0.01
	}
	if i.Nice == nil {
		// A pointer, so an explicit 0 (off) differs from absent.
		n := DefaultNice
		i.Nice = &n
	}
}

func (i *Inference) validate(p *problems, path string) {
	if i.Device != "cpu" && i.Device != "cuda" {
		p.add(path+".device", "must be cpu or cuda, not %q", i.Device)
	}
	if i.CUDADevice < 0 {
		p.add(path+".cuda_device", "must be >= 0")
	}
	switch i.GPUPrecision {
	case "fp32", "tf32", "bf16":
	default:
		p.add(path+".gpu_precision", "must be fp32, tf32 or bf16, not %q", i.GPUPrecision)
	}
	if i.Threads < 0 {
		p.add(path+".threads", "must be >= 0 (0: all cores)")
	}
	if i.Batch < 1 {
		p.add(path+".batch", "must be at least 1")
	} else if i.Batch > 256 {
		p.add(path+".batch", "must be at most 256")
	}
	switch i.GraphOptimization {
	case "disable", "basic", "extended", "all":
	default:
		p.add(path+".graph_optimization", "must be disable, basic, extended or all, not %q", i.GraphOptimization)
	}
	if !(i.TopFraction > 0 && i.TopFraction <= 1) {
		p.add(path+".top_fraction", "must be in (0, 1]")
	}
	if i.Nice != nil && (*i.Nice < 0 || *i.Nice > 19) {
		p.add(path+".nice", "must be a niceness from 0 (unchanged) to 19, not %d", *i.Nice)
	}
}

// Model names a fitted DPMM model file and the embedder it was fitted with.
type Model struct {
	// Path of the model file written by 'anomalynode fit'.
	Path string `yaml:"path"`
	// Embedder is the ONNX file of the backbone.
	Embedder string `yaml:"embedder"`
	// InputName overrides the model input name read from the ONNX file.
	InputName string `yaml:"input_name"`
	// OutputName overrides the model output name read from the ONNX file.
	OutputName string `yaml:"output_name"`
	// FPR selects the calibrated threshold the mask uses: 0.01, 0.05 or 0.10
	// (a key of the model file's thresholds).
	FPR float64 `yaml:"fpr"`
	// SeriesFPR overrides the share of healthy series allowed to show any
	// finding, in [0, 1] (default: as fitted, 0.05 unless fit was told
	// otherwise); the peak limit is recomputed from the model file.
	SeriesFPR *float64 `yaml:"series_fpr"`
	// MinVolumeMM3 overrides the smallest finding in mm3, >= 0 (default: as
	// fitted, 100 unless fit was told otherwise).
	MinVolumeMM3 *float64 `yaml:"min_volume_mm3"`
	// Findings turns finding-level decisions off when false: every pixel
	// above the threshold is painted, as in the paper's evaluation, and no
	// measurement report is built (default true when the model file has a
	// finding calibration).
	Findings *bool `yaml:"findings"`
	// VerifyEmbedder checks the embedder's sha256 against the model file at
	// start-up (default true).
	VerifyEmbedder *bool `yaml:"verify_embedder"`
	// VOI overrides the model file's VOI policy: model-window, header,
	// percentile or robust (empty: as fitted; changing it changes what the
	// model sees).
	VOI string `yaml:"voi"`
	// WindowCenter is the model-window centre when VOI is model-window.
	WindowCenter *float64 `yaml:"window_center"`
	// WindowWidth is the model-window width when VOI is model-window.
	WindowWidth *float64 `yaml:"window_width"`
	// PercentileLo is the lower clipping percentile when VOI is percentile.
	PercentileLo *float64 `yaml:"percentile_lo"`
	// PercentileHi is the upper clipping percentile when VOI is percentile.
	PercentileHi *float64 `yaml:"percentile_hi"`
}

// UseFindings reports whether finding-level decisions are on (the default).
func (m *Model) UseFindings() bool { return m.Findings == nil || *m.Findings }

// Verify reports whether the embedder's sha256 is to be checked.
func (m *Model) Verify() bool { return m.VerifyEmbedder == nil || *m.VerifyEmbedder }

// FPRKey is the model file's thresholds key for FPR ("0.01").
func (m *Model) FPRKey() string { return strconv.FormatFloat(m.FPR, 'f', 2, 64) }

func (m *Model) setDefaults() {
	if m.FPR == 0 {
		m.FPR = 0.01
	}
}

func (m *Model) validate(p *problems, path string) {
	if m.Path == "" {
		p.add(path+".path", "required")
	}
	if m.Embedder == "" {
		p.add(path+".embedder", "required")
	}
	if !(m.FPR > 0 && m.FPR < 1) || math.Abs(m.FPR*100-math.Round(m.FPR*100)) > 1e-9 {
		p.add(path+".fpr", "must be a false-positive rate in (0, 1) with two decimals (0.01, 0.05, 0.10), not %v", m.FPR)
	}
	if v := m.SeriesFPR; v != nil && !(*v >= 0 && *v <= 1) {
		p.add(path+".series_fpr", "must be a share of series in [0, 1], not %v", *v)
	}
	if v := m.MinVolumeMM3; v != nil && (!(*v >= 0) || math.IsInf(*v, 0)) {
		p.add(path+".min_volume_mm3", "must be a volume >= 0 (mm3), not %v", *v)
	}
	switch m.VOI {
	case "":
		if m.WindowCenter != nil || m.WindowWidth != nil || m.PercentileLo != nil || m.PercentileHi != nil {
			p.add(path+".voi", "window/percentile settings need voi to be set")
		}
	case "model-window":
		if m.WindowCenter == nil || m.WindowWidth == nil {
			p.add(path+".voi", "model-window needs window_center and window_width")
		} else if !(*m.WindowWidth >= 1) {
			p.add(path+".window_width", "must be >= 1")
		}
	case "header", "robust":
	case "percentile":
		lo, hi := 0.5, 99.5
		if m.PercentileLo != nil {
			lo = *m.PercentileLo
		}
		if m.PercentileHi != nil {
			hi = *m.PercentileHi
		}
		if !(lo >= 0 && lo < hi && hi <= 100) {
			p.add(path+".percentile_lo", "percentiles must satisfy 0 <= lo < hi <= 100 (got %v, %v)", lo, hi)
		}
	default:
		p.add(path+".voi", "must be model-window, header, percentile or robust, not %q", m.VOI)
	}
}
