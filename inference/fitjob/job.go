package fitjob

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"anomalynode/inference"
	"anomalynode/inference/dpmm"
	"anomalynode/inference/findings"
	"anomalynode/inference/internal/sniff"
	"anomalynode/internal/npy"
)

// EmbeddedSlice is one slice's patch embeddings and the geometry that maps its
// patch grid back to the source pixels.
type EmbeddedSlice struct {
	// Patches holds the unit-length patch tokens, Geometry.Patches() rows of D.
	Patches []float32
	// D is the embedding dimension.
	D int
	// Geometry is the slice's resize/crop geometry.
	Geometry inference.Geometry
	// Series is the source's SeriesInstanceUID ("" when unknown).
	Series string
	// Plane is the source slice's plane in patient coordinates (nil when the
	// header lacks it); finding calibration needs it.
	Plane *findings.Plane
}

// SliceEmbedder embeds every frame of a DICOM file (the inference package's
// engine behind a small seam, so fitting can be tested without a model).
type SliceEmbedder interface {
	// EmbedFile returns one EmbeddedSlice per frame of the DICOM file at path.
	EmbedFile(ctx context.Context, path string) ([]EmbeddedSlice, error)
	// Identity names the embedder and preprocessing; it keys the cache.
	Identity() string
}

// LoadOptions controls how inputs become embeddings.
type LoadOptions struct {
	// Embedder embeds DICOM inputs; nil makes a DICOM input an error.
	Embedder SliceEmbedder
	// CacheDir, when set, stores each DICOM file's embeddings as .npy (plus a
	// .json geometry sidecar) on first use and reads them afterwards.
	CacheDir string
	// PatchesPerSlice groups the rows of a 2-D [N, D] .npy array into slices
	// (1024, a 32 x 32 grid); a 3-D [S, P, D] array gives its slices directly.
	PatchesPerSlice int
}

// Loaded is a set of inputs turned into embeddings.
type Loaded struct {
	// Data holds the slices' embeddings.
	Data *dpmm.Data
	// Geometries has one entry per slice: the source geometry of slices embedded
	// from DICOM (or read from a cache entry with its .json sidecar), the zero
	// Geometry for other .npy slices.
	Geometries []inference.Geometry
	// Series and Planes have one entry per slice: its SeriesInstanceUID and
	// plane, known for slices embedded from DICOM ("" and nil otherwise).
	Series []string
	Planes []*findings.Plane
	// DICOMFiles, CacheHits and NPYFiles count what was read.
	DICOMFiles, CacheHits, NPYFiles int
	// SkippedMasks counts the integer .npy files (label masks, such as
	// synth --labels writes) found in input folders and left out.
	SkippedMasks int
}

// HasGeometry reports whether every slice came from DICOM (pixel maps possible).
func (l *Loaded) HasGeometry() bool {
	for _, g := range l.Geometries {
		if g.SrcRows == 0 {
			return false
		}
	}
	return len(l.Geometries) > 0
}

// HasPlanes reports whether any slice knows its series and plane, so
// findings can be calibrated on its series.
func (l *Loaded) HasPlanes() bool {
	if n := l.Data.Slices(); len(l.Planes) != n || len(l.Series) != n || len(l.Geometries) != n {
		return false
	}
	for i, p := range l.Planes {
		if p != nil && l.Series[i] != "" {
			return l.HasGeometry()
		}
	}
	return false
}

// ErrNoInputs is returned when the inputs hold no slices.
var ErrNoInputs = errors.New("fitjob: no embeddings in the inputs")

// skipExt lists extensions in input folders that are never DICOM.
var skipExt = map[string]bool{".json": true, ".png": true, ".txt": true, ".md": true, ".csv": true, ".jpg": true, ".yaml": true, ".yml": true, ".onnx": true, ".tmp": true}

