package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/mattn/go-isatty"

	"anomalynode/configs"
	"anomalynode/inference"
	"anomalynode/inference/dpmm"
	"anomalynode/inference/findings"
	"anomalynode/inference/fitjob"
)

func init() {
	register(&command{
		name:    "fit",
		summary: "fit a DPMM on normal series, calibrate thresholds, write a model file",
		run:     runFit,
	})
}

// listFlag is a repeatable flag that also splits on commas.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(s string) error {
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

// parseWithLists parses args; bare arguments right after a list flag's value
// ("--normal a b c --val v") extend that list, as the usage line promises.
func parseWithLists(fs *flag.FlagSet, args []string, lists map[string]*listFlag) error {
	for {
		if err := fs.Parse(args); err != nil {
			return err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return nil
		}
		// The last list flag given before the bare arguments takes them.
		var target *listFlag
		consumed := len(args) - len(rest)
		for i := consumed - 1; i >= 0 && target == nil; i-- {
			name := strings.TrimLeft(strings.SplitN(args[i], "=", 2)[0], "-")
			if strings.HasPrefix(args[i], "-") {
				target = lists[name]
				if target == nil {
					break
				}
			}
		}
		if target == nil {
			return fmt.Errorf("unexpected argument %q", rest[0])
		}
		i := 0
		for i < len(rest) && !strings.HasPrefix(rest[i], "-") {
			target.Set(rest[i])
			i++
		}
		args = rest[i:]
	}
}

