package eval

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"anomalynode/inference"
	"anomalynode/inference/findings"
	"anomalynode/inference/fitjob"
	"anomalynode/inference/internal/sniff"
	"anomalynode/inference/pixel"
	"anomalynode/internal/npy"
)

// SliceSource embeds decoded slices; fitjob.ONNXEmbedder is the real one.
type SliceSource interface {
	// EmbedSlice preprocesses and embeds one slice.
	EmbedSlice(s *pixel.Slice) (fitjob.EmbeddedSlice, error)
}

// Options configures one evaluation run.
type Options struct {
	// Source embeds the test slices.
	Source SliceSource
	// Scorer scores patches; ScorerName names it in the report.
	Scorer     inference.Scorer
	ScorerName string
	// References is the number of prototypes / bank vectors the scorer holds.
	References int
	// FPRKeys and Thresholds are the calibrated thresholds for Dice (may be empty).
	FPRKeys    []string
	Thresholds []float32
	// ThresholdSource says where the thresholds came from.
	ThresholdSource string
	// Images is the folder of test DICOM files (searched recursively).
	Images string
	// Labels is the folder of masks: for an image at Images/REL/NAME.dcm the
	// mask is Labels/REL/NAME.{npy,png}, or Labels/NAME.{npy,png}, or, when REL
	// contains an "images" folder, the same path with "labels" in its place.
	Labels string
	// Extra labels the images without a mask file (e.g. DICOM SEG objects,
	// package seglabel); nil: none.
	Extra LabelSource
	// Healthy is an optional folder of healthy test DICOM files (searched
	// recursively): every slice is healthy, no mask needed. They count in the
	// pixel metrics like any healthy slice and give finding metrics their
	// healthy series when the labelled test series all hold lesions.
	Healthy string
	// Findings are the finding limits (nil: no finding metrics, FindingsNote
	// says why); FindingFPR names the pixel threshold they start from and
	// FindingsSource where they come from. Configure sets all four.
	Findings       *findings.Params
	FindingFPR     float64
	FindingsSource string
	FindingsNote   string
	// MinLesionMM3 is the smallest painted lesion finding sensitivity counts
	// (0: DefaultMinLesionMM3).
	MinLesionMM3 float64
	// Out is the folder for summary.json, slices.csv and curves.png.
	Out string
	// Progress, when set, receives a progress line per slice.
	Progress io.Writer
}

// Timing summarises per-slice wall times in milliseconds.
type Timing struct {
	// Mean, Median, P95 and Max are over slices of the total (embed + score).
	Mean   float64 `json:"mean_ms"`
	Median float64 `json:"median_ms"`
	P95    float64 `json:"p95_ms"`
	Max    float64 `json:"max_ms"`
	// EmbedMean is the mean of decode-free preprocessing + ONNX embedding.
	EmbedMean float64 `json:"embed_mean_ms"`
	// ScoreMean is the mean of patch scoring + upsampling to pixels.
	ScoreMean float64 `json:"score_mean_ms"`
}

// Summary is the JSON report of an evaluation.
type Summary struct {
	// Scorer names the scorer (dpmm, knn, coreset-greedy-1024, ...).
	Scorer string `json:"scorer"`
	// References counts its prototypes or memory-bank vectors.
	References int `json:"references"`
	// Images is the test folder.
	Images string `json:"images"`
	// Slices counts the scored slices (frames).
	Slices int `json:"slices"`
	// LesionSlices counts slices whose mask is not empty.
	LesionSlices int `json:"lesion_slices"`
	// UnlabelledFiles counts images without a mask file (scored as healthy).
	UnlabelledFiles int `json:"unlabelled_files"`
	// HealthyFiles counts the files of the healthy test folder (Options.Healthy).
	HealthyFiles int `json:"healthy_files,omitempty"`
	// Pixels counts the scored pixels.
	Pixels int64 `json:"pixels"`
	// ThresholdSource says where the Dice thresholds came from.
	ThresholdSource string `json:"threshold_source"`
	// Metrics holds AUROC, AUPR and Dice.
	Metrics *Metrics `json:"metrics"`
	// Findings holds the finding-level metrics; nil when the finding limits
	// are not available, and FindingsNote says why.
	Findings     *FindingMetrics `json:"findings,omitempty"`
	FindingsNote string          `json:"findings_note,omitempty"`
	// Time is per slice at batch size 1 (decode excluded).
	Time Timing `json:"time"`
	// PeakRSSMiB is the process's maximum resident set (getrusage), which
	// includes ONNX Runtime's native memory and the stored pixel scores.
	PeakRSSMiB float64 `json:"peak_rss_mib"`
	// PeakHeapMiB is the largest Go heap seen after a slice.
	PeakHeapMiB float64 `json:"peak_go_heap_mib"`
	// ScoreStoreMiB is the memory held by the pixel scores (4 bytes a pixel).
	ScoreStoreMiB float64 `json:"score_store_mib"`
	// CurvesPNG is the ROC/PR plot.
	CurvesPNG string `json:"curves_png"`
}