// Load reads .npy files and DICOM files (directly or in folders, recursively,
// in path order) into embeddings.
func Load(ctx context.Context, paths []string, opt LoadOptions) (*Loaded, error) {
	if opt.PatchesPerSlice == 0 {
		opt.PatchesPerSlice = 1024
	}
	var files []string
	walked := map[string]bool{} // files found in folders, not named
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("fitjob: input: %w", err)
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		var found []string
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() || skipExt[strings.ToLower(filepath.Ext(path))] || strings.HasPrefix(d.Name(), ".") {
				return nil
			}
			found = append(found, path)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("fitjob: input: %w", err)
		}
		sort.Strings(found)
		for _, f := range found {
			walked[f] = true
		}
		files = append(files, found...)
	}
	l := &Loaded{Data: &dpmm.Data{}}
	add := func(rows []float32, n int, e EmbeddedSlice) error {
		if l.Data.D == 0 {
			l.Data.D = e.D
		}
		if e.D != l.Data.D {
			return fmt.Errorf("fitjob: embedding dimension %d differs from the first input's %d", e.D, l.Data.D)
		}
		l.Data.Append(rows, n)
		l.Geometries = append(l.Geometries, e.Geometry)
		l.Series = append(l.Series, e.Series)
		l.Planes = append(l.Planes, e.Plane)
		return nil
	}
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if strings.EqualFold(filepath.Ext(f), ".npy") {
			err := loadNPY(f, opt.PatchesPerSlice, cacheSidecar(f), add)
			if errors.Is(err, errMaskNPY) && walked[f] {
				// A label mask beside the images (synth --labels writes
				// labels/IMnnnn.npy next to the DICOM files): not an input.
				l.SkippedMasks++
				continue
			}
			if err != nil {
				return nil, err
			}
			l.NPYFiles++
			continue
		}
		if !sniff.IsDICOM(f) {
			continue
		}
		if opt.Embedder == nil {
			return nil, fmt.Errorf("fitjob: %s is DICOM but no embedder is configured", f)
		}
		slices, hit, err := embedCached(ctx, f, opt)
		if err != nil {
			return nil, err
		}
		l.DICOMFiles++
		if hit {
			l.CacheHits++
		}
		for _, s := range slices {
			if err := add(s.Patches, len(s.Patches)/s.D, s); err != nil {
				return nil, err
			}
		}
	}
	if l.Data.Slices() == 0 {
		return nil, fmt.Errorf("%w: %s", ErrNoInputs, strings.Join(paths, ", "))
	}
	return l, nil
}

// cacheSidecar reads the .json sidecar a cache entry has beside its .npy
// (nil when there is none), so cached embeddings keep their pixel geometry,
// series and planes.
func cacheSidecar(npyPath string) *cacheMeta {
	b, err := os.ReadFile(strings.TrimSuffix(npyPath, filepath.Ext(npyPath)) + ".json")
	if err != nil {
		return nil
	}
	var meta cacheMeta
	if json.Unmarshal(b, &meta) != nil {
		return nil
	}
	return &meta
}

// errMaskNPY marks an integer .npy: a label mask, not embeddings.
var errMaskNPY = errors.New("an integer .npy is a label mask, not embeddings")

func loadNPY(path string, perSlice int, meta *cacheMeta, add func([]float32, int, EmbeddedSlice) error) error {
	a, err := npy.Read(path)
	if err != nil {
		return fmt.Errorf("fitjob: %w", err)
	}
	if a.F32 == nil {
		return fmt.Errorf("fitjob: %s: dtype %s: %w; inputs are DICOM files and float .npy embeddings ([N, D] or [slices, patches, D]), and label masks belong to eval --labels", path, a.Dtype, errMaskNPY)
	}
	var slices, rows, d int
	switch len(a.Shape) {
	case 2:
		n := a.Shape[0]
		d = a.Shape[1]
		for lo := 0; lo < n; lo += perSlice {
			r := min(perSlice, n-lo)
			if err := add(a.F32[lo*d:(lo+r)*d], r, EmbeddedSlice{D: d}); err != nil {
				return fmt.Errorf("fitjob: %s: %w", path, err)
			}
		}
		return nil
	case 3:
		slices, rows, d = a.Shape[0], a.Shape[1], a.Shape[2]
	default:
		return fmt.Errorf("fitjob: %s: shape %v, want [N, D] or [slices, patches, D]", path, a.Shape)
	}
	// A cache entry's sidecar gives each slice's geometry when it fits.
	usable := meta != nil && len(meta.Geometries) == slices
	for i := 0; usable && i < slices; i++ {
		usable = meta.Geometries[i].Patches() == rows
	}
	for s := 0; s < slices; s++ {
		e := EmbeddedSlice{D: d}
		if usable {
			e = meta.slice(s, d)
		}
		if err := add(a.F32[s*rows*d:(s+1)*rows*d], rows, e); err != nil {
			return fmt.Errorf("fitjob: %s: %w", path, err)
		}
	}
	return nil
}

