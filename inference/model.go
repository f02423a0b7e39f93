package inference

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	"anomalynode/inference/findings"
	"anomalynode/internal/atomicfile"
)

// ModelFormatVersion is the version of ModelMeta written by SaveModel. LoadModel
// rejects files with a newer version. Version 2 added the finding calibration
// (ModelMeta.Findings); a version 1 file loads without one.
const ModelFormatVersion = 2

// DefaultTau is the weight below which a mixture component is not a prototype.
const DefaultTau = 1e-6

// metadataKey is the "__metadata__" entry that holds the JSON ModelMeta.
const metadataKey = "anomalynode"

// Tensor names in the safetensors file.
const (
	tensorMeans      = "means"
	tensorVariances  = "variances"
	tensorLogWeights = "log_weights"
)

// maxHeaderLen bounds the JSON header we are willing to read, so a corrupt
// length field cannot make LoadModel allocate gigabytes.
const maxHeaderLen = 16 << 20

// ErrCorruptModel is wrapped by every LoadModel error about the file's content
// (as opposed to I/O errors).
var ErrCorruptModel = errors.New("corrupt model file")

// ErrEmbedderMismatch is returned by VerifyEmbedder when the ONNX file is not the
// one the model was fitted with.
var ErrEmbedderMismatch = errors.New("embedder does not match the model")

// Model is a fitted DPMM: K diagonal Gaussian components in D dimensions plus the
// metadata needed to reproduce its inputs (embedder, preprocessing) and to
// segment with it (thresholds).
type Model struct {
	// K is the number of components (active or not).
	K int
	// D is the embedding dimension.
	D int
	// Means holds the component means, K*D row-major.
	Means []float32
	// Variances holds the diagonal variances, K*D row-major, all > 0.
	Variances []float32
	// LogWeights holds log pi_k, K values; -Inf marks a component of weight 0.
	LogWeights []float32
	// Meta is everything else, stored as JSON in the file's __metadata__.
	Meta ModelMeta
}

// ModelMeta is the JSON metadata of a model file.
type ModelMeta struct {
	// FormatVersion is ModelFormatVersion at writing time.
	FormatVersion int `json:"format_version"`
	// Embedder identifies the backbone the model was fitted with.
	Embedder EmbedderInfo `json:"embedder"`
	// Resolution is the short edge in pixels slices are resized to (448).
	Resolution int `json:"resolution"`
	// PatchSize is the ViT patch size in pixels (14).
	PatchSize int `json:"patch_size"`
	// Preprocessing is the VOI policy used to map pixels to [0,1].
	Preprocessing PreprocessSpec `json:"preprocessing"`
	// Thresholds maps a false-positive rate ("0.01", "0.05", "0.10") to the pixel
	// score threshold calibrated on healthy validation slices.
	Thresholds map[string]float32 `json:"thresholds"`
	// Tau is the weight above which a component is a prototype (1e-6).
	Tau float32 `json:"tau"`
	// Fit records how the model was fitted and how the fit went.
	Fit FitInfo `json:"fit"`
	// Findings maps a false-positive rate (a Thresholds key) to the finding
	// calibration on that pixel threshold; absent from files written before
	// format 2 and from fits validated on .npy embeddings (no geometry).
	Findings map[string]*findings.Calibration `json:"findings,omitempty"`
}

// EmbedderInfo identifies the ONNX backbone.
type EmbedderInfo struct {
	// Name is a human-readable name, e.g. "dinov2-small".
	Name string `json:"name"`
	// SHA256 is the hex sha256 of the ONNX file.
	SHA256 string `json:"sha256"`
	// InputName is the model's input ("pixel_values").
	InputName string `json:"input_name"`
	// OutputName is the model's output ("last_hidden_state").
	OutputName string `json:"output_name"`
	// Registers is the number of register tokens seen in the output (0 or 4).
	Registers int `json:"registers"`
}

// VOI policies (PreprocessSpec.VOI).
const (
	// VOIModelWindow applies the fixed window of PreprocessSpec (e.g. CT liver).
	VOIModelWindow = "model-window"
	// VOIHeader applies the slice's WindowCenter/WindowWidth.
	VOIHeader = "header"
	// VOIPercentile clips each slice to its [lo, hi] percentiles.
	VOIPercentile = "percentile"
	// VOIRobust divides each slice by the median of its above-mean pixels,
	// keeps values up to RobustHeadroom times that, and maps them to [0,1].
	VOIRobust = "robust"
)

