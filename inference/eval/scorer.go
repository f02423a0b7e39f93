package eval

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"anomalynode/inference"
	"anomalynode/inference/dpmm"
	"anomalynode/inference/findings"
	"anomalynode/inference/fitjob"
)

// ScorerConfig says which scorer an evaluation measures and where its
// thresholds and finding limits come from (the flags of `anomalynode eval`).
type ScorerConfig struct {
	// Kind is dpmm (the model's prototypes), knn (the full memory bank) or
	// coreset (a PatchCore-style subset of it).
	Kind string
	// Bank holds the normal embeddings knn and coreset need (fitjob.Load inputs).
	Bank []string
	// CoresetSize is the coreset's prototype count; CoresetMethod is greedy
	// (k-center) or random; Seed seeds the selection.
	CoresetSize   int
	CoresetMethod string
	Seed          uint64
	// Val holds healthy validation inputs that calibrate this scorer's
	// thresholds (and, for knn/coreset, its finding limits); empty: the
	// model's fit-time calibration, which only fits the dpmm scorer.
	Val []string
	// Load embeds Bank and Val.
	Load fitjob.LoadOptions
	// FindingFPR picks the pixel threshold the findings start from (the node
	// config's fpr); 0 means 0.01, the node's default.
	FindingFPR float64
	// SeriesFPR and MinVolumeMM3 override the fit-time finding limits (nil:
	// as fitted), as `fit --series-fpr/--min-volume` and the node config do.
	SeriesFPR, MinVolumeMM3 *float64
}

// DefaultFindingFPR is the pixel FPR whose threshold findings start from when
// ScorerConfig.FindingFPR is 0: the node config's default fpr.
const DefaultFindingFPR = 0.01

// Configure builds the scorer c names and sets o's Scorer, ScorerName,
// References, FPRKeys, Thresholds, ThresholdSource and finding limits
// (Findings, FindingFPR, FindingsSource, or FindingsNote when there are none).
//
// The policy: dpmm scores against the model's prototypes and takes the model's
// thresholds and finding calibration, both fitted for exactly that scorer.
// knn and coreset are other scorers, so the model's numbers do not apply to
// them: their thresholds and finding limits are calibrated on c.Val the way
// fit calibrates the model's, and without c.Val they have neither (Dice and
// finding metrics are skipped and the report says why).
func (o *Options) Configure(ctx context.Context, model *inference.Model, c ScorerConfig) error {
	o.ScorerName = c.Kind
	switch c.Kind {
	case "dpmm":
		s, err := inference.NewDPMMScorer(model)
		if err != nil {
			return err
		}
		o.Scorer, o.References = s, s.Prototypes()
	case "knn", "coreset":
		if len(c.Bank) == 0 {
			return fmt.Errorf("eval: scorer %s needs a memory bank (the normal embeddings)", c.Kind)
		}
		if c.Kind == "coreset" && c.CoresetMethod != "greedy" && c.CoresetMethod != "random" {
			return fmt.Errorf("eval: coreset method %q: want greedy or random", c.CoresetMethod)
		}
		b, err := fitjob.Load(ctx, c.Bank, c.Load)
		if err != nil {
			return err
		}
		if b.Data.D != model.D {
			return fmt.Errorf("eval: bank dimension %d differs from the model's %d", b.Data.D, model.D)
		}
		if c.Kind == "knn" {
			s, err := inference.NewKNNScorer(b.Data.X, b.Data.D)
			if err != nil {
				return err
			}
			o.Scorer, o.References = s, s.Size()
		} else {
			s, err := inference.NewCoresetScorer(b.Data.X, b.Data.D, c.CoresetSize, c.CoresetMethod == "greedy", c.Seed)
			if err != nil {
				return err
			}
			o.Scorer, o.References = s, c.CoresetSize
			o.ScorerName = fmt.Sprintf("coreset-%s-%d", c.CoresetMethod, c.CoresetSize)
		}
	default:
		return fmt.Errorf("eval: scorer %q: want dpmm, knn or coreset", c.Kind)
	}

	o.FPRKeys = o.FPRKeys[:0]
	for _, f := range dpmm.DefaultFPRs {
		o.FPRKeys = append(o.FPRKeys, inference.FPRKey(f))
	}
	ff := c.FindingFPR
	if ff == 0 {
		ff = DefaultFindingFPR
	}
	if !slices.ContainsFunc(dpmm.DefaultFPRs, func(f float64) bool { return inference.FPRKey(f) == inference.FPRKey(ff) }) {
		return fmt.Errorf("eval: finding pixel FPR %v is not one of the calibrated %v", ff, dpmm.DefaultFPRs)
	}
	var val *fitjob.Loaded
	switch {
	case len(c.Val) > 0:
		var err error
		if val, err = fitjob.Load(ctx, c.Val, c.Load); err != nil {
			return err
		}
		unit, n, ths, err := fitjob.CalibrateScorer(o.Scorer, val, dpmm.DefaultFPRs)
		if err != nil {
			return err
		}
		o.Thresholds = ths
		o.ThresholdSource = fmt.Sprintf("%d %s scores of the healthy validation slices (this scorer)", n, unit)
	case c.Kind == "dpmm":
		o.Thresholds = o.Thresholds[:0]
		for _, f := range dpmm.DefaultFPRs {
			t, err := model.Threshold(f)
			if err != nil {
				return err
			}
			o.Thresholds = append(o.Thresholds, t)
		}
		o.ThresholdSource = "the model file (fit-time calibration)"
	default:
		o.FPRKeys, o.Thresholds = nil, nil
		o.ThresholdSource = "none (give --val to calibrate this scorer; Dice skipped)"
	}
	return o.configureFindings(model, c, ff, val)
}