func runFit(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "fit", "--config FILE --normal DIR|NPY... --val DIR|NPY --out MODEL [--components K] [--epochs E] [--batch B] [--seed S] [--cache DIR] [--series-fpr F] [--min-volume MM3]")
	var normal, val listFlag
	cfgPath := fs.String("config", "", "node configuration (ONNX Runtime library, threads, device, model embedder); optional for .npy inputs")
	fs.Var(&normal, "normal", "normal training inputs: DICOM folders/files or .npy [N,D] / [slices,patches,D] embeddings (repeatable)")
	fs.Var(&val, "val", "healthy validation inputs, same kinds (repeatable); used for model selection and threshold calibration")
	out := fs.String("out", "", "model file to write (required); MODEL.training.png and MODEL.history.json go beside it")
	components := fs.Int("components", 500, "truncation level K")
	epochs := fs.Int("epochs", 40, "epochs")
	batch := fs.Int("batch", 12, "slices per EM step")
	seed := fs.Int64("seed", 0, "random seed (initialisation, slice order)")
	cache := fs.String("cache", "", "folder that stores DICOM embeddings as .npy on first pass (DIR/normal, DIR/val)")
	step := fs.Float64("step-size", 0.2, "EM step size gamma (ema schedule)")
	schedule := fs.String("schedule", dpmm.ScheduleEMA, "step-size schedule: ema (constant) or exp (t^-rate)")
	rate := fs.Float64("rate", 0.6, "exponent of the exp schedule")
	alpha := fs.Float64("alpha", 2.0, "initial DP concentration (>= 1)")
	alphaFixed := fs.Bool("alpha-fixed", false, "keep alpha fixed instead of learning it")
	tau := fs.Float64("weight-threshold", inference.DefaultTau, "weight above which a component is active (a prototype)")
	reg := fs.Float64("reg", 1e-6, "variance regulariser")
	perSlice := fs.Int("patches-per-slice", 1024, "rows of a 2-D .npy array that form one slice")
	embedder := fs.String("embedder", "", "ONNX backbone (default: the config's model embedder when there is exactly one)")
	voi := fs.String("voi", inference.DefaultPreprocessing().VOI, "VOI policy: robust, percentile, header or model-window")
	wc := fs.Float64("window-center", 0, "model-window centre")
	ww := fs.Float64("window-width", 0, "model-window width")
	resolution := fs.Int("resolution", inference.DefaultResolution, "short edge in pixels slices are resized to")
	seriesFPR := fs.Float64("series-fpr", findings.DefaultSeriesFPR, "share of healthy validation series allowed to show a finding (finding calibration)")
	minVolume := fs.Float64("min-volume", findings.DefaultMinVolumeMM3, "smallest finding in mm3 (finding calibration)")
	if err := parseWithLists(fs, args, map[string]*listFlag{"normal": &normal, "val": &val}); err != nil {
		return err
	}
	switch {
	case !(*seriesFPR >= 0 && *seriesFPR <= 1):
		return fmt.Errorf("--series-fpr %v: want a share in [0, 1]", *seriesFPR)
	case !(*minVolume >= 0) || math.IsInf(*minVolume, 0):
		return fmt.Errorf("--min-volume %v: want a volume >= 0 in mm3", *minVolume)
	case len(normal) == 0:
		return errors.New("--normal is required")
	case len(val) == 0:
		return errors.New("--val is required")
	case *out == "":
		return errors.New("--out is required")
	}
	// The model's folder is made before the (long) embedding, so a path that
	// cannot be written fails now, not after it.
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		return fmt.Errorf("--out %s: %w", *out, err)
	}
	cfg, err := configOrDefault(*cfgPath)
	if err != nil {
		return err
	}
	meta := inference.ModelMeta{Resolution: *resolution, PatchSize: inference.DefaultPatchSize,
		Preprocessing: inference.PreprocessSpec{VOI: *voi, WindowCenter: *wc, WindowWidth: *ww}}
	if *voi == inference.VOIPercentile {
		meta.Preprocessing.PercentileLo, meta.Preprocessing.PercentileHi = 0.5, 99.5
	}
	if err := meta.Preprocessing.Validate(); err != nil {
		return err
	}
	embPath := embedderPath(*embedder, cfg)
	lo := fitjob.LoadOptions{CacheDir: *cache, PatchesPerSlice: *perSlice}
	if embPath != "" {
		emb, info, err := openEmbedder(cfg, embPath, meta)
		if err != nil {
			return err
		}
		defer emb.Embedder.Close()
		meta.Embedder = info
		lo.Embedder = emb
	}
	e.log.Info().Strs("normal", normal).Strs("val", val).Msg("fit: reading inputs")
	// Training and validation embeddings are cached in separate folders so the
	// training one can serve as the kNN/coreset memory bank of 'eval --bank'.
	trainLO, valLO := lo, lo
	if *cache != "" {
		trainLO.CacheDir, valLO.CacheDir = filepath.Join(*cache, "normal"), filepath.Join(*cache, "val")
	}
	train, err := fitjob.Load(ctx, normal, trainLO)
	if err != nil {
		return err
	}
	valData, err := fitjob.Load(ctx, val, valLO)
	if err != nil {
		return err
	}
	e.log.Info().Int("train_slices", train.Data.Slices()).Int("train_patches", train.Data.Rows()).
		Int("val_slices", valData.Data.Slices()).Int("dim", train.Data.D).
		Int("dicom_files", train.DICOMFiles+valData.DICOMFiles).Int("cache_hits", train.CacheHits+valData.CacheHits).
		Msg("fit: embeddings ready")
	if n := train.SkippedMasks + valData.SkippedMasks; n > 0 {
		fmt.Fprintf(e.stdout, "skipped %d label mask file(s) (integer .npy, e.g. synth --labels) in the input folders\n", n)
	}
	fo := dpmm.FitOptions{Epochs: *epochs, BatchSlices: *batch}
	if f, ok := e.stderr.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
		fo.Progress = e.stderr
	}
	fo.OnEpoch = func(s dpmm.EpochStats) {
		fmt.Fprintf(e.stdout, "epoch %3d/%d  val_loglik %12.4f  active %4d  alpha %8.4f  train_loglik %12.4f  %6.1fs\n",
			s.Epoch, *epochs, s.ValLogLikelihood, s.Active, s.Alpha, s.TrainLogLikelihood, s.Seconds)
	}
	job := fitjob.JobOptions{Out: *out, Meta: meta, Fit: fo, Config: dpmm.Config{K: *components, Gamma: *step,
		Schedule: *schedule, Rate: *rate, Reg: *reg, Alpha: *alpha, AlphaFixed: *alphaFixed, Tau: *tau, Seed: *seed},
		SeriesFPR: seriesFPR, MinVolumeMM3: minVolume}
	ckpt := *out + ".ckpt"
	if _, err := os.Stat(ckpt); err == nil {
		fmt.Fprintf(e.stdout, "resuming from the checkpoint %s\n", ckpt)
	}
	res, err := fitjob.RunJob(ctx, train, valData, job)
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("interrupted; run the same command again to resume from %s (last completed epoch)", ckpt)
	}
	if err != nil {
		return err
	}
	if res.Fit.ResumedFrom > 0 {
		fmt.Fprintf(e.stdout, "(epochs 1-%d came from the checkpoint)\n", res.Fit.ResumedFrom)
	}
	fi := res.Model.Meta.Fit
	fmt.Fprintf(e.stdout, "best epoch %d: val_loglik %.4f, %d active components, alpha %.4f\n", fi.BestEpoch, fi.ValLogLikelihood, fi.ActiveComponents, fi.Alpha)
	fmt.Fprintf(e.stdout, "thresholds (from %d %s scores of the healthy validation slices):", res.CalibrationScores, res.CalibrationUnit)
	for _, f := range dpmm.DefaultFPRs {
		t, _ := res.Model.Threshold(f)
		fmt.Fprintf(e.stdout, " FPR %s -> %.5f", inference.FPRKey(f), t)
	}
	fmt.Fprintln(e.stdout)
	printFindingCalibration(e, res.Findings)
	fmt.Fprintf(e.stdout, "wrote %s, %s, %s\n", *out, res.CurvePath, res.HistoryPath)
	return nil
}