// PreprocessSpec is the VOI policy: how modality values become [0,1].
type PreprocessSpec struct {
	// VOI is model-window, header, percentile or robust.
	VOI string `json:"voi"`
	// WindowCenter is the model window's centre (model-window).
	WindowCenter float64 `json:"window_center,omitempty"`
	// WindowWidth is the model window's width (model-window), > 0.
	WindowWidth float64 `json:"window_width,omitempty"`
	// PercentileLo is the lower clipping percentile (percentile; 0.5).
	PercentileLo float64 `json:"percentile_lo,omitempty"`
	// PercentileHi is the upper clipping percentile (percentile; 99.5).
	PercentileHi float64 `json:"percentile_hi,omitempty"`
}

// FitInfo records the fit configuration and its outcome.
type FitInfo struct {
	// Components is K at initialisation (500).
	Components int `json:"components"`
	// Epochs is the number of epochs run (40).
	Epochs int `json:"epochs"`
	// BatchSlices is the number of slices per EM step (12).
	BatchSlices int `json:"batch_slices"`
	// Gamma is the step size (0.2).
	Gamma float64 `json:"gamma"`
	// Schedule is the step-size schedule ("ema" or "exp").
	Schedule string `json:"schedule,omitempty"`
	// Rate is the "exp" schedule's exponent.
	Rate float64 `json:"rate,omitempty"`
	// Reg is the variance regulariser (1e-6).
	Reg float64 `json:"reg"`
	// AlphaInit is the initial concentration (2.0).
	AlphaInit float64 `json:"alpha_init"`
	// AlphaFixed says alpha was not updated.
	AlphaFixed bool `json:"alpha_fixed,omitempty"`
	// Seed seeds the initialisation.
	Seed int64 `json:"seed"`
	// BestEpoch is the epoch whose model was kept (1-based).
	BestEpoch int `json:"best_epoch"`
	// ValLogLikelihood is the best epoch's mean validation log-likelihood.
	ValLogLikelihood float64 `json:"val_log_likelihood"`
	// ActiveComponents is the number of components with pi > Tau.
	ActiveComponents int `json:"active_components"`
	// Alpha is the final concentration.
	Alpha float64 `json:"alpha"`
	// TrainSlices and ValSlices count the slices used.
	TrainSlices int `json:"train_slices,omitempty"`
	// ValSlices counts the healthy validation slices.
	ValSlices int `json:"val_slices,omitempty"`
	// TrainPatches counts the patch embeddings fitted on.
	TrainPatches int64 `json:"train_patches,omitempty"`
}

// FPRKey formats a false-positive rate as a Thresholds key ("0.01", "0.05", "0.10").
func FPRKey(fpr float64) string { return strconv.FormatFloat(fpr, 'f', 2, 64) }

// Threshold returns the calibrated pixel threshold for a false-positive rate.
func (m *Model) Threshold(fpr float64) (float32, error) {
	t, ok := m.Meta.Thresholds[FPRKey(fpr)]
	if !ok {
		return 0, fmt.Errorf("inference: model has no threshold for FPR %s", FPRKey(fpr))
	}
	return t, nil
}

// FindingParams returns the finding limits for the pixel threshold of
// pixelFPR, derived from the model's finding calibration (so a per-model
// override needs no validation data): seriesFPR and minVolumeMM3 override the
// limits chosen at fit time when not nil. ok is false when the model file has
// no calibration for pixelFPR (written before format 2, or validated without
// geometry): the caller then masks per pixel.
func (m *Model) FindingParams(pixelFPR float64, seriesFPR, minVolumeMM3 *float64) (p findings.Params, ok bool, err error) {
	c := m.Meta.Findings[FPRKey(pixelFPR)]
	if c == nil {
		return findings.Params{}, false, nil
	}
	sf, mv := c.SeriesFPR, c.MinVolumeMM3
	if seriesFPR != nil {
		sf = *seriesFPR
	}
	if minVolumeMM3 != nil {
		mv = *minVolumeMM3
	}
	p, err = c.Params(sf, mv)
	if err != nil {
		return findings.Params{}, false, fmt.Errorf("inference: finding limits: %w", err)
	}
	return p, true, nil
}

// Prototypes returns a copy of the means of the components with
// exp(LogWeights[k]) > tau, row-major [len(idx), D], and their indices.
func (m *Model) Prototypes(tau float32) (protos []float32, idx []int) {
	lt := math.Log(float64(tau))
	for k := 0; k < m.K; k++ {
		if float64(m.LogWeights[k]) > lt {
			idx = append(idx, k)
			protos = append(protos, m.Means[k*m.D:(k+1)*m.D]...)
		}
	}
	return protos, idx
}

// ActiveComponents counts the components with weight > tau.
func (m *Model) ActiveComponents(tau float32) int {
	_, idx := m.Prototypes(tau)
	return len(idx)
}

