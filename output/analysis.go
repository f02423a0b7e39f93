package output

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"anomalynode/inference"
	"anomalynode/inference/findings"
)

// DefaultMaxSegments is how many findings get a SEG segment of their own when
// the configuration does not say; the rest share one "Other findings" segment.
const DefaultMaxSegments = 8

// Analysis is one stack of a scored series and what was found in it: the
// input of BuildSEG, BuildSC and the SR builder. A series with one
// orientation is one stack; a series whose slices differ in orientation,
// frame of reference, size or pixel spacing (localizers in three planes, a
// series with a reformat) is split into one stack per combination, and each
// stack gets its own outputs.
type Analysis struct {
	// Result is the stack's slices (a subset of the series' Sources, in their
	// input order). When Calibrated, each slice's Mask is the union of the
	// findings on it, so the heat map outlines exactly what the SEG shows.
	Result *SeriesResult
	// Calibrated is true when the model has a finding calibration and Params
	// were applied; false means per-pixel masks as before findings existed.
	Calibrated bool
	// Params are the limits the findings passed (zero when not Calibrated).
	Params findings.Params
	// Findings are the stack's findings by ID (highest peak first).
	Findings []findings.Finding
	// Labels[i] labels Result.Sources[i]: 0 outside every finding, else the
	// finding's ID.
	Labels [][]uint16
	// Segments[i] is the SEG segment number of Findings[i]: its ID up to
	// MaxSegments, MaxSegments+1 (the "Other findings" segment) beyond.
	Segments []int
	// MaxSegments is the number of findings with a segment of their own.
	MaxSegments int
	// Stack is the 0-based index of this stack and Stacks their number in the
	// series.
	Stack, Stacks int
}

// NoFinding reports whether a calibrated analysis found nothing: the stack
// gets no SEG, only the "no finding" page.
func (a *Analysis) NoFinding() bool { return a.Calibrated && len(a.Findings) == 0 }

// OtherSegment is the number of the segment that holds the findings beyond
// MaxSegments, or 0 when there are none.
func (a *Analysis) OtherSegment() int {
	if len(a.Findings) > a.MaxSegments {
		return a.MaxSegments + 1
	}
	return 0
}

// Summaries lists the findings as 'score' writes them into summary.json.
func (a *Analysis) Summaries() []inference.FindingSummary {
	out := make([]inference.FindingSummary, 0, len(a.Findings))
	for i, f := range a.Findings {
		out = append(out, inference.FindingSummary{
			Stack: a.Stack, ID: f.ID, Segment: a.Segments[i], Voxels: f.Voxels, VolumeMM3: f.VolumeMM3,
			Peak: f.Peak, Mean: f.Mean, Centroid: f.Centroid, FirstSlice: f.FirstSlice, LastSlice: f.LastSlice,
		})
	}
	return out
}

// Analyse splits a scored series into stacks and extracts each stack's
// findings with params (nil: the model has no finding calibration, and every
// stack keeps its per-pixel mask). Stacks are ordered by their geometry, not
// by arrival, so a rebuild gives the same stacks; a series of one stack keeps
// the output UIDs it had before stacks existed.
func Analyse(res *SeriesResult, params *findings.Params, maxSegments int) ([]*Analysis, error) {
	if maxSegments <= 0 {
		maxSegments = DefaultMaxSegments
	}
	stacks, err := splitStacks(res)
	if err != nil {
		return nil, err
	}
	out := make([]*Analysis, 0, len(stacks))
	for k, st := range stacks {
		a := &Analysis{Result: st, MaxSegments: maxSegments, Stack: k, Stacks: len(stacks)}
		if params != nil {
			if err := a.extract(*params); err != nil {
				return nil, err
			}
		}
		out = append(out, a)
	}
	return out, nil
}

// extract runs findings.Extract on the stack and replaces each slice's mask
// with its findings.
func (a *Analysis) extract(p findings.Params) error {
	ordered, _, err := orderedSlices(a.Result)
	if err != nil {
		return err
	}
	in := make([]findings.Slice, len(a.Result.Sources))
	for _, s := range ordered {
		var pl findings.Plane
		copy(pl.Position[:], s.ipp)
		copy(pl.Orientation[:], mustFloats(s.geom.iop))
		sp, err := parseDS("PixelSpacing", s.geom.spacing)
		if err != nil || len(sp) != 2 {
			return fmt.Errorf("%w: %s: PixelSpacing", ErrBadSource, where(s.index, s.src, s.geom))
		}
		copy(pl.Spacing[:], sp)
		in[s.index] = findings.Slice{Plane: pl, Rows: s.src.Rows, Cols: s.src.Cols, Scores: s.src.Scores}
	}
	r, err := findings.Extract(in, p)
	if err != nil {
		return fmt.Errorf("output: findings: %w", err)
	}
	a.Calibrated, a.Params, a.Findings, a.Labels = true, p, r.Findings, r.Labels
	a.Segments = make([]int, len(r.Findings))
	for i, f := range r.Findings {
		a.Segments[i] = min(f.ID, a.MaxSegments+1)
	}
	for i := range a.Result.Sources {
		m := make([]bool, len(r.Labels[i]))
		for j, l := range r.Labels[i] {
			m[j] = l != 0
		}
		a.Result.Sources[i].Mask = m
	}
	return nil
}