// configureFindings sets the finding limits for the pixel FPR ff.
func (o *Options) configureFindings(model *inference.Model, c ScorerConfig, ff float64, val *fitjob.Loaded) error {
	o.Findings, o.FindingFPR, o.FindingsSource, o.FindingsNote = nil, ff, "", ""
	if c.Kind == "dpmm" {
		// The model's calibration belongs to the DPMM scorer at the model's
		// pixel threshold: it holds whatever the test thresholds are.
		p, ok, err := model.FindingParams(ff, c.SeriesFPR, c.MinVolumeMM3)
		if err != nil {
			return fmt.Errorf("eval: %w", err)
		}
		if !ok {
			o.FindingsNote = fmt.Sprintf("the model file has no finding calibration for pixel FPR %s (written before model format 2, or fitted on .npy validation embeddings)", inference.FPRKey(ff))
			return nil
		}
		c := model.Meta.Findings[inference.FPRKey(ff)]
		o.Findings = &p
		o.FindingsSource = fmt.Sprintf("the model file (fit-time calibration on %d healthy series)", len(c.Series))
		return nil
	}
	if val == nil {
		o.FindingsNote = "no finding limits for this scorer: give --val with healthy DICOM series to calibrate them"
		return nil
	}
	th := slices.IndexFunc(dpmm.DefaultFPRs, func(f float64) bool { return inference.FPRKey(f) == inference.FPRKey(ff) })
	sf, mv := float64(findings.DefaultSeriesFPR), float64(findings.DefaultMinVolumeMM3)
	if c.SeriesFPR != nil {
		sf = *c.SeriesFPR
	}
	if c.MinVolumeMM3 != nil {
		mv = *c.MinVolumeMM3
	}
	fc, err := fitjob.CalibrateFindingsScorer(o.Scorer, val, []float64{ff}, []float32{o.Thresholds[th]}, sf, mv)
	if err != nil {
		return err
	}
	if fc.Warning != "" || fc.ByFPR == nil {
		o.FindingsNote = "no finding limits for this scorer: " + fc.Warning
		return nil
	}
	cal := fc.ByFPR[inference.FPRKey(ff)]
	if cal == nil {
		return errors.New("eval: finding calibration lacks its pixel FPR")
	}
	p := findings.Params{PixelThreshold: cal.PixelThreshold, MinVolumeMM3: cal.MinVolumeMM3, PeakThreshold: cal.PeakThreshold}
	o.Findings = &p
	o.FindingsSource = fmt.Sprintf("%d healthy validation series (this scorer)", fc.Series)
	return nil
}