// cacheKey names a DICOM file's cache entry: its absolute path, size and
// modification time, and the embedder identity.
func cacheKey(path string, e SliceEmbedder) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	st, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	h := sha256.Sum256([]byte(fmt.Sprintf("%s|%d|%d|%s", abs, st.Size(), st.ModTime().UnixNano(), e.Identity())))
	return hex.EncodeToString(h[:16]), nil
}

// cacheMeta is the .json sidecar of a cached file: per frame its geometry,
// and the series and plane (older entries lack them and are embedded again).
type cacheMeta struct {
	Source     string               `json:"source"`
	Geometries []inference.Geometry `json:"geometries"`
	Series     string               `json:"series,omitempty"`
	Planes     []*findings.Plane    `json:"planes"`
}

// slice returns frame i's metadata as an EmbeddedSlice without patches.
func (m *cacheMeta) slice(i, d int) EmbeddedSlice {
	e := EmbeddedSlice{D: d, Geometry: m.Geometries[i], Series: m.Series}
	if i < len(m.Planes) {
		e.Plane = m.Planes[i]
	}
	return e
}

func embedCached(ctx context.Context, path string, opt LoadOptions) ([]EmbeddedSlice, bool, error) {
	if opt.CacheDir == "" {
		s, err := opt.Embedder.EmbedFile(ctx, path)
		if err != nil {
			return nil, false, fmt.Errorf("fitjob: embed %s: %w", path, err)
		}
		return s, false, nil
	}
	key, err := cacheKey(path, opt.Embedder)
	if err != nil {
		return nil, false, fmt.Errorf("fitjob: cache: %w", err)
	}
	npyPath := filepath.Join(opt.CacheDir, key+".npy")
	jsonPath := filepath.Join(opt.CacheDir, key+".json")
	if mb, err := os.ReadFile(jsonPath); err == nil {
		var meta cacheMeta
		a, err2 := npy.Read(npyPath)
		if err := json.Unmarshal(mb, &meta); err == nil && err2 == nil && len(a.Shape) == 3 && a.Shape[0] == len(meta.Geometries) && len(meta.Planes) == len(meta.Geometries) {
			out := make([]EmbeddedSlice, a.Shape[0])
			p, d := a.Shape[1], a.Shape[2]
			for i := range out {
				out[i] = meta.slice(i, d)
				out[i].Patches = a.F32[i*p*d : (i+1)*p*d]
			}
			return out, true, nil
		}
	}
	s, err := opt.Embedder.EmbedFile(ctx, path)
	if err != nil {
		return nil, false, fmt.Errorf("fitjob: embed %s: %w", path, err)
	}
	if len(s) == 0 {
		return s, false, nil
	}
	// Frames of one file share a geometry and patch count; if not, skip caching.
	p, d := len(s[0].Patches)/s[0].D, s[0].D
	meta := cacheMeta{Source: path, Series: s[0].Series}
	var all []float32
	for _, e := range s {
		if e.D != d || len(e.Patches) != p*d || e.Series != meta.Series {
			return s, false, nil
		}
		all = append(all, e.Patches...)
		meta.Geometries = append(meta.Geometries, e.Geometry)
		meta.Planes = append(meta.Planes, e.Plane)
	}
	if err := os.MkdirAll(opt.CacheDir, 0o755); err != nil {
		return nil, false, fmt.Errorf("fitjob: cache: %w", err)
	}
	if err := npy.Write(npyPath, &npy.Array{Shape: []int{len(s), p, d}, Dtype: npy.DtypeFloat32, F32: all}); err != nil {
		return nil, false, fmt.Errorf("fitjob: cache: %w", err)
	}
	mb, _ := json.Marshal(meta)
	if err := os.WriteFile(jsonPath, mb, 0o644); err != nil {
		return nil, false, fmt.Errorf("fitjob: cache: %w", err)
	}
	return s, false, nil
}

