package output

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"anomalynode/inference/findings"
)

// testParams are finding limits for the synthetic series of makeSeries,
// whose lesion scores peak at 1 and whose healthy scores stay below 0.1.
var testParams = findings.Params{PixelThreshold: 0.5, PeakThreshold: 0.8, MinVolumeMM3: 5}

// blobs puts n separate cubes of high scores into a healthy series, cube i
// peaking at 0.9-0.01i (so finding i+1 is cube i), and returns it.
func blobs(t *testing.T, n int) *SeriesResult {
	t.Helper()
	res := makeSeries(t, 6, 48, 48, false, 11).res
	for i := range res.Sources {
		s := &res.Sources[i]
		for b := 0; b < n; b++ {
			y0, x0 := 4+(b/4)*11, 4+(b%4)*11
			for y := y0; y < y0+4; y++ {
				for x := x0; x < x0+4; x++ {
					s.Scores[y*s.Cols+x] = 0.9 - 0.01*float32(b)
				}
			}
		}
	}
	return res
}

func TestAnalyseFindingsSEG(t *testing.T) {
	res := makeSeries(t, 9, 40, 40, true, 3).res
	as, err := Analyse(res, &testParams, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(as) != 1 || as[0].Result != res || as[0].Stacks != 1 {
		t.Fatalf("a one-orientation series is one stack, the series itself; got %d", len(as))
	}
	a := as[0]
	if !a.Calibrated || len(a.Findings) != 1 || a.Segments[0] != 1 || a.NoFinding() {
		t.Fatalf("want one finding in segment 1, got %+v segments %v", a.Findings, a.Segments)
	}
	// Masks follow the labels, so the heat map outlines what the SEG shows.
	for i, s := range res.Sources {
		for j, m := range s.Mask {
			if m != (a.Labels[i][j] != 0) {
				t.Fatalf("slice %d pixel %d: mask %v label %d", i, j, m, a.Labels[i][j])
			}
		}
	}
	obj, frames, err := BuildAnalysisSEG(a, SEGOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dciodvfy(t, writeTemp(t, "seg.dcm", obj.Part10))
	seg, err := ReadSEG(obj.Part10)
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	for i := range res.Sources {
		if slices.ContainsFunc(a.Labels[i], func(l uint16) bool { return l == 1 }) {
			want++
		}
	}
	if len(seg.Frames) != want || len(frames) != want {
		t.Fatalf("%d frames (%d infos), the finding covers %d slices", len(seg.Frames), len(frames), want)
	}
	for i, f := range seg.Frames {
		if f.SegmentNumber != 1 || frames[i].Segment != 1 {
			t.Errorf("frame %d: segment %d", i, f.SegmentNumber)
		}
		src := frames[i].Source
		for j, m := range f.Mask {
			if m != (a.Labels[src][j] == 1) {
				t.Fatalf("frame %d pixel %d: SEG %v, label %d", i, j, m, a.Labels[src][j])
			}
		}
	}
	dump := dcmdumpE(t, writeTemp(t, "seg.dcm", obj.Part10))
	label := fmt.Sprintf("Finding 1: %s, peak %.3g", volumeText(a.Findings[0].VolumeMM3), a.Findings[0].Peak)
	if !strings.Contains(dump, label) {
		t.Errorf("segment label %q not in the SEG", label)
	}
	// The same series without calibration keeps today's SEG, byte for byte.
	plain := makeSeries(t, 9, 40, 40, true, 3).res
	old, err := BuildSEG(plain, SEGOptions{})
	if err != nil {
		t.Fatal(err)
	}
	as2, err := Analyse(plain, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	now, _, err := BuildAnalysisSEG(as2[0], SEGOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(old.Part10, now.Part10) || as2[0].Calibrated {
		t.Error("an uncalibrated analysis changed the per-pixel SEG")
	}
}

func TestAnalyseOtherFindingsSegment(t *testing.T) {
	res := blobs(t, 5)
	as, err := Analyse(res, &testParams, 2)
	if err != nil {
		t.Fatal(err)
	}
	a := as[0]
	if len(a.Findings) != 5 {
		t.Fatalf("%d findings, want the 5 cubes", len(a.Findings))
	}
	if !slices.Equal(a.Segments, []int{1, 2, 3, 3, 3}) || a.OtherSegment() != 3 {
		t.Fatalf("segments %v (other %d), want 1 2 3 3 3", a.Segments, a.OtherSegment())
	}
	obj, frames, err := BuildAnalysisSEG(a, SEGOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := writeTemp(t, "seg.dcm", obj.Part10)
	dciodvfy(t, p)
	seg, err := ReadSEG(obj.Part10)
	if err != nil {
		t.Fatal(err)
	}
	pixels := map[int]int{}
	for i, f := range seg.Frames {
		if f.DimensionIndexValues[0] != f.SegmentNumber || frames[i].Segment != f.SegmentNumber {
			t.Errorf("frame %d: dimension index %v, segment %d", i, f.DimensionIndexValues, f.SegmentNumber)
		}
		for _, m := range f.Mask {
			if m {
				pixels[f.SegmentNumber]++
			}
		}
	}
	// 6 slices of 4x4 per cube; the other segment holds three cubes.
	if pixels[1] != 96 || pixels[2] != 96 || pixels[3] != 3*96 || len(pixels) != 3 {
		t.Errorf("pixels per segment %v, want 1:96 2:96 3:288", pixels)
	}
	if dump := dcmdumpE(t, p); !strings.Contains(dump, "Other findings: 3") {
		t.Error("no 'Other findings: 3' segment label")
	}
}

func TestNoFindingPage(t *testing.T) {
	res := makeSeries(t, 5, 32, 32, false, 5).res
	as, err := Analyse(res, &testParams, 0)
	if err != nil {
		t.Fatal(err)
	}
	a := as[0]
	if !a.NoFinding() {
		t.Fatalf("healthy series: %d findings", len(a.Findings))
	}
	if _, _, err := BuildAnalysisSEG(a, SEGOptions{}); err == nil {
		t.Error("a SEG was built for a series with no finding")
	}
	for _, disabled := range []bool{false, true} {
		objs, err := BuildAnalysisSC(a, SCOptions{Disabled: disabled})
		if err != nil {
			t.Fatal(err)
		}
		if len(objs) != 1 || objs[0].SOPInstanceUID != res.NoFindingInstanceUID() || objs[0].SeriesInstanceUID != res.SeriesUID(KindSC) {
			t.Fatalf("disabled=%v: %d objects, want the one page", disabled, len(objs))
		}
		p := writeTemp(t, "nofinding.dcm", objs[0].Part10)
		dciodvfy(t, p)
		dump := dcmdumpE(t, p)
		if !strings.Contains(dump, "no finding") || !strings.Contains(dump, Legend) {
			t.Errorf("the page does not say 'no finding' and %q:\n%s", Legend, dump)
		}
	}
}

func TestCalibratedHeatMapScale(t *testing.T) {
	res := makeSeries(t, 7, 40, 40, true, 9).res
	as, err := Analyse(res, &testParams, 0)
	if err != nil {
		t.Fatal(err)
	}
	sc := as[0].scale()
	if !sc.bar || sc.lo != 0.5 || math.Abs(sc.hi-0.8) > 1e-6 {
		t.Fatalf("scale %+v, want 0.5..0.8 with a bar", sc)
	}
	objs, err := BuildAnalysisSC(as[0], SCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != len(res.Sources) {
		t.Fatalf("%d heat maps for %d slices", len(objs), len(res.Sources))
	}
	dciodvfy(t, writeTemp(t, "sc.dcm", objs[0].Part10))
	// The bar's colours sit in the top-left band; a pixel below the pixel
	// threshold stays grey.
	s := &res.Sources[0]
	rgb := heatMap(s, sc, 0.6)
	bar := rgb[(8*s.Cols+30)*3 : (8*s.Cols+30)*3+3]
	if bar[0] == bar[1] && bar[1] == bar[2] {
		t.Errorf("no colour bar at the top left: %v", bar)
	}
	for i, v := range s.Scores {
		if y := i / s.Cols; y > 20 && y < s.Rows-20 && v <= 0.5 && !s.Mask[i] {
			if p := rgb[3*i : 3*i+3]; p[0] != p[1] || p[1] != p[2] {
				t.Fatalf("pixel %d scores %g (below the pixel threshold) but is coloured %v", i, v, p)
			}
		}
	}
}

// TestCalibratedColourFloor: a score just above the pixel threshold is
// clearly coloured on mid and bright grey (a viewer-side check counts a pixel
// as coloured from a chroma of 40), and one just below stays grey.
func TestCalibratedColourFloor(t *testing.T) {
	sc := colourScale{lo: 0.5, hi: 0.8, start: 0.25, floor: 0.5}
	for _, grey := range []uint8{60, 128, 220} {
		for _, tc := range []struct {
			score    float32
			coloured bool
		}{{0.505, true}, {0.495, false}} {
			s := &SourceSlice{Rows: 64, Cols: 64, Scores: make([]float32, 64*64), Mask: make([]bool, 64*64), Display: make([]uint8, 64*64)}
			for i := range s.Scores {
				s.Scores[i], s.Display[i] = tc.score, grey
			}
			rgb := heatMap(s, sc, 0.6)
			p := rgb[3*(20*64+20):] // above the legend band
			r, g, b := float64(p[0]), float64(p[1]), float64(p[2])
			l := (r + g + b) / 3
			chroma := math.Sqrt((r-l)*(r-l) + (g-l)*(g-l) + (b-l)*(b-l))
			if (chroma >= 40) != tc.coloured {
				t.Errorf("grey %d, score %g: chroma %.1f, want coloured %v", grey, tc.score, chroma, tc.coloured)
			}
		}
	}
}

// reoriented is a copy of src whose header has another orientation and SOP
// Instance UID, at position ipp: a slice of a second stack in the same
// series.
func reoriented(t *testing.T, src SourceSlice, iop, ipp []string, sop string) SourceSlice {
	t.Helper()
	ds := &dicom.Dataset{}
	for _, el := range src.Header.Elements {
		switch el.Tag {
		case tag.ImageOrientationPatient:
			el, _ = dicom.NewElement(tag.ImageOrientationPatient, iop)
		case tag.ImagePositionPatient:
			el, _ = dicom.NewElement(tag.ImagePositionPatient, ipp)
		case tag.SOPInstanceUID:
			el, _ = dicom.NewElement(tag.SOPInstanceUID, []string{sop})
		}
		ds.Elements = append(ds.Elements, el)
	}
	src.Header = ds
	src.Scores = slices.Clone(src.Scores)
	src.Mask = slices.Clone(src.Mask)
	return src
}

func TestStacks(t *testing.T) {
	res := makeSeries(t, 6, 32, 32, true, 21).res
	single := res.SEGInstanceUID()
	n := len(res.Sources)
	for i := 0; i < n; i++ {
		// A coronal copy of each slice.
		res.Sources = append(res.Sources, reoriented(t, res.Sources[i], []string{"1", "0", "0", "0", "0", "-1"},
			[]string{"-120.5", formatDS(-60 + 2.5*float64(i)), "40"}, DeriveUID("coronal", fmt.Sprint(i))))
	}
	for _, params := range []*findings.Params{nil, &testParams} {
		as, err := Analyse(res, params, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(as) != 2 {
			t.Fatalf("%d stacks, want 2", len(as))
		}
		seen := map[string]bool{single: true}
		for k, a := range as {
			if a.Stack != k || a.Stacks != 2 || len(a.Result.Sources) != n || a.Result.Stack == "" {
				t.Fatalf("stack %d: %+v with %d slices", k, a.Result.StackLabel, len(a.Result.Sources))
			}
			obj, _, err := BuildAnalysisSEG(a, SEGOptions{})
			if err != nil {
				t.Fatalf("stack %d: %v", k, err)
			}
			dciodvfy(t, writeTemp(t, "seg.dcm", obj.Part10))
			if seen[obj.SOPInstanceUID] || seen[obj.SeriesInstanceUID] {
				t.Errorf("stack %d reuses an output UID", k)
			}
			seen[obj.SOPInstanceUID], seen[obj.SeriesInstanceUID] = true, true
			if _, err := BuildAnalysisSC(a, SCOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		// Arrival order does not change the stacks or their UIDs.
		rev := *res
		rev.Sources = slices.Clone(res.Sources)
		slices.Reverse(rev.Sources)
		as2, err := Analyse(&rev, params, 0)
		if err != nil {
			t.Fatal(err)
		}
		for k := range as {
			if as[k].Result.SEGInstanceUID() != as2[k].Result.SEGInstanceUID() {
				t.Errorf("stack %d: UID depends on arrival order", k)
			}
		}
	}
}

// TestBuildAnalysis checks the outputs of one stack: a stack with findings
// gets its SEG, heat maps and a report whose findings reference the SEG's
// segments with their volumes; a calibrated stack with no finding gets only
// the "no finding" page and a report saying so; reports can be turned off.
func TestBuildAnalysis(t *testing.T) {
	for _, tc := range []struct {
		lesion bool
		scs    int
	}{{true, 7}, {false, 1}} {
		res := makeSeries(t, 7, 32, 32, tc.lesion, 17).res
		as, err := Analyse(res, &testParams, 0)
		if err != nil {
			t.Fatal(err)
		}
		out, err := BuildAnalysis(as[0], AnalysisOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.SC) != tc.scs || (out.SEG != nil) != tc.lesion || out.SR == nil {
			t.Fatalf("lesion %v: SEG %v, %d SCs, SR %v", tc.lesion, out.SEG != nil, len(out.SC), out.SR != nil)
		}
		if !tc.lesion && out.SC[0].SOPInstanceUID != res.NoFindingInstanceUID() {
			t.Error("a series with no finding did not get the 'no finding' page")
		}
		sr, err := ReadSR(out.SR.Part10)
		if err != nil {
			t.Fatal(err)
		}
		if len(sr.Groups) != len(as[0].Findings) || sr.NoAbnormality == tc.lesion {
			t.Fatalf("lesion %v: the report has %d findings (no abnormality %v), the stack %d", tc.lesion, len(sr.Groups), sr.NoAbnormality, len(as[0].Findings))
		}
		if tc.lesion {
			if len(sr.Groups) == 0 {
				t.Fatal("the lesion stack has no finding: the test proves nothing")
			}
			if err := CheckSRAgainstSEG(sr, out.SEG.Part10); err != nil {
				t.Error(err)
			}
		}
		off, err := BuildAnalysis(as[0], AnalysisOptions{SR: SROptions{Disabled: true}})
		if err != nil || off.SR != nil {
			t.Errorf("reports off: SR %v, err %v", off.SR != nil, err)
		}
	}
}
