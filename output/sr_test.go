package output

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/suyashkumar/dicom"

	"anomalynode/configs"
	"anomalynode/dimse"
	"anomalynode/inference/findings"
	"anomalynode/internal/peers"
)

// testFindings is the test's own account of a series' findings, computed
// from the masks without the builders' geometry code: every anomalous voxel,
// split into two findings after the lesion's first slice when split is
// true (both then live in segment 1, as findings do in the shared "Other
// findings" segment). Volumes are voxel counts times 0.9375 x 0.9375 x 2.5
// mm (makeSeries' spacing); IDs go by peak score, highest first.
func testFindings(t *testing.T, res *SeriesResult, split bool) []SRFinding {
	t.Helper()
	ordered := expectedFrames(res, true)
	var lesion []int
	for k, s := range ordered {
		if slices.Contains(s.Mask, true) {
			lesion = append(lesion, k)
		}
	}
	if len(lesion) < 2 {
		t.Fatalf("the synthetic lesion covers %d slices; the test needs at least 2", len(lesion))
	}
	cut := lesion[len(lesion)-1] + 1
	if split {
		cut = lesion[1]
	}
	type acc struct {
		n           int
		sum, peak   float64
		cx, cy, cz  float64
		first, last int
	}
	parts := []*acc{{first: -1}, {first: -1}}
	for k, s := range ordered {
		p := parts[0]
		if k >= cut {
			p = parts[1]
		}
		ipp, _ := ParseFloats(getStrings(s.Header, "ImagePositionPatient"))
		for i, m := range s.Mask {
			if !m {
				continue
			}
			r, c := i/s.Cols, i%s.Cols
			// Orientation is axial (1,0,0)/(0,1,0): x follows columns, y rows.
			p.cx += ipp[0] + float64(c)*0.9375
			p.cy += ipp[1] + float64(r)*0.9375
			p.cz += ipp[2]
			p.n++
			p.sum += float64(s.Scores[i])
			p.peak = math.Max(p.peak, float64(s.Scores[i]))
			if p.first < 0 {
				p.first = k
			}
			p.last = k
		}
	}
	var out []SRFinding
	for _, p := range parts {
		if p.n == 0 {
			continue
		}
		n := float64(p.n)
		out = append(out, SRFinding{Segment: 1, Finding: findings.Finding{
			Voxels: p.n, VolumeMM3: n * 0.9375 * 0.9375 * 2.5, Peak: float32(p.peak), Mean: float32(p.sum / n),
			Centroid: [3]float64{p.cx / n, p.cy / n, p.cz / n}, FirstSlice: p.first, LastSlice: p.last,
		}})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Peak > out[j].Peak })
	for i := range out {
		out[i].ID = i + 1
	}
	return out
}

var testThresholds = SRThresholds{PixelThreshold: 0.5, PixelFPR: 1e-4, PeakThreshold: 0.8, SeriesFPR: 0.05, MinVolumeMM3: 20}

// dsrdump runs dcmtk's dsrdump, which must read the report without a
// warning or error, and returns its dump.
func dsrdump(t *testing.T, path string) string {
	t.Helper()
	cmd := exec.Command(peers.Tool(t, "dsrdump"), "+Pt", "+Pc", "+Pu", "+Pl", path)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 {
		t.Fatalf("dsrdump %s: %v\n%s", filepath.Base(path), err, stderr.String())
	}
	return stdout.String()
}