// printFindingCalibration reports the finding limits fit chose for each pixel
// threshold, and why there are none when there are none.
func printFindingCalibration(e *env, fc *fitjob.FindingCalibration) {
	for _, s := range fc.Skipped {
		fmt.Fprintf(e.stdout, "warning: validation series left out of the finding calibration: %s\n", s)
	}
	if fc.Warning != "" {
		fmt.Fprintf(e.stdout, "warning: %s\n", fc.Warning)
		e.log.Warn().Msg("fit: " + fc.Warning)
		return
	}
	first := true
	for _, f := range dpmm.DefaultFPRs {
		c := fc.ByFPR[inference.FPRKey(f)]
		if c == nil {
			continue
		}
		if first {
			fmt.Fprintf(e.stdout, "findings (from %d healthy validation series; volume >= %g mm3, at most %g of series with a finding):\n",
				fc.Series, c.MinVolumeMM3, c.SeriesFPR)
			first = false
		}
		p := findings.Params{PixelThreshold: c.PixelThreshold, MinVolumeMM3: c.MinVolumeMM3, PeakThreshold: c.PeakThreshold}
		fmt.Fprintf(e.stdout, "  pixel FPR %s: peak >= %.5f; %d/%d healthy series with a finding; implied pixel FPR %.3g\n",
			inference.FPRKey(f), c.PeakThreshold, c.SeriesWithFindings(p), len(c.Series), c.ImpliedPixelFPR)
	}
}

// openEmbedder starts ONNX Runtime and opens the backbone with the config's
// runtime settings; it returns the SliceEmbedder and the embedder identity to
// record in the model.
func openEmbedder(cfg *configs.Config, path string, meta inference.ModelMeta) (*fitjob.ONNXEmbedder, inference.EmbedderInfo, error) {
	var info inference.EmbedderInfo
	if err := inference.InitRuntime(cfg.Inference.ORTLibrary); err != nil {
		return nil, info, err
	}
	sum, err := inference.FileSHA256(path)
	if err != nil {
		return nil, info, err
	}
	emb, err := inference.NewEmbedder(inference.EmbedderOptions{ModelPath: path, Device: cfg.Inference.Device,
		Threads: cfg.Inference.Threads, PatchSize: meta.PatchSize})
	if err != nil {
		return nil, info, err
	}
	in, outName := emb.Names()
	info = inference.EmbedderInfo{Name: strings.TrimSuffix(baseName(path), ".onnx"), SHA256: sum, InputName: in, OutputName: outName}
	return &fitjob.ONNXEmbedder{Embedder: emb, Pre: inference.NewPreprocessor(meta), EmbedderSHA256: sum}, info, nil
}

func baseName(p string) string {
	if i := strings.LastIndexAny(p, `/\`); i >= 0 {
		return p[i+1:]
	}
	return p
}

// configOrDefault loads the config file at path, or returns the defaults when
// path is empty (fit and eval run without a node config).
func configOrDefault(path string) (*configs.Config, error) {
	if path == "" {
		return configs.Default(), nil
	}
	return configs.Load(path)
}

// embedderPath is the --embedder flag value, or when it is empty the embedder
// of the config's model if the config has exactly one.
func embedderPath(flag string, cfg *configs.Config) string {
	if flag == "" && len(cfg.Models) == 1 {
		for _, m := range cfg.Models {
			return m.Embedder
		}
	}
	return flag
}