// FileSHA256 returns the hex sha256 of a file (used for the embedder identity).
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("inference: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("inference: hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// VerifyEmbedder checks that the ONNX file at path is the embedder the model was
// fitted with (by sha256), returning ErrEmbedderMismatch if not.
func (m *Model) VerifyEmbedder(path string) error {
	sum, err := FileSHA256(path)
	if err != nil {
		return err
	}
	if m.Meta.Embedder.SHA256 == "" {
		return fmt.Errorf("inference: %w: model records no embedder sha256", ErrEmbedderMismatch)
	}
	if sum != m.Meta.Embedder.SHA256 {
		return fmt.Errorf("inference: %w: %s has sha256 %s, model expects %s",
			ErrEmbedderMismatch, filepath.Base(path), sum, m.Meta.Embedder.SHA256)
	}
	return nil
}

// Validate checks shapes, values and metadata; LoadModel and SaveModel call it.
func (m *Model) Validate() error {
	if m.K < 1 || m.D < 1 {
		return fmt.Errorf("K=%d D=%d: both must be >= 1", m.K, m.D)
	}
	if len(m.Means) != m.K*m.D {
		return fmt.Errorf("means has %d values, want K*D = %d", len(m.Means), m.K*m.D)
	}
	if len(m.Variances) != m.K*m.D {
		return fmt.Errorf("variances has %d values, want K*D = %d", len(m.Variances), m.K*m.D)
	}
	if len(m.LogWeights) != m.K {
		return fmt.Errorf("log_weights has %d values, want K = %d", len(m.LogWeights), m.K)
	}
	for i, v := range m.Means {
		if !finite32(v) {
			return fmt.Errorf("means[%d,%d] is %v", i/m.D, i%m.D, v)
		}
	}
	for i, v := range m.Variances {
		if !finite32(v) || v <= 0 {
			return fmt.Errorf("variances[%d,%d] is %v, want finite > 0", i/m.D, i%m.D, v)
		}
	}
	active := 0
	for k, v := range m.LogWeights {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 1) || v > 1e-3 {
			return fmt.Errorf("log_weights[%d] is %v, want <= 0 or -Inf", k, v)
		}
		if !math.IsInf(float64(v), -1) {
			active++
		}
	}
	if active == 0 {
		return errors.New("every component has weight 0")
	}
	return m.Meta.validate(m.D)
}

func (mm *ModelMeta) validate(d int) error {
	if mm.FormatVersion < 1 || mm.FormatVersion > ModelFormatVersion {
		return fmt.Errorf("format_version %d not supported (this build reads 1..%d)", mm.FormatVersion, ModelFormatVersion)
	}
	if mm.Resolution < 1 || mm.PatchSize < 1 || mm.Resolution < mm.PatchSize {
		return fmt.Errorf("resolution %d / patch_size %d invalid", mm.Resolution, mm.PatchSize)
	}
	if !(mm.Tau > 0 && mm.Tau < 1) {
		return fmt.Errorf("tau %v must be in (0,1)", mm.Tau)
	}
	if err := mm.Preprocessing.Validate(); err != nil {
		return err
	}
	if s := mm.Embedder.SHA256; s != "" {
		if b, err := hex.DecodeString(s); err != nil || len(b) != sha256.Size {
			return fmt.Errorf("embedder.sha256 %q is not a hex sha256", s)
		}
	}
	type th struct {
		fpr float64
		t   float32
	}
	var ts []th
	for k, t := range mm.Thresholds {
		f, err := strconv.ParseFloat(k, 64)
		if err != nil || !(f > 0 && f < 1) {
			return fmt.Errorf("thresholds key %q is not a false-positive rate in (0,1)", k)
		}
		if !finite32(t) {
			return fmt.Errorf("threshold for FPR %s is %v", k, t)
		}
		ts = append(ts, th{f, t})
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].fpr < ts[j].fpr })
	for i := 1; i < len(ts); i++ {
		if ts[i].t > ts[i-1].t {
			return fmt.Errorf("thresholds not sorted: FPR %g -> %v but FPR %g -> %v (a higher FPR needs a lower threshold)",
				ts[i-1].fpr, ts[i-1].t, ts[i].fpr, ts[i].t)
		}
	}
	return mm.validateFindings()
}