// LabelSource labels slices from something other than mask files.
type LabelSource interface {
	// Masks fills masks (one per frame, Rows*Cols, 1 = anomalous) for the
	// frames of one image; found is false when it knows nothing of the image.
	Masks(slices []*pixel.Slice, masks [][]uint8) (found bool, err error)
}

// ErrNoLabels is returned when no image has a matching mask.
var ErrNoLabels = errors.New("eval: no image has a matching label file")

// Run scores every test slice, compares with the masks and writes the reports.
// An image without a mask file counts as healthy (all zero) and is reported in
// UnlabelledFiles; if no image has a mask, Run fails with ErrNoLabels.
//
// With finding limits (Options.Findings) it also groups the slices into
// stacks, extracts each stack's findings and measures them against the painted
// lesions (EvaluateFindings); the stacks' score maps and masks are kept until
// the end for that (5 more bytes a pixel).
func Run(ctx context.Context, o Options) (*Summary, error) {
	files, err := dicomFiles(o.Images)
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("eval: no DICOM files under %s", o.Images)
	}
	var healthy []string
	if o.Healthy != "" {
		all, err := dicomFiles(o.Healthy)
		if err != nil {
			return nil, err
		}
		// A healthy folder inside the images folder is not scored twice.
		for _, f := range all {
			if _, dup := slices.BinarySearch(files, f); !dup {
				healthy = append(healthy, f)
			}
		}
		if len(healthy) == 0 {
			return nil, fmt.Errorf("eval: no DICOM files under %s that are not under %s", o.Healthy, o.Images)
		}
	}
	nImages := len(files)
	files = append(files, healthy...)
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, fmt.Errorf("eval: %w", err)
	}
	csvf, err := os.Create(filepath.Join(o.Out, "slices.csv"))
	if err != nil {
		return nil, fmt.Errorf("eval: %w", err)
	}
	defer csvf.Close()
	fmt.Fprintln(csvf, "file,frame,rows,cols,lesion_pixels,max_score,top1pct_mean,embed_ms,score_ms")

	sum := &Summary{Scorer: o.ScorerName, References: o.References, Images: o.Images, ThresholdSource: o.ThresholdSource}
	var stacks *stackSet
	if o.Findings != nil {
		stacks = newStackSet()
	}
	var px Pixels
	var times, embedT, scoreT []float64
	var peakHeap uint64
	labelled := 0
	for fi, f := range files {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		sl, err := pixel.DecodeFile(f)
		if err != nil {
			return nil, fmt.Errorf("eval: %s: %w", f, err)
		}
		var masks [][]uint8
		if fi >= nImages {
			masks = zeroMasks(sl)
			sum.HealthyFiles++
		} else {
			var found bool
			masks, found, err = loadMasks(o.Images, o.Labels, f, sl)
			if err != nil {
				return nil, err
			}
			if !found && o.Extra != nil {
				found, err = o.Extra.Masks(sl, masks)
				if err != nil {
					return nil, fmt.Errorf("eval: %s: %w", f, err)
				}
			}
			if found {
				labelled++
			} else {
				sum.UnlabelledFiles++
			}
		}
		for i, s := range sl {
			t0 := time.Now()
			emb, err := o.Source.EmbedSlice(s)
			if err != nil {
				return nil, fmt.Errorf("eval: %s frame %d: %w", f, i, err)
			}
			t1 := time.Now()
			g := emb.Geometry
			n := g.Patches()
			scores := make([]float32, n)
			o.Scorer.Score(emb.Patches, n, scores)
			pix := make([]float32, s.Rows*s.Cols)
			inference.Upsample(scores, g, pix)
			t2 := time.Now()
			mask := masks[i]
			if err := px.Add(pix, mask); err != nil {
				return nil, err
			}
			if stacks != nil {
				stacks.add(s, pix, mask)
			}
			lesion := 0
			for _, v := range mask {
				if v != 0 {
					lesion++
				}
			}
			if lesion > 0 {
				sum.LesionSlices++
			}
			mx, top := inference.TopMean(slices.Clone(pix), 0.01)
			e, sc := t1.Sub(t0).Seconds()*1e3, t2.Sub(t1).Seconds()*1e3
			times = append(times, e+sc)
			embedT = append(embedT, e)
			scoreT = append(scoreT, sc)
			fmt.Fprintf(csvf, "%s,%d,%d,%d,%d,%.6f,%.6f,%.2f,%.2f\n", relOr(o.Images, f), i, s.Rows, s.Cols, lesion, mx, top, e, sc)
			sum.Slices++
			sum.Pixels += int64(len(pix))
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			peakHeap = max(peakHeap, ms.HeapAlloc)
		}
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, "\r%d/%d files, %d slices", fi+1, len(files), sum.Slices)
		}
	}
	if o.Progress != nil {
		fmt.Fprint(o.Progress, "\r\033[K")
	}
	if labelled == 0 {
		return nil, fmt.Errorf("%w (images %s, labels %s)", ErrNoLabels, o.Images, o.Labels)
	}
	perPixel := 4.0
	if stacks != nil {
		perPixel += 5 // the stacks' score maps and masks
	}
	sum.ScoreStoreMiB = float64(px.Positives()+px.Negatives()) * perPixel / (1 << 20)
	sum.Metrics, err = px.Compute(o.FPRKeys, o.Thresholds)
	if err != nil {
		return nil, err
	}
	if stacks != nil {
		st, skipped := stacks.stacks()
		minLesion := o.MinLesionMM3
		if minLesion == 0 {
			minLesion = DefaultMinLesionMM3
		}
		if sum.Findings, err = EvaluateFindings(st, *o.Findings, minLesion); err != nil {
			return nil, err
		}
		sum.Findings.Skipped = append(skipped, sum.Findings.Skipped...)
		sum.Findings.PixelFPR, sum.Findings.Source = o.FindingFPR, o.FindingsSource
	} else {
		sum.FindingsNote = o.FindingsNote
		if sum.FindingsNote == "" {
			sum.FindingsNote = "no finding limits given"
		}
	}
	sum.Time = timing(times, embedT, scoreT)
	sum.PeakHeapMiB = float64(peakHeap) / (1 << 20)
	sum.PeakRSSMiB = maxRSSMiB()
	sum.CurvesPNG = filepath.Join(o.Out, "curves.png")
	if err := SaveCurves(sum.CurvesPNG, []Curve{{o.ScorerName, sum.Metrics.ROC}}, []Curve{{o.ScorerName, sum.Metrics.PR}}); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(sum, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("eval: summary: %w", err)
	}
	if err := os.WriteFile(filepath.Join(o.Out, "summary.json"), append(b, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("eval: %w", err)
	}
	return sum, nil
}

