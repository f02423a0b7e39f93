package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"

	"github.com/mattn/go-isatty"

	"anomalynode/inference"
	"anomalynode/inference/eval"
	"anomalynode/inference/eval/seglabel"
	"anomalynode/inference/findings"
	"anomalynode/inference/fitjob"
	"anomalynode/output"
)

func init() {
	register(&command{
		name:    "eval",
		summary: "pixel AUROC/AUPR, Dice at FPR 10/5/1 %, finding-level lesion sensitivity and false findings, ROC/PR plots and a JSON summary on labelled test series",
		run:     runEval,
	})
}

func runEval(ctx context.Context, e *env, args []string) error {
	a, err := parseEvalArgs(e, args)
	if err != nil {
		return err
	}
	model, emb, err := openEvalModel(a)
	if err != nil {
		return err
	}
	defer emb.Embedder.Close()

	opt := eval.Options{Source: emb, Images: a.images, Labels: a.labels, Healthy: a.healthy, MinLesionMM3: a.minLesion, Out: a.out}
	segs, err := seglabel.Load(a.labels, readSEGLabel)
	if err != nil {
		return err
	}
	if segs.Files > 0 {
		opt.Extra = segs
	}
	a.scorer.Load = fitjob.LoadOptions{Embedder: emb}
	if err := opt.Configure(ctx, model, a.scorer); err != nil {
		return err
	}
	if f, ok := e.stderr.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
		opt.Progress = e.stderr
	}
	sum, err := eval.Run(ctx, opt)
	if err != nil {
		return err
	}
	eval.Table(e.stdout, sum)
	fmt.Fprintf(e.stdout, "wrote %s/summary.json, %s/slices.csv, %s\n", a.out, a.out, sum.CurvesPNG)
	return nil
}

// evalArgs is eval's command line, checked.
type evalArgs struct {
	cfgPath, modelPath, embedder string
	images, labels, healthy, out string
	minLesion                    float64
	// scorer is the scorer and threshold choice for eval.Configure, its
	// Load still to be given the embedder.
	scorer eval.ScorerConfig
}