// JobOptions describes one `anomalynode fit` run.
type JobOptions struct {
	// Config holds the EM hyper-parameters.
	Config dpmm.Config
	// Fit holds the schedule; Fit.Checkpoint defaults to Out + ".ckpt".
	Fit dpmm.FitOptions
	// Out is the model file to write.
	Out string
	// Meta is the model metadata the caller knows (embedder, preprocessing,
	// resolution, patch size); the fit and calibration fields are filled in.
	Meta inference.ModelMeta
	// FPRs are the calibration false-positive rates (dpmm.DefaultFPRs).
	FPRs []float64
	// SeriesFPR and MinVolumeMM3 are the finding limits to calibrate
	// (nil: findings.DefaultSeriesFPR and findings.DefaultMinVolumeMM3).
	SeriesFPR, MinVolumeMM3 *float64
}

// JobResult is what a fit produced.
type JobResult struct {
	// Model is the written model.
	Model *inference.Model
	// Fit is the EM result with its history.
	Fit *dpmm.Result
	// CurvePath is the training-curve PNG beside the model.
	CurvePath string
	// HistoryPath is the per-epoch JSON beside the model.
	HistoryPath string
	// CalibrationUnit is "pixel" (validation slices from DICOM, scores mapped
	// back to source pixels) or "patch" (validation .npy embeddings).
	CalibrationUnit string
	// CalibrationScores counts the scores the thresholds were taken from.
	CalibrationScores int
	// Findings is the finding calibration, as stored in the model (nil when
	// the validation slices lack series and plane geometry).
	Findings *FindingCalibration
}

// RunJob fits, calibrates on the validation slices and writes the model, its
// training curve and history. The checkpoint is removed once the model is saved.
func RunJob(ctx context.Context, train, val *Loaded, opt JobOptions) (*JobResult, error) {
	if opt.Fit.Checkpoint == "" {
		opt.Fit.Checkpoint = opt.Out + ".ckpt"
	}
	if len(opt.FPRs) == 0 {
		opt.FPRs = dpmm.DefaultFPRs
	}
	cfg := opt.Config.Defaults()
	res, err := dpmm.Fit(ctx, cfg, train.Data, val.Data, opt.Fit)
	if err != nil {
		return nil, err
	}
	best := res.Best
	model := &inference.Model{K: best.K, D: best.D, Meta: opt.Meta}
	model.Means, model.Variances, model.LogWeights = best.Tensors()
	model.Meta.FormatVersion = inference.ModelFormatVersion
	model.Meta.Tau = float32(cfg.Tau)
	if model.Meta.Resolution == 0 {
		model.Meta.Resolution = inference.DefaultResolution
	}
	if model.Meta.PatchSize == 0 {
		model.Meta.PatchSize = inference.DefaultPatchSize
	}
	if model.Meta.Preprocessing.VOI == "" {
		// .npy inputs carry no VOI policy; record the MR default.
		model.Meta.Preprocessing = inference.DefaultPreprocessing()
	}
	fo := opt.Fit
	if fo.Epochs == 0 {
		fo.Epochs = 40
	}
	if fo.BatchSlices == 0 {
		fo.BatchSlices = 12
	}
	bh := res.History[res.BestEpoch-1]
	model.Meta.Fit = inference.FitInfo{Components: cfg.K, Epochs: fo.Epochs, BatchSlices: fo.BatchSlices,
		Gamma: cfg.Gamma, Schedule: cfg.Schedule, Reg: cfg.Reg, AlphaInit: cfg.Alpha, AlphaFixed: cfg.AlphaFixed,
		Seed: cfg.Seed, BestEpoch: res.BestEpoch, ValLogLikelihood: bh.ValLogLikelihood,
		ActiveComponents: best.Active(cfg.Tau), Alpha: best.Alpha, TrainSlices: train.Data.Slices(),
		ValSlices: val.Data.Slices(), TrainPatches: int64(train.Data.Rows())}
	if cfg.Schedule == dpmm.ScheduleExp {
		model.Meta.Fit.Rate = cfg.Rate
	}

	unit, count, ths, err := Calibrate(model, val, opt.FPRs)
	if err != nil {
		return nil, err
	}
	model.Meta.Thresholds = map[string]float32{}
	for i, f := range opt.FPRs {
		model.Meta.Thresholds[inference.FPRKey(f)] = ths[i]
	}
	seriesFPR, minVolume := findings.DefaultSeriesFPR, float64(findings.DefaultMinVolumeMM3)
	if opt.SeriesFPR != nil {
		seriesFPR = *opt.SeriesFPR
	}
	if opt.MinVolumeMM3 != nil {
		minVolume = *opt.MinVolumeMM3
	}
	fc, err := CalibrateFindings(model, val, opt.FPRs, ths, seriesFPR, minVolume)
	if err != nil {
		return nil, err
	}
	model.Meta.Findings = fc.ByFPR
	if err := inference.SaveModel(opt.Out, model); err != nil {
		return nil, err
	}
	base := strings.TrimSuffix(opt.Out, filepath.Ext(opt.Out))
	jr := &JobResult{Model: model, Fit: res, CurvePath: base + ".training.png", HistoryPath: base + ".history.json",
		CalibrationUnit: unit, CalibrationScores: count, Findings: fc}
	if err := SaveTrainingCurve(jr.CurvePath, res.History); err != nil {
		return nil, err
	}
	var hb bytes.Buffer
	enc := json.NewEncoder(&hb)
	enc.SetIndent("", "  ")
	if err := enc.Encode(struct {
		BestEpoch int               `json:"best_epoch"`
		Epochs    []dpmm.EpochStats `json:"epochs"`
	}{res.BestEpoch, res.History}); err != nil {
		return nil, fmt.Errorf("fitjob: history: %w", err)
	}
	if err := os.WriteFile(jr.HistoryPath, hb.Bytes(), 0o644); err != nil {
		return nil, fmt.Errorf("fitjob: history: %w", err)
	}
	if err := os.Remove(opt.Fit.Checkpoint); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("fitjob: remove checkpoint: %w", err)
	}
	return jr, nil
}