// validateFindings checks that each finding calibration belongs to a pixel
// threshold of the file and is itself sound.
func (mm *ModelMeta) validateFindings() error {
	for k, c := range mm.Findings {
		t, ok := mm.Thresholds[k]
		if !ok || c == nil {
			return fmt.Errorf("findings key %q has no pixel threshold (or no calibration)", k)
		}
		if err := c.Validate(); err != nil {
			return fmt.Errorf("findings %s: %w", k, err)
		}
		if FPRKey(c.PixelFPR) != k || c.PixelThreshold != t {
			return fmt.Errorf("findings %s: calibrated on pixel FPR %v threshold %v, the file's threshold is %v", k, c.PixelFPR, c.PixelThreshold, t)
		}
	}
	return nil
}

// Validate checks a VOI policy.
func (p *PreprocessSpec) Validate() error {
	switch p.VOI {
	case VOIModelWindow:
		if !(p.WindowWidth > 0) || math.IsInf(p.WindowWidth, 0) || math.IsNaN(p.WindowCenter) || math.IsInf(p.WindowCenter, 0) {
			return fmt.Errorf("preprocessing: model-window needs window_width > 0 and a finite centre (got %v/%v)", p.WindowCenter, p.WindowWidth)
		}
	case VOIHeader, VOIRobust:
	case VOIPercentile:
		if !(p.PercentileLo >= 0 && p.PercentileLo < p.PercentileHi && p.PercentileHi <= 100) {
			return fmt.Errorf("preprocessing: percentile needs 0 <= lo < hi <= 100 (got %v, %v)", p.PercentileLo, p.PercentileHi)
		}
	default:
		return fmt.Errorf("preprocessing: voi %q must be %s, %s, %s or %s", p.VOI, VOIModelWindow, VOIHeader, VOIPercentile, VOIRobust)
	}
	return nil
}

func finite32(v float32) bool {
	f := float64(v)
	return !math.IsNaN(f) && !math.IsInf(f, 0)
}

// stHeaderEntry is one tensor's entry in a safetensors header.
type stHeaderEntry struct {
	Dtype       string   `json:"dtype"`
	Shape       []int    `json:"shape"`
	DataOffsets [2]int64 `json:"data_offsets"`
}

// SaveModel writes m to path in the safetensors format (written here: the format
// is an 8-byte little-endian header length, a JSON header and raw little-endian
// tensors, too small to justify a dependency). It writes to a temporary file and
// renames it, so a crash never leaves a half-written model.
func SaveModel(path string, m *Model) error {
	if m.Meta.FormatVersion == 0 {
		m.Meta.FormatVersion = ModelFormatVersion
	}
	if err := m.Validate(); err != nil {
		return fmt.Errorf("inference: save model: %w", err)
	}
	var buf bytes.Buffer
	if err := EncodeModel(&buf, m); err != nil {
		return err
	}
	if err := atomicfile.Write(path, buf.Bytes(), true); err != nil {
		return fmt.Errorf("inference: save model: %w", err)
	}
	return nil
}

// EncodeModel writes m in the safetensors format to w.
func EncodeModel(w io.Writer, m *Model) error {
	meta, err := json.Marshal(m.Meta)
	if err != nil {
		return fmt.Errorf("inference: encode model metadata: %w", err)
	}
	tensors := []struct {
		name  string
		shape []int
		data  []float32
	}{
		{tensorMeans, []int{m.K, m.D}, m.Means},
		{tensorVariances, []int{m.K, m.D}, m.Variances},
		{tensorLogWeights, []int{m.K}, m.LogWeights},
	}
	header := map[string]any{"__metadata__": map[string]string{metadataKey: string(meta)}}
	var off int64
	for _, t := range tensors {
		n := int64(len(t.data)) * 4
		header[t.name] = stHeaderEntry{Dtype: "F32", Shape: t.shape, DataOffsets: [2]int64{off, off + n}}
		off += n
	}
	hj, err := json.Marshal(header)
	if err != nil {
		return fmt.Errorf("inference: encode model header: %w", err)
	}
	// Pad the header with spaces so the tensor data is 8-byte aligned, as the
	// reference implementation does.
	for len(hj)%8 != 0 {
		hj = append(hj, ' ')
	}
	var lenBuf [8]byte
	binary.LittleEndian.PutUint64(lenBuf[:], uint64(len(hj)))
	bw := &errWriter{w: w}
	bw.write(lenBuf[:])
	bw.write(hj)
	for _, t := range tensors {
		b := make([]byte, 4*len(t.data))
		for i, v := range t.data {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
		}
		bw.write(b)
	}
	if bw.err != nil {
		return fmt.Errorf("inference: encode model: %w", bw.err)
	}
	return nil
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) write(b []byte) {
	if e.err == nil {
		_, e.err = e.w.Write(b)
	}
}