// parseEvalArgs reads eval's flags and refuses missing folders and
// out-of-range values before anything is opened.
func parseEvalArgs(e *env, args []string) (*evalArgs, error) {
	fs := newFlagSet(e, "eval", "--model MODEL --images DIR --labels DIR --out DIR [--scorer dpmm|knn|coreset] [--bank DIR|NPY...] [--val DIR|NPY...] [--healthy DIR] [--fpr F] [--series-fpr F] [--min-volume MM3] [--min-lesion MM3]")
	var bank, val listFlag
	cfgPath := fs.String("config", "", "node configuration (ONNX Runtime library, threads, device, model embedder)")
	modelPath := fs.String("model", "", "model file from 'anomalynode fit' (required)")
	images := fs.String("images", "", "folder of test DICOM files, searched recursively (required)")
	labels := fs.String("labels", "", "folder of masks named like the images (.npy or .png), or of binary DICOM SEG objects (required)")
	healthy := fs.String("healthy", "", "folder of healthy test DICOM series (no masks): healthy series for the finding metrics")
	out := fs.String("out", "", "folder for summary.json, slices.csv and curves.png (required)")
	scorer := fs.String("scorer", "dpmm", "dpmm (model prototypes), knn (full memory bank) or coreset")
	fs.Var(&bank, "bank", "normal embeddings for knn/coreset: .npy files or folders (e.g. fit's --cache folder), or DICOM folders (repeatable)")
	coresetSize := fs.Int("coreset-size", 1024, "coreset prototypes")
	coresetMethod := fs.String("coreset-method", "greedy", "coreset selection: greedy (k-center) or random")
	seed := fs.Uint64("seed", 0, "coreset seed")
	fs.Var(&val, "val", "healthy validation slices to calibrate this scorer's thresholds (default: the model's, which are DPMM-calibrated)")
	embedder := fs.String("embedder", "", "ONNX backbone (default: the config's model embedder when there is exactly one)")
	fpr := fs.Float64("fpr", eval.DefaultFindingFPR, "pixel FPR whose threshold findings start from (the node config's fpr)")
	seriesFPR := fs.Float64("series-fpr", findings.DefaultSeriesFPR, "share of healthy series allowed to show a finding (default: as fitted)")
	minVolume := fs.Float64("min-volume", findings.DefaultMinVolumeMM3, "smallest finding in mm3 (default: as fitted)")
	minLesion := fs.Float64("min-lesion", eval.DefaultMinLesionMM3, "smallest painted lesion the finding sensitivity counts, mm3")
	if err := parseWithLists(fs, args, map[string]*listFlag{"bank": &bank, "val": &val}); err != nil {
		return nil, err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	switch {
	case *modelPath == "":
		return nil, errors.New("--model is required")
	case *images == "" || *labels == "":
		return nil, errors.New("--images and --labels are required")
	case *out == "":
		return nil, errors.New("--out is required")
	case !(*seriesFPR >= 0 && *seriesFPR <= 1):
		return nil, fmt.Errorf("--series-fpr %v: want a share in [0, 1]", *seriesFPR)
	case !(*minVolume >= 0) || math.IsInf(*minVolume, 0):
		return nil, fmt.Errorf("--min-volume %v: want a volume >= 0 in mm3", *minVolume)
	case !(*minLesion >= 0) || math.IsInf(*minLesion, 0):
		return nil, fmt.Errorf("--min-lesion %v: want a volume >= 0 in mm3", *minLesion)
	}
	a := &evalArgs{cfgPath: *cfgPath, modelPath: *modelPath, embedder: *embedder,
		images: *images, labels: *labels, healthy: *healthy, out: *out, minLesion: *minLesion,
		scorer: eval.ScorerConfig{Kind: *scorer, Bank: bank, CoresetSize: *coresetSize, CoresetMethod: *coresetMethod, Seed: *seed,
			Val: val, FindingFPR: *fpr}}
	// Unset, they default to what the model was fitted with.
	if given["series-fpr"] {
		a.scorer.SeriesFPR = seriesFPR
	}
	if given["min-volume"] {
		a.scorer.MinVolumeMM3 = minVolume
	}
	return a, nil
}

// openEvalModel loads the model and opens the ONNX backbone that embeds the
// test images: --embedder or the config's, the one the model was fitted with
// when the model records its hash.
func openEvalModel(a *evalArgs) (*inference.Model, *fitjob.ONNXEmbedder, error) {
	cfg, err := configOrDefault(a.cfgPath)
	if err != nil {
		return nil, nil, err
	}
	model, err := inference.LoadModel(a.modelPath)
	if err != nil {
		return nil, nil, err
	}
	embPath := embedderPath(a.embedder, cfg)
	if embPath == "" {
		return nil, nil, errors.New("--embedder (or a config with one model) is required to embed the test images")
	}
	if model.Meta.Embedder.SHA256 != "" {
		if err := model.VerifyEmbedder(embPath); err != nil {
			return nil, nil, err
		}
	}
	emb, _, err := openEmbedder(cfg, embPath, model.Meta)
	if err != nil {
		return nil, nil, err
	}
	return model, emb, nil
}

// readSEGLabel is the seglabel.Reader of the output package's SEG parser.
func readSEGLabel(b []byte) (*seglabel.SEG, error) {
	seg, err := output.ReadSEG(b)
	if err != nil {
		return nil, err
	}
	l := &seglabel.SEG{StudyInstanceUID: seg.Attrs.String("StudyInstanceUID"), Rows: seg.Rows, Cols: seg.Cols}
	for _, fr := range seg.Frames {
		l.Frames = append(l.Frames, seglabel.Frame{SourceSOPInstanceUID: fr.SourceSOPInstanceUID, Mask: fr.Mask})
	}
	return l, nil
}