// Calibrate scores the validation slices with the model's DPMM scorer (the one
// the node uses) and returns the thresholds for fprs. Slices embedded from DICOM
// are mapped back to their source pixels (unit "pixel"); when any validation
// slice came from .npy, the patch scores themselves are used (unit "patch").
func Calibrate(model *inference.Model, val *Loaded, fprs []float64) (unit string, count int, ths []float32, err error) {
	sc, err := inference.NewDPMMScorer(model)
	if err != nil {
		return "", 0, nil, err
	}
	return CalibrateScorer(sc, val, fprs)
}

// CalibrateScorer is Calibrate for any scorer (the kNN and coreset baselines
// get their own thresholds this way).
func CalibrateScorer(sc inference.Scorer, val *Loaded, fprs []float64) (unit string, count int, ths []float32, err error) {
	pixel := val.HasGeometry()
	unit = "patch"
	if pixel {
		unit = "pixel"
	}
	var cal dpmm.Calibrator
	for i := 0; i < val.Data.Slices(); i++ {
		scores, err := sliceScores(sc, val, i, pixel)
		if err != nil {
			return "", 0, nil, err
		}
		cal.Add(scores)
	}
	ths, err = cal.Thresholds(fprs)
	if err != nil {
		return "", 0, nil, err
	}
	for _, t := range ths {
		if math.IsNaN(float64(t)) {
			return "", 0, nil, errors.New("fitjob: calibrate: NaN threshold")
		}
	}
	return unit, cal.Count(), ths, nil
}

// sliceScores scores validation slice i: its patch scores, or with pixel its
// pixel score map (patch scores upsampled onto the source slice).
func sliceScores(sc inference.Scorer, val *Loaded, i int, pixel bool) ([]float32, error) {
	d := val.Data.D
	lo, hi := val.Data.Offsets[i], val.Data.Offsets[i+1]
	n := hi - lo
	scores := make([]float32, n)
	sc.Score(val.Data.X[lo*d:hi*d], n, scores)
	if !pixel {
		return scores, nil
	}
	g := val.Geometries[i]
	if g.Patches() != n {
		return nil, fmt.Errorf("fitjob: calibrate: slice %d has %d patches, geometry %d", i, n, g.Patches())
	}
	pix := make([]float32, g.SrcRows*g.SrcCols)
	inference.Upsample(scores, g, pix)
	return pix, nil
}