// stackKey is what slices of one stack share.
type stackKey struct {
	frameOfRef string
	iop        []float64
	rows, cols int
	spacing    []string
}

func (k stackKey) matches(o stackKey) bool {
	return k.frameOfRef == o.frameOfRef && k.rows == o.rows && k.cols == o.cols &&
		sameStrings(k.spacing, o.spacing) && closeVec(k.iop, o.iop, 1e-4)
}

// id names the stack in output UIDs: its geometry, rounded so that the
// slices' arrival order cannot change it.
func (k stackKey) id() string {
	parts := []string{k.frameOfRef, strconv.Itoa(k.rows) + "x" + strconv.Itoa(k.cols), strings.Join(k.spacing, "\\")}
	for _, v := range k.iop {
		parts = append(parts, strconv.FormatFloat(math.Round(v*1e3)/1e3+0, 'f', 3, 64))
	}
	return strings.Join(parts, "|")
}

// splitStacks groups the sources by frame of reference, orientation (within
// the tolerance the builders accept), size and pixel spacing. One group
// returns res itself; several return one SeriesResult per group, each with
// Stack set, ordered by their id.
func splitStacks(res *SeriesResult) ([]*SeriesResult, error) {
	if len(res.Sources) == 0 {
		return nil, fmt.Errorf("%w: no source slices", ErrBadSource)
	}
	var keys []stackKey
	var members [][]int
	for i := range res.Sources {
		s := &res.Sources[i]
		if s.Header == nil {
			return nil, fmt.Errorf("%w: slice %d: no header", ErrBadSource, i)
		}
		g, err := sourceGeometry(s)
		if err != nil {
			return nil, fmt.Errorf("%w: slice %d: %v", ErrBadSource, i, err)
		}
		iop, err := parseDS("ImageOrientationPatient", g.iop)
		if err != nil || len(iop) != 6 {
			return nil, fmt.Errorf("%w: %s: ImageOrientationPatient", ErrBadSource, where(i, s, g))
		}
		k := stackKey{frameOfRef: getString(s.Header, "FrameOfReferenceUID"), iop: iop, rows: s.Rows, cols: s.Cols, spacing: g.spacing}
		at := -1
		for j := range keys {
			if keys[j].matches(k) {
				at = j
				break
			}
		}
		if at < 0 {
			at = len(keys)
			keys = append(keys, k)
			members = append(members, nil)
		}
		members[at] = append(members[at], i)
	}
	if len(keys) == 1 {
		return []*SeriesResult{res}, nil
	}
	order := make([]int, len(keys))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return keys[order[a]].id() < keys[order[b]].id() })
	out := make([]*SeriesResult, 0, len(keys))
	for _, j := range order {
		st := *res
		st.Sources = make([]SourceSlice, 0, len(members[j]))
		for _, i := range members[j] {
			st.Sources = append(st.Sources, res.Sources[i])
		}
		st.Stack = keys[j].id()
		st.StackLabel = fmt.Sprintf("stack %d of %d", len(out)+1, len(keys))
		out = append(out, &st)
	}
	return out, nil
}

// AnalysisOptions are the builders' options for the outputs of one analysed
// stack.
type AnalysisOptions struct {
	SEG SEGOptions
	SC  SCOptions
	SR  SROptions
}

// AnalysisOutputs are the objects of one analysed stack.
type AnalysisOutputs struct {
	// SEG holds one segment per finding; nil when a calibrated stack has no
	// finding (no overlay).
	SEG *Object
	// SC are the heat maps, or the one "no finding" page.
	SC []*Object
	// SR is the measurement report; nil when reports are off or the model
	// has no finding calibration (it has no findings to report, only a mask).
	SR *Object
}

// BuildAnalysis builds the outputs of one analysed stack, the same for the
// node's finaliser and the offline 'score'.
func BuildAnalysis(a *Analysis, o AnalysisOptions) (*AnalysisOutputs, error) {
	out := &AnalysisOutputs{}
	if !a.NoFinding() {
		seg, _, err := BuildAnalysisSEG(a, o.SEG)
		if err != nil {
			return nil, fmt.Errorf("SEG: %w", err)
		}
		out.SEG = seg
	}
	scs, err := BuildAnalysisSC(a, o.SC)
	if err != nil {
		return nil, fmt.Errorf("SC: %w", err)
	}
	out.SC = scs
	if a.Calibrated {
		if out.SR, err = BuildSR(a.srInput(out.SEG), o.SR); err != nil {
			return nil, fmt.Errorf("SR: %w", err)
		}
	}
	return out, nil
}

// srInput is what the report of a calibrated stack says: its findings, each
// with its segment in seg, and the limits they passed.
func (a *Analysis) srInput(seg *Object) SRInput {
	fs := make([]SRFinding, len(a.Findings))
	for i, f := range a.Findings {
		fs[i] = SRFinding{Finding: f, Segment: a.Segments[i]}
	}
	return SRInput{Result: a.Result, Findings: fs, SEG: seg, Thresholds: SRThresholds{
		PixelThreshold: a.Params.PixelThreshold, PixelFPR: a.Params.PixelFPR,
		PeakThreshold: a.Params.PeakThreshold, SeriesFPR: a.Params.SeriesFPR, MinVolumeMM3: a.Params.MinVolumeMM3,
	}}
}