// checkGroups compares what ReadSR found with the findings BuildSR was given.
func checkGroups(t *testing.T, sr *SR, fs []SRFinding, seg *Object, series string) {
	t.Helper()
	if len(sr.Groups) != len(fs) {
		t.Fatalf("%d measurement groups, want %d", len(sr.Groups), len(fs))
	}
	uids := map[string]bool{}
	for i, g := range sr.Groups {
		f := fs[i]
		if g.SEGInstanceUID != seg.SOPInstanceUID || g.Segment != f.Segment || g.SourceSeries != series {
			t.Errorf("group %d references SEG %s segment %d series %s", i+1, g.SEGInstanceUID, g.Segment, g.SourceSeries)
		}
		if math.Abs(g.VolumeMM3-f.VolumeMM3) > 1e-9*f.VolumeMM3 {
			t.Errorf("group %d volume %g, want %g", i+1, g.VolumeMM3, f.VolumeMM3)
		}
		if math.Abs(g.Peak-float64(f.Peak)) > 1e-6 || math.Abs(g.Mean-float64(f.Mean)) > 1e-6 {
			t.Errorf("group %d peak %g mean %g, want %g %g", i+1, g.Peak, g.Mean, f.Peak, f.Mean)
		}
		if len(g.Center) != 3 {
			t.Errorf("group %d centre %v", i+1, g.Center)
		} else {
			for k := range 3 {
				if math.Abs(g.Center[k]-f.Centroid[k]) > 1e-3 {
					t.Errorf("group %d centre %v, want %v", i+1, g.Center, f.Centroid)
				}
			}
		}
		if !strings.HasPrefix(g.TrackingIdentifier, "Finding ") || !strings.HasPrefix(g.TrackingUID, "2.25.") || uids[g.TrackingUID] {
			t.Errorf("group %d tracking %q %q", i+1, g.TrackingIdentifier, g.TrackingUID)
		}
		uids[g.TrackingUID] = true
	}
}