// FindingCalibration is the outcome of CalibrateFindings.
type FindingCalibration struct {
	// ByFPR maps a thresholds key to its calibration (the model's
	// Meta.Findings); nil when there was nothing to calibrate on.
	ByFPR map[string]*findings.Calibration
	// Series counts the healthy validation series calibrated on.
	Series int
	// Skipped lists the validation series left out, with the reason (a
	// series whose slices do not form one stack).
	Skipped []string
	// Warning says why there is no calibration ("" when there is one).
	Warning string
}

// CalibrateFindings chooses the finding limits on the healthy validation
// series, for the pixel threshold of each false-positive rate (thresholds[i]
// belongs to fprs[i]): see findings.Calibrate. It needs the validation
// slices' series and planes (slices embedded from DICOM): a series with a
// slice without them is left out (Skipped), and with none left it returns no
// calibration and a Warning, and the node masks per pixel.
func CalibrateFindings(model *inference.Model, val *Loaded, fprs []float64, thresholds []float32, seriesFPR, minVolumeMM3 float64) (*FindingCalibration, error) {
	sc, err := inference.NewDPMMScorer(model)
	if err != nil {
		return nil, err
	}
	return CalibrateFindingsScorer(sc, val, fprs, thresholds, seriesFPR, minVolumeMM3)
}

// CalibrateFindingsScorer is CalibrateFindings for any scorer (eval
// calibrates the kNN and coreset baselines' finding limits this way).
func CalibrateFindingsScorer(sc inference.Scorer, val *Loaded, fprs []float64, thresholds []float32, seriesFPR, minVolumeMM3 float64) (*FindingCalibration, error) {
	fc := &FindingCalibration{}
	if !val.HasPlanes() {
		fc.Warning = "the validation slices have no series and plane geometry (.npy embeddings, or DICOM without ImagePositionPatient/ImageOrientationPatient/PixelSpacing): no finding calibration; the node will mask per pixel"
		return fc, nil
	}
	bySeries := map[string][]int{}
	var uids []string
	for i, uid := range val.Series {
		if bySeries[uid] == nil {
			uids = append(uids, uid)
		}
		bySeries[uid] = append(bySeries[uid], i)
	}
	regions := make([][]findings.SeriesRegions, len(fprs))
	for _, uid := range uids {
		idx := bySeries[uid]
		if uid == "" || slices.ContainsFunc(idx, func(i int) bool { return val.Planes[i] == nil }) {
			fc.Skipped = append(fc.Skipped, fmt.Sprintf("%q: a slice without series or plane geometry", uid))
			continue
		}
		in := make([]findings.Slice, len(idx))
		for k, i := range idx {
			pix, err := sliceScores(sc, val, i, true)
			if err != nil {
				return nil, err
			}
			g := val.Geometries[i]
			in[k] = findings.Slice{Plane: *val.Planes[i], Rows: g.SrcRows, Cols: g.SrcCols, Scores: pix}
		}
		var per []findings.SeriesRegions
		for _, t := range thresholds {
			sr, err := findings.SeriesRegionsOf(in, t)
			if errors.Is(err, findings.ErrGeometry) {
				fc.Skipped = append(fc.Skipped, fmt.Sprintf("%s: %v", uid, err))
				per = nil
				break
			}
			if err != nil {
				return nil, fmt.Errorf("fitjob: calibrate findings: series %s: %w", uid, err)
			}
			per = append(per, sr)
		}
		for j, sr := range per {
			regions[j] = append(regions[j], sr)
		}
	}
	if len(regions[0]) == 0 {
		fc.Warning = "no validation series forms one stack with plane geometry: no finding calibration; the node will mask per pixel"
		return fc, nil
	}
	fc.Series = len(regions[0])
	fc.ByFPR = map[string]*findings.Calibration{}
	for j, f := range fprs {
		c, err := findings.Calibrate(regions[j], f, thresholds[j], seriesFPR, minVolumeMM3)
		if err != nil {
			return nil, fmt.Errorf("fitjob: calibrate findings: %w", err)
		}
		fc.ByFPR[inference.FPRKey(f)] = c
	}
	return fc, nil
}