// dicomFiles lists the DICOM files under root (recursively), sorted.
func dicomFiles(root string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && sniff.IsDICOM(path) {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("eval: %w", err)
	}
	sort.Strings(files)
	return files, nil
}

func relOr(root, p string) string {
	if r, err := filepath.Rel(root, p); err == nil {
		return r
	}
	return p
}

func timing(total, embed, score []float64) Timing {
	mean := func(x []float64) float64 {
		s := 0.0
		for _, v := range x {
			s += v
		}
		return s / float64(max(1, len(x)))
	}
	s := slices.Clone(total)
	slices.Sort(s)
	t := Timing{Mean: mean(total), EmbedMean: mean(embed), ScoreMean: mean(score)}
	if len(s) > 0 {
		t.Median = s[len(s)/2]
		t.P95 = s[min(len(s)-1, int(0.95*float64(len(s))))]
		t.Max = s[len(s)-1]
	}
	return t
}

// maxRSSMiB is getrusage's ru_maxrss (KiB on Linux).
func maxRSSMiB() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Maxrss) / 1024
}

// labelCandidates lists where the mask of image f may be, in order.
func labelCandidates(images, labels, f string) []string {
	rel := relOr(images, f)
	stem := strings.TrimSuffix(rel, filepath.Ext(rel))
	base := strings.TrimSuffix(filepath.Base(f), filepath.Ext(f))
	var stems []string
	stems = append(stems, filepath.Join(labels, stem))
	parts := strings.Split(filepath.ToSlash(stem), "/")
	for i, p := range parts {
		if p == "images" {
			q := slices.Clone(parts)
			q[i] = "labels"
			stems = append(stems, filepath.Join(labels, filepath.FromSlash(strings.Join(q, "/"))))
		}
	}
	stems = append(stems, filepath.Join(labels, base))
	var out []string
	for _, s := range stems {
		out = append(out, s+".npy", s+".png")
	}
	return out
}