// LoadModel reads and validates a model file written by SaveModel. Content
// errors wrap ErrCorruptModel.
func LoadModel(path string) (*Model, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("inference: load model: %w", err)
	}
	m, err := DecodeModel(data)
	if err != nil {
		return nil, fmt.Errorf("inference: load model %s: %w", filepath.Base(path), err)
	}
	return m, nil
}

// DecodeModel parses and validates a model file's bytes.
func DecodeModel(data []byte) (*Model, error) {
	corrupt := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrCorruptModel, fmt.Sprintf(format, args...))
	}
	if len(data) < 8 {
		return nil, corrupt("%d bytes: too short for a safetensors header", len(data))
	}
	hl := binary.LittleEndian.Uint64(data[:8])
	if hl < 2 || hl > maxHeaderLen || hl > uint64(len(data)-8) {
		return nil, corrupt("header length %d does not fit a %d-byte file", hl, len(data))
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data[8:8+hl], &raw); err != nil {
		return nil, corrupt("header JSON: %v", err)
	}
	body := data[8+hl:]
	var metaMap map[string]string
	if mj, ok := raw["__metadata__"]; ok {
		if err := json.Unmarshal(mj, &metaMap); err != nil {
			return nil, corrupt("__metadata__: %v", err)
		}
	}
	metaJSON, ok := metaMap[metadataKey]
	if !ok {
		return nil, corrupt("no %q entry in __metadata__ (not an anomalynode model)", metadataKey)
	}
	m := &Model{}
	dec := json.NewDecoder(bytes.NewReader([]byte(metaJSON)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m.Meta); err != nil {
		return nil, corrupt("metadata JSON: %v", err)
	}
	entries := map[string]stHeaderEntry{}
	for name, rm := range raw {
		if name == "__metadata__" {
			continue
		}
		var e stHeaderEntry
		if err := json.Unmarshal(rm, &e); err != nil {
			return nil, corrupt("tensor %q: %v", name, err)
		}
		entries[name] = e
	}
	// The data offsets must tile the body exactly, without gaps or overlaps.
	type span struct {
		name   string
		lo, hi int64
	}
	var spans []span
	for name, e := range entries {
		spans = append(spans, span{name, e.DataOffsets[0], e.DataOffsets[1]})
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].lo < spans[j].lo })
	var pos int64
	for _, s := range spans {
		if s.lo != pos || s.hi < s.lo {
			return nil, corrupt("tensor %q data_offsets [%d,%d] do not follow the previous tensor (at %d)", s.name, s.lo, s.hi, pos)
		}
		pos = s.hi
	}
	if pos != int64(len(body)) {
		return nil, corrupt("tensors cover %d bytes but the file holds %d after the header", pos, len(body))
	}
	get := func(name string, rank int) ([]float32, []int, error) {
		e, ok := entries[name]
		if !ok {
			return nil, nil, corrupt("tensor %q missing", name)
		}
		if e.Dtype != "F32" {
			return nil, nil, corrupt("tensor %q has dtype %s, want F32", name, e.Dtype)
		}
		if len(e.Shape) != rank {
			return nil, nil, corrupt("tensor %q has shape %v, want rank %d", name, e.Shape, rank)
		}
		n := int64(1)
		for _, s := range e.Shape {
			// Bound the product by the bytes present so it cannot overflow.
			if s < 0 || (s > 0 && n > int64(len(body))/int64(s)) {
				return nil, nil, corrupt("tensor %q has shape %v, more than the file holds", name, e.Shape)
			}
			n *= int64(s)
		}
		if n*4 != e.DataOffsets[1]-e.DataOffsets[0] {
			return nil, nil, corrupt("tensor %q shape %v needs %d bytes, offsets give %d", name, e.Shape, n*4, e.DataOffsets[1]-e.DataOffsets[0])
		}
		b := body[e.DataOffsets[0]:e.DataOffsets[1]]
		out := make([]float32, n)
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
		return out, e.Shape, nil
	}
	var shape []int
	var err error
	if m.Means, shape, err = get(tensorMeans, 2); err != nil {
		return nil, err
	}
	m.K, m.D = shape[0], shape[1]
	if m.Variances, shape, err = get(tensorVariances, 2); err != nil {
		return nil, err
	}
	if shape[0] != m.K || shape[1] != m.D {
		return nil, corrupt("variances shape %v differs from means [%d %d]", shape, m.K, m.D)
	}
	if m.LogWeights, shape, err = get(tensorLogWeights, 1); err != nil {
		return nil, err
	}
	if shape[0] != m.K {
		return nil, corrupt("log_weights shape %v, want [%d]", shape, m.K)
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorruptModel, err)
	}
	return m, nil
}
