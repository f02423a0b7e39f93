package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/mattn/go-isatty"

	"anomalynode/inference"
	"anomalynode/inference/dpmm"
	"anomalynode/inference/eval"
	"anomalynode/inference/eval/seglabel"
)

func init() {
	register(&command{
		name:    "eval",
		summary: "pixel AUROC/AUPR, Dice at FPR 10/5/1 %, ROC/PR plots and a JSON summary on labelled test series",
		run:     runEval,
	})
}

func runEval(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "eval", "--model MODEL --images DIR --labels DIR --out DIR [--scorer dpmm|knn|coreset] [--bank DIR|NPY...] [--val DIR|NPY...]")
	var bank, val listFlag
	cfgPath := fs.String("config", "", "node configuration (ONNX Runtime library, threads, device, model embedder)")
	modelPath := fs.String("model", "", "model file from 'anomalynode fit' (required)")
	images := fs.String("images", "", "folder of test DICOM files, searched recursively (required)")
	labels := fs.String("labels", "", "folder of masks named like the images (.npy or .png), or of binary DICOM SEG objects (required)")
	out := fs.String("out", "", "folder for summary.json, slices.csv and curves.png (required)")
	scorer := fs.String("scorer", "dpmm", "dpmm (model prototypes), knn (full memory bank) or coreset")
	fs.Var(&bank, "bank", "normal embeddings for knn/coreset: .npy files or folders (e.g. fit's --cache folder), or DICOM folders (repeatable)")
	coresetSize := fs.Int("coreset-size", 1024, "coreset prototypes")
	coresetMethod := fs.String("coreset-method", "greedy", "coreset selection: greedy (k-center) or random")
	seed := fs.Uint64("seed", 0, "coreset seed")
	fs.Var(&val, "val", "healthy validation slices to calibrate this scorer's thresholds (default: the model's, which are DPMM-calibrated)")
	embedder := fs.String("embedder", "", "ONNX backbone (default: the config's model embedder when there is exactly one)")
	if err := parseWithLists(fs, args, map[string]*listFlag{"bank": &bank, "val": &val}); err != nil {
		return err
	}
	switch {
	case *modelPath == "":
		return errors.New("--model is required")
	case *images == "" || *labels == "":
		return errors.New("--images and --labels are required")
	case *out == "":
		return errors.New("--out is required")
	}
	cfg, err := configOrDefault(*cfgPath)
	if err != nil {
		return err
	}
	model, err := inference.LoadModel(*modelPath)
	if err != nil {
		return err
	}
	embPath := embedderPath(*embedder, cfg)
	if embPath == "" {
		return errors.New("--embedder (or a config with one model) is required to embed the test images")
	}
	if model.Meta.Embedder.SHA256 != "" {
		if err := model.VerifyEmbedder(embPath); err != nil {
			return err
		}
	}
	emb, _, err := openEmbedder(cfg, embPath, model.Meta)
	if err != nil {
		return err
	}
	defer emb.Embedder.Close()

	opt := eval.Options{Source: emb, ScorerName: *scorer, Images: *images, Labels: *labels, Out: *out}
	segs, err := seglabel.Load(*labels)
	if err != nil {
		return err
	}
	if segs.Files > 0 {
		opt.Extra = segs
	}
	lo := dpmm.LoadOptions{Embedder: emb}
	switch *scorer {
	case "dpmm":
		s, err := inference.NewDPMMScorer(model)
		if err != nil {
			return err
		}
		opt.Scorer, opt.References = s, s.Prototypes()
	case "knn", "coreset":
		if len(bank) == 0 {
			return fmt.Errorf("--scorer %s needs --bank (the normal embeddings)", *scorer)
		}
		b, err := dpmm.Load(ctx, bank, lo)
		if err != nil {
			return err
		}
		if b.Data.D != model.D {
			return fmt.Errorf("bank dimension %d differs from the model's %d", b.Data.D, model.D)
		}
		if *scorer == "knn" {
			s, err := inference.NewKNNScorer(b.Data.X, b.Data.D)
			if err != nil {
				return err
			}
			opt.Scorer, opt.References = s, s.Size()
		} else {
			if *coresetMethod != "greedy" && *coresetMethod != "random" {
				return fmt.Errorf("--coreset-method %q: want greedy or random", *coresetMethod)
			}
			s, err := inference.NewCoresetScorer(b.Data.X, b.Data.D, *coresetSize, *coresetMethod == "greedy", *seed)
			if err != nil {
				return err
			}
			opt.Scorer, opt.References = s, *coresetSize
			opt.ScorerName = fmt.Sprintf("coreset-%s-%d", *coresetMethod, *coresetSize)
		}
	default:
		return fmt.Errorf("--scorer %q: want dpmm, knn or coreset", *scorer)
	}
	for _, f := range dpmm.DefaultFPRs {
		opt.FPRKeys = append(opt.FPRKeys, inference.FPRKey(f))
	}
	switch {
	case len(val) > 0:
		v, err := dpmm.Load(ctx, val, lo)
		if err != nil {
			return err
		}
		unit, n, ths, err := dpmm.CalibrateScorer(opt.Scorer, v, dpmm.DefaultFPRs)
		if err != nil {
			return err
		}
		opt.Thresholds = ths
		opt.ThresholdSource = fmt.Sprintf("%d %s scores of the healthy validation slices (this scorer)", n, unit)
	case *scorer == "dpmm":
		for _, f := range dpmm.DefaultFPRs {
			t, err := model.Threshold(f)
			if err != nil {
				return err
			}
			opt.Thresholds = append(opt.Thresholds, t)
		}
		opt.ThresholdSource = "the model file (fit-time calibration)"
	default:
		opt.FPRKeys = nil
		opt.ThresholdSource = "none (give --val to calibrate this scorer; Dice skipped)"
	}
	if f, ok := e.stderr.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
		opt.Progress = e.stderr
	}
	sum, err := eval.Run(ctx, opt)
	if err != nil {
		return err
	}
	eval.Table(e.stdout, sum)
	fmt.Fprintf(e.stdout, "wrote %s/summary.json, %s/slices.csv, %s\n", *out, *out, sum.CurvesPNG)
	return nil
}
