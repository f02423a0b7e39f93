package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mattn/go-isatty"

	"anomalynode/configs"
	"anomalynode/cuda"
	"anomalynode/inference"
	"anomalynode/inference/findings"
	"anomalynode/internal/par"
	"anomalynode/output"
)

func init() {
	register(&command{
		name:    "score",
		summary: "score every series under a folder offline: SEG + SC heat maps, score maps (.npy) and a JSON summary per series",
		run:     runScore,
	})
}

func runScore(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "score", "--config FILE --model MODEL --in DIR --out DIR [--embedder ONNX] [--fpr F]")
	cfgPath := fs.String("config", "", "node configuration (inference runtime settings and models)")
	model := fs.String("model", "", "model file, or the name of a model in the config (required)")
	in := fs.String("in", "", "folder of DICOM files, any layout; grouped by SeriesInstanceUID (required)")
	out := fs.String("out", "", "output folder; each series gets OUT/<SeriesInstanceUID>/ (required)")
	embedder := fs.String("embedder", "", "ONNX backbone (default: the config model's embedder)")
	fpr := fs.Float64("fpr", 0, "false-positive rate whose threshold makes the masks (default: the model config's, else 0.01)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %v", fs.Args())
	}
	if *model == "" || *in == "" || *out == "" {
		fs.Usage()
		return errors.New("--model, --in and --out are required")
	}
	cfg := configs.Default()
	if *cfgPath != "" {
		var err error
		if cfg, err = configs.Load(*cfgPath); err != nil {
			return err
		}
	}
	setup, err := scoreSetup(cfg, *model, *embedder, *fpr)
	if err != nil {
		return err
	}
	started := time.Now()
	served, err := inference.OpenModel(setup)
	if err != nil {
		return err
	}
	defer served.Close()
	if served.NiceErr != nil {
		e.log.Warn().Err(served.NiceErr).Msg("score: inference.nice not applied; the model runs at normal priority")
	}
	startup := time.Since(started)

	series, problems, notDICOM, err := inference.ScanSeries(*in)
	if err != nil {
		return err
	}
	if notDICOM > 0 {
		e.log.Info().Int("files", notDICOM).Msg("score: skipped files that are not DICOM")
	}
	for _, p := range problems {
		e.log.Warn().Str("file", p.Path).Err(p.Err).Msg("score: skipped file")
	}
	if len(series) == 0 {
		return fmt.Errorf("no DICOM series under %s", *in)
	}
	total := 0
	for _, s := range series {
		total += len(s.Files)
	}
	e.log.Info().Int("series", len(series)).Int("files", total).Str("model", setup.ModelPath).
		Str("embedder", setup.EmbedderPath).Float32("threshold", served.Threshold).Msg("score: start")
	bar := newProgress(e.stderr, total)
	identity, err := scoreIdentity(cfg, *model, setup.ModelPath, served)
	if err != nil {
		return err
	}
	params, err := findingParams(cfg, *model, served, setup.FPR)
	if err != nil {
		return err
	}
	if params == nil {
		e.log.Warn().Str("model", setup.ModelPath).Msg("score: no finding limits (the model file has no finding calibration: fit it again; or the config sets findings: false); masks are per pixel, about 1 % of every healthy slice is painted")
	}
	opts := inference.OfflineOptions{Out: *out, Model: setup.ModelPath, FPR: inference.FPRKey(setup.FPR),
		Threshold: served.Threshold, Chunk: 4 * max(setup.Batch, 1), OnSlice: bar.step}
	failed, scored := 0, 0
	scoring := time.Now()
	for _, s := range series {
		// The same builders as the node: one SEG and the SC heat maps per series.
		res := &output.SeriesResult{Model: identity, Version: 1, Threshold: served.Threshold, Created: time.Now()}
		opts.OnResult = func(r *inference.Result) {
			// Every frame of a multi-frame instance is a slice of its own.
			res.Sources = append(res.Sources, output.SourceSlice{Header: r.Slice.Header, Frame: r.Slice.Frame, Rows: r.Slice.Rows, Cols: r.Slice.Cols,
				Scores: r.Map, Mask: output.BoolMask(r.Mask), Display: r.Display})
		}
		objects := 0
		opts.Finish = func(sum *inference.SeriesSummary) error {
			// The findings go into summary.json, so the outputs are built
			// before it is written.
			n, analyses, err := writeOutputs(filepath.Join(*out, s.UID), res, cfg, params)
			if err != nil {
				return err
			}
			objects, sum.FindingCalibration, sum.Stacks = n, params != nil, len(analyses)
			for _, a := range analyses {
				sum.Findings = append(sum.Findings, a.Summaries()...)
			}
			return nil
		}
		sum, err := inference.ScoreSeries(ctx, served.Engine, s, opts)
		bar.finish()
		if err != nil {
			return err
		}
		failed += sum.Errors
		scored += len(sum.Slices) - sum.Errors
		found := "findings n/a (no calibration)"
		if sum.FindingCalibration {
			found = fmt.Sprintf("findings %d", sum.FindingCount)
		}
		fmt.Fprintf(e.stdout, "%s  %d slices  max %.4f  top_mean %.4f  %.1f ms/slice (model %.1f)  errors %d  %s  stacks %d  DICOM %d files  wall: engine %.0f ms, maps %.0f ms, outputs %.0f ms\n",
			s.UID, len(sum.Slices)-sum.Errors, sum.Max, sum.TopMean, sum.MeanMS.Total, sum.MeanMS.Model, sum.Errors, found, sum.Stacks, objects,
			sum.PhaseMS.Engine, sum.PhaseMS.Maps, sum.PhaseMS.Outputs)
	}
	// Wall clock from the first file read to the last output written, and
	// the one-time start-up (model file, backbone, GPU context) apart.
	took := time.Since(scoring)
	gpu := ""
	if setup.NewBackbone != nil {
		gpu = ", GPU"
	}
	fmt.Fprintf(e.stdout, "scored %d slices of %d series in %.2f s: %.0f slices/s (start-up %.2f s: model, backbone%s)\n",
		scored, len(series), took.Seconds(), float64(scored)/took.Seconds(), startup.Seconds(), gpu)
	if failed > 0 {
		return fmt.Errorf("%d slices or files could not be scored (see the summaries)", failed)
	}
	return nil
}