// zeroMasks returns one all-healthy mask per frame.
func zeroMasks(sl []*pixel.Slice) [][]uint8 {
	masks := make([][]uint8, len(sl))
	for i, s := range sl {
		masks[i] = make([]uint8, s.Rows*s.Cols)
	}
	return masks
}

// loadMasks returns one mask per frame (all zero when no label file exists).
func loadMasks(images, labels, f string, sl []*pixel.Slice) ([][]uint8, bool, error) {
	masks := zeroMasks(sl)
	for _, c := range labelCandidates(images, labels, f) {
		if _, err := os.Stat(c); err != nil {
			continue
		}
		var err error
		if strings.HasSuffix(c, ".npy") {
			err = readNPYMask(c, masks, sl)
		} else {
			err = readPNGMask(c, masks, sl)
		}
		if err != nil {
			return nil, false, err
		}
		return masks, true, nil
	}
	return masks, false, nil
}

func readNPYMask(path string, masks [][]uint8, sl []*pixel.Slice) error {
	a, err := npy.Read(path)
	if err != nil {
		return fmt.Errorf("eval: mask: %w", err)
	}
	rows, cols := sl[0].Rows, sl[0].Cols
	frames := 1
	switch {
	case len(a.Shape) == 2 && a.Shape[0] == rows && a.Shape[1] == cols:
	case len(a.Shape) == 3 && a.Shape[0] == len(sl) && a.Shape[1] == rows && a.Shape[2] == cols:
		frames = len(sl)
	default:
		return fmt.Errorf("eval: mask %s has shape %v, image is %d frame(s) of %dx%d", path, a.Shape, len(sl), rows, cols)
	}
	if frames != len(sl) {
		return fmt.Errorf("eval: mask %s is one frame, image has %d", path, len(sl))
	}
	for fr := 0; fr < frames; fr++ {
		for i := range masks[fr] {
			j := fr*rows*cols + i
			if a.U8 != nil {
				masks[fr][i] = b2u(a.U8[j] != 0)
			} else {
				masks[fr][i] = b2u(a.F32[j] > 0.5)
			}
		}
	}
	return nil
}