func TestSRGolden(t *testing.T) {
	s := makeSeries(t, 7, 37, 29, true, 1)
	seg, err := BuildSEG(s.res, SEGOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fs := testFindings(t, s.res, true)
	if len(fs) != 2 {
		t.Fatalf("%d findings, the test needs 2", len(fs))
	}
	obj, err := BuildSR(SRInput{Result: s.res, Findings: fs, SEG: seg, Thresholds: testThresholds},
		SROptions{AETitle: "ANOMALYNODE", Equipment: Equipment{SoftwareVersion: "test"}})
	if err != nil {
		t.Fatal(err)
	}
	if obj.SOPClassUID != Comprehensive3DSRStorage || obj.StudyInstanceUID != seg.StudyInstanceUID ||
		obj.SeriesInstanceUID == seg.SeriesInstanceUID || obj.SOPInstanceUID != s.res.SRInstanceUID() {
		t.Fatalf("SR object %+v", obj)
	}
	dir := t.TempDir()
	srPath := filepath.Join(dir, "sr.dcm")
	segPath := filepath.Join(dir, "seg.dcm")
	for p, b := range map[string][]byte{srPath: obj.Part10, segPath: seg.Part10} {
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dciodvfy(t, srPath)

	// Our reader: the values BuildSR was given, and every segment and volume
	// consistent with the SEG's own voxels.
	sr, err := ReadSR(obj.Part10)
	if err != nil {
		t.Fatal(err)
	}
	_, series := s.res.sourceUIDs()
	checkGroups(t, sr, fs, seg, series)
	if sr.NoAbnormality {
		t.Error("a report with findings says no abnormality")
	}
	if err := CheckSRAgainstSEG(sr, seg.Part10); err != nil {
		t.Errorf("report and SEG disagree: %v", err)
	}

	// dcmtk reads it; the dump is kept as the golden description.
	dump := dsrdump(t, srPath)
	for _, must := range []string{"Imaging Measurement Report", "TID 1500", "TID 1411", "Measurement Group", "Referenced Segment",
		"Anomaly score", "cubic millimeter", "No abnormality"} {
		if strings.Contains(dump, must) == (must == "No abnormality") {
			t.Errorf("dsrdump: %q present is %v", must, must == "No abnormality")
		}
	}
	checkGolden(t, "sr_golden.dump", dump, "SR", "TestSRGolden")

	// Source + SEG + SC + SR agree on patient and study.
	scs, err := BuildSC(s.res, SCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dcentvfy(t, dir, append(slices.Clone(s.files), segPath, srPath), scs)
}

func TestSRNoFinding(t *testing.T) {
	s := makeSeries(t, 4, 20, 20, false, 2)
	obj, err := BuildSR(SRInput{Result: s.res}, SROptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := writeTemp(t, "sr.dcm", obj.Part10)
	dciodvfy(t, p)
	dump := dsrdump(t, p)
	if !strings.Contains(dump, "No abnormality") || strings.Contains(dump, "Measurement Group") {
		t.Errorf("no-finding report:\n%s", dump)
	}
	sr, err := ReadSR(obj.Part10)
	if err != nil {
		t.Fatal(err)
	}
	if !sr.NoAbnormality || len(sr.Groups) != 0 {
		t.Errorf("read back: no abnormality %v, %d groups", sr.NoAbnormality, len(sr.Groups))
	}
}

// TestSRCheckCatches shows the reader check fails on a report that does not
// match its SEG: a volume off by 1 %, a segment the SEG lacks, another SEG.
func TestSRCheckCatches(t *testing.T) {
	s := makeSeries(t, 5, 24, 24, true, 3)
	seg, err := BuildSEG(s.res, SEGOptions{})
	if err != nil {
		t.Fatal(err)
	}
	good := testFindings(t, s.res, false)
	tests := []struct {
		name string
		edit func([]SRFinding)
		want string
	}{
		{"consistent", func([]SRFinding) {}, ""},
		{"volume off", func(f []SRFinding) { f[0].VolumeMM3 *= 1.01 }, "findings' volume"},
		{"missing segment", func(f []SRFinding) { f[0].Segment = 2 }, "does not define"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := slices.Clone(good)
			tc.edit(fs)
			obj, err := BuildSR(SRInput{Result: s.res, Findings: fs, SEG: seg, Thresholds: testThresholds}, SROptions{})
			if err != nil {
				t.Fatal(err)
			}
			sr, err := ReadSR(obj.Part10)
			if err != nil {
				t.Fatal(err)
			}
			err = CheckSRAgainstSEG(sr, seg.Part10)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("check: %v, want %q", err, tc.want)
			}
		})
	}
	other := makeSeries(t, 5, 24, 24, true, 4)
	otherSEG, err := BuildSEG(other.res, SEGOptions{})
	if err != nil {
		t.Fatal(err)
	}
	obj, _ := BuildSR(SRInput{Result: s.res, Findings: good, SEG: seg}, SROptions{})
	sr, _ := ReadSR(obj.Part10)
	if err := CheckSRAgainstSEG(sr, otherSEG.Part10); err == nil || !strings.Contains(err.Error(), "references SEG") {
		t.Fatalf("a report checked against another series' SEG: %v", err)
	}
}

func TestSRDeterminismAndInputs(t *testing.T) {
	s := makeSeries(t, 6, 24, 32, true, 5)
	seg, _ := BuildSEG(s.res, SEGOptions{})
	fs := testFindings(t, s.res, false)
	in := SRInput{Result: s.res, Findings: fs, SEG: seg, Thresholds: testThresholds}
	a, err := BuildSR(in, SROptions{})
	if err != nil {
		t.Fatal(err)
	}
	rev := *s.res
	rev.Sources = slices.Clone(s.res.Sources)
	slices.Reverse(rev.Sources)
	in2 := in
	in2.Result = &rev
	b, err := BuildSR(in2, SROptions{})
	if err != nil {
		t.Fatal(err)
	}
	if a.SOPInstanceUID != b.SOPInstanceUID || !bytes.Equal(a.Part10, b.Part10) {
		t.Fatal("rebuilding the same result gave a different SR")
	}
	v2 := *s.res
	v2.Version = 2
	in3 := in
	in3.Result = &v2
	c, err := BuildSR(in3, SROptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c.SOPInstanceUID == a.SOPInstanceUID || c.SeriesInstanceUID != a.SeriesInstanceUID {
		t.Fatal("version 2 must be a new instance in the same series")
	}
	if a.SOPInstanceUID == seg.SOPInstanceUID || a.SeriesInstanceUID == seg.SeriesInstanceUID || len(a.SOPInstanceUID) > 64 {
		t.Fatalf("SR UIDs %s / %s collide with the SEG's or are too long", a.SOPInstanceUID, a.SeriesInstanceUID)
	}

	if o, err := BuildSR(in, SROptions{Disabled: true}); o != nil || err != nil {
		t.Errorf("disabled: %v %v", o, err)
	}
	bad := []SRInput{
		{Result: s.res, Findings: fs}, // findings without a SEG
		{Result: s.res, SEG: seg},     // a SEG without findings
		{Result: s.res, SEG: seg, Findings: append(slices.Clone(fs), fs[0])}, // a repeated ID
		{Result: s.res, SEG: seg, Findings: []SRFinding{{Segment: 1, Finding: findings.Finding{ID: 1, VolumeMM3: math.NaN()}}}},
		{Result: s.res, SEG: seg, Findings: []SRFinding{{Segment: 0, Finding: findings.Finding{ID: 1}}}},
		{Result: s.res, SEG: &Object{SOPClassUID: SecondaryCaptureImageStorage}, Findings: fs},
	}
	for i, in := range bad {
		if _, err := BuildSR(in, SROptions{}); !errors.Is(err, ErrBadFindings) {
			t.Errorf("bad input %d: %v", i, err)
		}
	}
}

func TestSRConfig(t *testing.T) {
	c, err := configs.Parse([]byte(`dimse:
  ae_title: NODE1
destinations:
  pacs:
    address: h:104
    called_ae: PACS
  old:
    address: h:105
    called_ae: OLD
    sr: false
`), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	o := SROptionsFrom(c)
	if o.Disabled || o.AETitle != "NODE1" || o.FindingType != TypeLesion || o.SeriesDescription == "" {
		t.Errorf("default SR options %+v", o)
	}
	if got := SRDestinations(c, []string{"old", "pacs"}); !slices.Equal(got, []string{"pacs"}) {
		t.Errorf("SR destinations %v, want [pacs]", got)
	}
	off, err := configs.Parse([]byte("output:\n  sr: false\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !SROptionsFrom(off).Disabled {
		t.Error("output.sr: false still builds reports")
	}
	if _, err := configs.Parse([]byte("output:\n  sr_series_number: -1\n"), "t.yaml"); err == nil {
		t.Error("a negative sr_series_number is accepted")
	}
}

// TestSROrthanc delivers a series' SEG and report through the export queue
// to a real Orthanc holding the source, then reads both back from Orthanc:
// the report arrives in the source's study, in a series of its own, and
// still matches the SEG that arrived with it.
func TestSROrthanc(t *testing.T) {
	s := makeSeries(t, 6, 48, 40, true, 12)
	seg, err := BuildSEG(s.res, SEGOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sr, err := BuildSR(SRInput{Result: s.res, Findings: testFindings(t, s.res, true), SEG: seg, Thresholds: testThresholds}, SROptions{})
	if err != nil {
		t.Fatal(err)
	}
	o := orthancWithSources(t, s.files)
	q, err := NewQueue(context.Background(), openJS(t), QueueConfig{Prefix: "T", MaxAttempts: 5, BackoffInitial: 100 * time.Millisecond, BackoffMax: 400 * time.Millisecond},
		[]Destination{{
			Name:        "archive",
			Sender:      &CStore{Addr: fmt.Sprintf("127.0.0.1:%d", o.DicomPort), Config: dimse.ClientConfig{CallingAE: "ANOMALYNODE", CalledAE: o.AET, DialTimeout: 2 * time.Second, DIMSETimeout: 5 * time.Second}},
			Concurrency: 1,
			Timeout:     10 * time.Second,
		}}, testLogger(t), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range []*Object{seg, sr} {
		if err := q.Enqueue(context.Background(), obj, "archive"); err != nil {
			t.Fatal(err)
		}
	}
	runQueue(t, q)
	waitFor(t, "SEG and SR delivered", 30*time.Second, func() bool { return value(q.m.delivered.WithLabelValues("archive")) >= 2 })

	// fetch returns an instance as Orthanc stored it, with its study and series.
	fetch := func(sop string) (part10 []byte, study, series string) {
		t.Helper()
		var found []struct{ ID, Type string }
		b, err := o.Post("/tools/lookup", sop)
		if err != nil || json.Unmarshal(b, &found) != nil || len(found) != 1 || found[0].Type != "Instance" {
			t.Fatalf("lookup of %s: %v %s", sop, err, b)
		}
		var tags map[string]any
		if err := o.GetJSON("/instances/"+found[0].ID+"/simplified-tags", &tags); err != nil {
			t.Fatal(err)
		}
		part10, err = o.Get("/instances/" + found[0].ID + "/file")
		if err != nil {
			t.Fatal(err)
		}
		return part10, fmt.Sprint(tags["StudyInstanceUID"]), fmt.Sprint(tags["SeriesInstanceUID"])
	}
	segBack, segStudy, _ := fetch(seg.SOPInstanceUID)
	srBack, srStudy, srSeries := fetch(sr.SOPInstanceUID)
	if srStudy != sr.StudyInstanceUID || segStudy != srStudy || srSeries != sr.SeriesInstanceUID {
		t.Errorf("report in study %s series %s, SEG in study %s; want study %s series %s", srStudy, srSeries, segStudy, sr.StudyInstanceUID, sr.SeriesInstanceUID)
	}
	got, err := ReadSR(srBack)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Groups) != 2 {
		t.Errorf("report from Orthanc has %d findings, want 2", len(got.Groups))
	}
	if err := CheckSRAgainstSEG(got, segBack); err != nil {
		t.Errorf("report and SEG from Orthanc disagree: %v", err)
	}
}

// TestSRMultiFrame checks the image library of an enhanced multi-frame
// series: each source instance once, with the numbers of its scored frames.
func TestSRMultiFrame(t *testing.T) {
	es := makeEnhanced(t, enhancedOptions{instances: 2, frames: 4, rows: 23, cols: 19, seed: 5})
	// Frame 3 (0-based 2) of one instance was not scored.
	dropped := getString(es.res.Sources[0].Header, "SOPInstanceUID")
	res := *es.res
	res.Sources = slices.DeleteFunc(slices.Clone(es.res.Sources), func(s SourceSlice) bool {
		return getString(s.Header, "SOPInstanceUID") == dropped && s.Frame == 2
	})
	obj, err := BuildSR(SRInput{Result: &res}, SROptions{})
	if err != nil {
		t.Fatal(err)
	}
	dciodvfy(t, writeTemp(t, "sr.dcm", obj.Part10))
	sr, err := ReadSR(obj.Part10)
	if err != nil {
		t.Fatal(err)
	}
	var lib *Attrs
	for _, it := range sr.Attrs.Items("ContentSequence") {
		if conceptName(it) == conceptImageLibrary.key() {
			lib = it.First("ContentSequence")
		}
	}
	if lib == nil {
		t.Fatal("no image library group")
	}
	frames := map[string][]string{}
	for _, it := range lib.Items("ContentSequence") {
		if it.String("ValueType") == "IMAGE" {
			ref := it.First("ReferencedSOPSequence")
			frames[ref.String("ReferencedSOPInstanceUID")] = ref.Strings("ReferencedFrameNumber")
		}
	}
	if len(frames) != 2 {
		t.Fatalf("image library lists %d instances, want 2: %v", len(frames), frames)
	}
	for sop, f := range frames {
		want := []string{"1", "2", "3", "4"}
		if sop == dropped {
			want = []string{"1", "2", "4"}
		}
		if !slices.Equal(f, want) {
			t.Errorf("instance %s: frames %v, want %v", sop, f, want)
		}
	}
}

// BenchmarkBuildSR builds the report of a 24-slice series with 10 findings;
// it reports the time per report.
func BenchmarkBuildSR(b *testing.B) {
	s := makeSeries(b, 24, 64, 64, true, 1)
	seg, err := BuildSEG(s.res, SEGOptions{})
	if err != nil {
		b.Fatal(err)
	}
	fs := make([]SRFinding, 10)
	for i := range fs {
		fs[i] = SRFinding{Segment: i + 1, Finding: findings.Finding{ID: i + 1, Voxels: 100, VolumeMM3: 219.7, Peak: 0.9, Mean: 0.7, LastSlice: 3}}
	}
	in := SRInput{Result: s.res, Findings: fs, SEG: seg, Thresholds: testThresholds}
	for b.Loop() {
		if _, err := BuildSR(in, SROptions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "us/report")
}

// TestCheckSRMultiSegment checks the per-segment rule on a hand-made
// two-segment SEG: segment 1 holds one finding, segment 2 (an "Other
// findings" segment) two, whose volumes must add up to its voxels'.
func TestCheckSRMultiSegment(t *testing.T) {
	const segUID, series = "2.25.1", "2.25.2"
	e := &elems{}
	e.str("SOPClassUID", SegmentationStorage)
	e.str("SOPInstanceUID", segUID)
	e.str("SegmentationType", "BINARY")
	e.num("Rows", 2)
	e.num("Columns", 4)
	e.num("BitsAllocated", 1)
	e.str("NumberOfFrames", "2")
	pm := &elems{}
	pm.str("PixelSpacing", "0.5", "2")
	pm.str("SpacingBetweenSlices", "3")
	shared := &elems{}
	shared.seq("PixelMeasuresSequence", pm)
	e.seq("SharedFunctionalGroupsSequence", shared)
	var frames []*elems
	for _, n := range []int{1, 2} {
		si := &elems{}
		si.num("ReferencedSegmentNumber", n)
		pf := &elems{}
		pf.seq("SegmentIdentificationSequence", si)
		frames = append(frames, pf)
	}
	e.seq("PerFrameFunctionalGroupsSequence", frames...)
	var segs []*elems
	for _, n := range []int{1, 2} {
		s := &elems{}
		s.num("SegmentNumber", n)
		segs = append(segs, s)
	}
	e.seq("SegmentSequence", segs...)
	rs := &elems{}
	rs.str("SeriesInstanceUID", series)
	e.seq("ReferencedSeriesSequence", rs)
	// Frame 1 (segment 1, byte 0): 3 voxels; frame 2 (segment 2, byte 1): 5 voxels.
	e.add("PixelData", dicom.PixelDataInfo{IntentionallyUnprocessed: true, UnprocessedValueData: []byte{0b0000_0111, 0b0001_1111}})
	e.list[len(e.list)-1].RawValueRepresentation = "OB"
	seg, err := encode(e, SegmentationStorage, segUID)
	if err != nil {
		t.Fatal(err)
	}
	const voxel = 0.5 * 2 * 3
	group := func(segment int, voxels float64) SRGroup {
		return SRGroup{SEGInstanceUID: segUID, Segment: segment, SourceSeries: series, VolumeMM3: voxels * voxel}
	}
	tests := []struct {
		name   string
		groups []SRGroup
		want   string
	}{
		{"one finding per segment", []SRGroup{group(1, 3), group(2, 5)}, ""},
		{"two findings share segment 2", []SRGroup{group(1, 3), group(2, 2), group(2, 3)}, ""},
		{"shared segment short of a voxel", []SRGroup{group(1, 3), group(2, 2), group(2, 2)}, "segment 2"},
		{"findings swapped", []SRGroup{group(1, 5), group(2, 3)}, "segment 1"},
		{"segment 3 does not exist", []SRGroup{group(3, 1)}, "does not define"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckSRAgainstSEG(&SR{Groups: tc.groups}, seg)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("check: %v, want %q", err, tc.want)
			}
		})
	}
}