// scoreSetup maps the configuration and flags onto inference.ModelSetup.
func scoreSetup(cfg *configs.Config, model, embedder string, fpr float64) (inference.ModelSetup, error) {
	inf := cfg.Inference
	s := inference.ModelSetup{ModelPath: model, EmbedderPath: embedder, VerifyEmbedder: true,
		ORTLibrary: inf.ORTLibrary, Device: inf.Device, CUDADevice: inf.CUDADevice, Threads: inf.Threads,
		GraphOptimization: inf.GraphOptimization, Batch: inf.Batch, TopFraction: inf.TopFraction, FPR: 0.01}
	if inf.Nice != nil {
		s.Nice = *inf.Nice
	}
	mc := modelConfig(cfg, model, embedder)
	if mc != nil {
		s.ModelPath = mc.Path
		if s.EmbedderPath == "" {
			s.EmbedderPath = mc.Embedder
		}
		s.InputName, s.OutputName, s.FPR, s.VerifyEmbedder = mc.InputName, mc.OutputName, mc.FPR, mc.Verify()
		if mc.VOI != "" {
			v := &inference.PreprocessSpec{VOI: mc.VOI, PercentileLo: 0.5, PercentileHi: 99.5}
			if mc.WindowCenter != nil {
				v.WindowCenter = *mc.WindowCenter
			}
			if mc.WindowWidth != nil {
				v.WindowWidth = *mc.WindowWidth
			}
			if mc.PercentileLo != nil {
				v.PercentileLo = *mc.PercentileLo
			}
			if mc.PercentileHi != nil {
				v.PercentileHi = *mc.PercentileHi
			}
			s.VOI = v
		}
	}
	if fpr != 0 {
		s.FPR = fpr
	}
	if s.EmbedderPath == "" {
		return s, errors.New("no embedder: give --embedder or a config whose model names one")
	}
	if inf.Device == cuda.DeviceCUDA {
		// The GPU scorer, or a clear error: never a silent fallback to the CPU.
		if err := cuda.Require(inf.Device); err != nil {
			return s, err
		}
		dev := inf.CUDADevice
		prec, err := cuda.ParsePrecision(inf.GPUPrecision)
		if err != nil {
			return s, err
		}
		// Our own forward pass on the GPU, from the same ONNX file, and the
		// DPMM scoring of its tokens on the device where they are.
		s.NewBackbone = func(path string, m *inference.Model) (inference.Backbone, error) {
			return cuda.NewScoringEmbedder(cuda.EmbedderOptions{ModelPath: path, Device: dev, Precision: prec}, m)
		}
	}
	return s, nil
}