func readPNGMask(path string, masks [][]uint8, sl []*pixel.Slice) error {
	if len(sl) != 1 {
		return fmt.Errorf("eval: mask %s is a PNG but the image has %d frames (use .npy [F,R,C])", path, len(sl))
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("eval: mask: %w", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		return fmt.Errorf("eval: mask %s: %w", path, err)
	}
	b := img.Bounds()
	if b.Dx() != sl[0].Cols || b.Dy() != sl[0].Rows {
		return fmt.Errorf("eval: mask %s is %dx%d, image %dx%d", path, b.Dy(), b.Dx(), sl[0].Rows, sl[0].Cols)
	}
	for y := 0; y < b.Dy(); y++ {
		for x := 0; x < b.Dx(); x++ {
			masks[0][y*b.Dx()+x] = b2u(nonZero(img, b.Min.X+x, b.Min.Y+y))
		}
	}
	return nil
}

func nonZero(img image.Image, x, y int) bool {
	r, g, b, _ := img.At(x, y).RGBA()
	return r|g|b != 0
}

func b2u(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// Table writes the one-screen text summary.
func Table(w io.Writer, sums ...*Summary) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scorer\trefs\tslices\tpixels\tAUROC %\tAUPR %\tDice@10%\tDice@5%\tDice@1%\tms/slice\tpeak RSS MiB\t")
	for _, s := range sums {
		m := s.Metrics
		pct := func(p *float64) string {
			if p == nil {
				return "n/a"
			}
			return fmt.Sprintf("%.2f", 100**p)
		}
		dice := map[string]string{}
		for _, d := range m.Dice {
			dice[d.FPR] = fmt.Sprintf("%.4f", d.Dice)
		}
		get := func(k string) string {
			if v, ok := dice[k]; ok {
				return v
			}
			return "-"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%.1f\t%.0f\t\n", s.Scorer, s.References, s.Slices, s.Pixels,
			pct(m.AUROC), pct(m.AUPR), get("0.10"), get("0.05"), get("0.01"), s.Time.Mean, s.PeakRSSMiB)
	}
	tw.Flush()
	if len(sums) == 1 {
		s := sums[0]
		fmt.Fprintf(w, "\n%d anomalous / %d healthy pixels, %d slices with lesions, thresholds from %s\n",
			s.Metrics.Positives, s.Metrics.Negatives, s.LesionSlices, s.ThresholdSource)
		fmt.Fprintf(w, "time per slice (batch 1): mean %.1f ms (embed %.1f + score %.1f), median %.1f, p95 %.1f; peak Go heap %.0f MiB\n",
			s.Time.Mean, s.Time.EmbedMean, s.Time.ScoreMean, s.Time.Median, s.Time.P95, s.PeakHeapMiB)
		for _, d := range s.Metrics.Dice {
			fmt.Fprintf(w, "FPR %s: threshold %.5f  Dice %.4f  sensitivity %.4f  test FPR %.4f\n", d.FPR, d.Threshold, d.Dice, d.Sensitivity, d.TestFPR)
		}
	}
	for _, s := range sums {
		prefix := ""
		if len(sums) > 1 {
			prefix = s.Scorer + " "
		}
		findingLines(w, prefix, s)
	}
}

// findingLines writes the finding-level lines of one summary.
func findingLines(w io.Writer, prefix string, s *Summary) {
	f := s.Findings
	if f == nil {
		fmt.Fprintf(w, "%sfindings: not available (%s)\n", prefix, s.FindingsNote)
		return
	}
	pct := func(p *float64) string {
		if p == nil {
			return "n/a"
		}
		return fmt.Sprintf("%.1f %%", 100**p)
	}
	fmt.Fprintf(w, "%sfindings (pixel FPR %s: score > %.5f, volume >= %g mm3, peak >= %.5f; limits from %s):\n",
		prefix, inference.FPRKey(f.PixelFPR), f.PixelThreshold, f.MinVolumeMM3, f.PeakThreshold, f.Source)
	dice := "-"
	if f.MeanDice != nil {
		dice = fmt.Sprintf("%.4f", *f.MeanDice)
	}
	fmt.Fprintf(w, "  lesions >= %g mm3 found: %d/%d (%s), mean Dice of the overlapping finding %s; %d smaller lesion(s) not counted\n",
		f.MinLesionMM3, f.Detected, f.Lesions, pct(f.Sensitivity), dice, f.SmallLesions)
	fmt.Fprintf(w, "  false findings: %d of %d in %d series (%.2f per series); healthy series with a finding: %d/%d (%s)\n",
		f.FalseFindings, f.Findings, f.Series, f.FalsePerSeries, f.HealthyWithFinding, f.HealthySeries, pct(f.HealthyRate))
	if len(f.Skipped) > 0 {
		fmt.Fprintf(w, "  %d series left out of the finding metrics (see summary.json skipped_series), e.g. %s\n", len(f.Skipped), f.Skipped[0])
	}
}