// modelConfig finds the config of a model named by its config name or its
// file (the only model of a config serves when no embedder is given); nil
// when the config has none.
func modelConfig(cfg *configs.Config, model, embedder string) *configs.Model {
	var mc *configs.Model
	if m, ok := cfg.Models[model]; ok {
		mc = &m
	} else {
		abs, _ := filepath.Abs(model)
		for name, m := range cfg.Models {
			if p, _ := filepath.Abs(m.Path); p == abs {
				m := cfg.Models[name]
				mc = &m
				break
			}
		}
	}
	if mc == nil && len(cfg.Models) == 1 && embedder == "" {
		for _, m := range cfg.Models {
			mc = &m
		}
		mc.Path = model
	}
	return mc
}

// progress draws a one-line bar on a terminal and nothing elsewhere.
type progress struct {
	w           io.Writer
	on          bool
	total, done int
	start       time.Time
	last        time.Time
}

func newProgress(w io.Writer, total int) *progress {
	f, ok := w.(*os.File)
	return &progress{w: w, on: ok && isatty.IsTerminal(f.Fd()), total: total, start: time.Now()}
}

func (p *progress) step() {
	p.done++
	if !p.on || (time.Since(p.last) < 100*time.Millisecond && p.done < p.total) {
		return
	}
	p.last = time.Now()
	const width = 30
	n := width * p.done / max(p.total, 1)
	rate := float64(p.done) / time.Since(p.start).Seconds()
	fmt.Fprintf(p.w, "\r[%s%s] %d/%d slices  %.1f/s ", strings.Repeat("#", n), strings.Repeat(".", max(width-n, 0)), p.done, p.total, rate)
}

func (p *progress) finish() {
	if p.on {
		fmt.Fprint(p.w, "\r\033[K")
	}
}

// scoreIdentity names the model in output UIDs as the node does: its config
// name when it has one (else the file name), its embedder and its sha256.
func scoreIdentity(cfg *configs.Config, model, path string, served *inference.Served) (output.ModelIdentity, error) {
	name := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	if _, ok := cfg.Models[model]; ok {
		name = model
	}
	sha, err := inference.FileSHA256(path)
	if err != nil {
		return output.ModelIdentity{}, err
	}
	return output.ModelIdentity{Name: name, Version: served.Model.Meta.Embedder.Name, SHA256: sha}, nil
}

// findingParams are the finding limits of a served model: its finding
// calibration at the pixel FPR, with the model config's series FPR and
// minimum volume (the defaults without them). nil when the model file has no
// finding calibration, or whose config sets findings: false: the masks stay
// per pixel.
func findingParams(cfg *configs.Config, model string, served *inference.Served, pixelFPR float64) (*findings.Params, error) {
	var seriesFPR, minVolume *float64
	if mc := modelConfig(cfg, model, ""); mc != nil {
		if !mc.UseFindings() {
			return nil, nil
		}
		seriesFPR, minVolume = mc.SeriesFPR, mc.MinVolumeMM3
	}
	p, ok, err := served.Model.FindingParams(pixelFPR, seriesFPR, minVolume)
	if err != nil || !ok {
		return nil, err
	}
	return &p, nil
}

// writeOutputs analyses a scored series (split into stacks, findings
// extracted with params) and writes each stack's outputs into dir: the SEG
// as SEG_<SOPInstanceUID>.dcm (none for a stack with no finding), the heat
// maps or the "no finding" page as SC_<SOPInstanceUID>.dcm.
func writeOutputs(dir string, res *output.SeriesResult, cfg *configs.Config, params *findings.Params) (int, []*output.Analysis, error) {
	if len(res.Sources) == 0 {
		return 0, nil, nil
	}
	o := output.AnalysisOptions{SEG: output.SEGOptionsFrom(cfg), SC: output.SCOptionsFrom(cfg), SR: output.SROptionsFrom(cfg)}
	analyses, err := output.Analyse(res, params, o.SEG.MaxSegments)
	if err != nil {
		return 0, nil, err
	}
	files := map[string]*output.Object{}
	for _, a := range analyses {
		built, err := output.BuildAnalysis(a, o)
		if err != nil {
			return 0, nil, err
		}
		if built.SEG != nil {
			files["SEG_"+built.SEG.SOPInstanceUID+".dcm"] = built.SEG
		}
		for _, sc := range built.SC {
			files["SC_"+sc.SOPInstanceUID+".dcm"] = sc
		}
		if built.SR != nil {
			files["SR_"+built.SR.SOPInstanceUID+".dcm"] = built.SR
		}
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	errs := make([]error, len(names))
	par.ForEach(len(names), func(i int) {
		if err := os.WriteFile(filepath.Join(dir, names[i]), files[names[i]].Part10, 0o644); err != nil {
			errs[i] = fmt.Errorf("write %s: %w", names[i], err)
		}
	})
	if err := errors.Join(errs...); err != nil {
		return 0, nil, err
	}
	return len(files), analyses, nil
}
