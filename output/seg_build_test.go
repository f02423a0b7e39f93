package output

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"anomalynode/internal/peers"
)

// expectedFrames is the test's own idea of the SEG frames: the sources with
// any anomalous pixel (or all), ordered by position along the slice normal
// (row direction x column direction).
func expectedFrames(res *SeriesResult, all bool) []*SourceSlice {
	var out []*SourceSlice
	for i := range res.Sources {
		if all || slices.Contains(res.Sources[i].Mask, true) {
			out = append(out, &res.Sources[i])
		}
	}
	along := func(s *SourceSlice) float64 {
		p, _ := ParseFloats(getStrings(s.Header, "ImagePositionPatient"))
		o, _ := ParseFloats(getStrings(s.Header, "ImageOrientationPatient"))
		n := [3]float64{o[1]*o[5] - o[2]*o[4], o[2]*o[3] - o[0]*o[5], o[0]*o[4] - o[1]*o[3]}
		return p[0]*n[0] + p[1]*n[1] + p[2]*n[2]
	}
	sort.Slice(out, func(i, j int) bool { return along(out[i]) < along(out[j]) })
	return out
}

func checkSEG(t *testing.T, res *SeriesResult, part10 []byte, want []*SourceSlice) {
	t.Helper()
	seg, err := ReadSEG(part10)
	if err != nil {
		t.Fatal(err)
	}
	h := res.Sources[0].Header
	if seg.Rows != res.Sources[0].Rows || seg.Cols != res.Sources[0].Cols {
		t.Errorf("SEG is %dx%d, source %dx%d", seg.Rows, seg.Cols, res.Sources[0].Rows, res.Sources[0].Cols)
	}
	if seg.FrameOfReferenceUID == "" || seg.FrameOfReferenceUID != getString(h, "FrameOfReferenceUID") {
		t.Errorf("FrameOfReferenceUID %q, source %q", seg.FrameOfReferenceUID, getString(h, "FrameOfReferenceUID"))
	}
	if !slices.Equal(seg.PixelSpacing, getStrings(h, "PixelSpacing")) {
		t.Errorf("shared PixelSpacing %q, source %q", seg.PixelSpacing, getStrings(h, "PixelSpacing"))
	}
	if !slices.Equal(seg.ImageOrientationPatient, getStrings(h, "ImageOrientationPatient")) {
		t.Errorf("shared ImageOrientationPatient %q, source %q", seg.ImageOrientationPatient, getStrings(h, "ImageOrientationPatient"))
	}
	if seg.SliceThickness != getString(h, "SliceThickness") {
		t.Errorf("SliceThickness %q, source %q", seg.SliceThickness, getString(h, "SliceThickness"))
	}
	if seg.SharedSegmentIdentification {
		t.Error("Segment Identification is in the shared functional groups")
	}
	if len(seg.Frames) != len(want) {
		t.Fatalf("%d frames, want %d", len(seg.Frames), len(want))
	}
	for i, f := range seg.Frames {
		src := want[i]
		if f.SourceSOPInstanceUID != getString(src.Header, "SOPInstanceUID") || f.SourceSOPClassUID != getString(src.Header, "SOPClassUID") {
			t.Errorf("frame %d: derivation source %s, want %s", i, f.SourceSOPInstanceUID, getString(src.Header, "SOPInstanceUID"))
		}
		if !slices.Equal(f.ImagePositionPatient, getStrings(src.Header, "ImagePositionPatient")) {
			t.Errorf("frame %d: ImagePositionPatient %q, source %q", i, f.ImagePositionPatient, getStrings(src.Header, "ImagePositionPatient"))
		}
		if f.DerivationCode != "DCM 113076" || f.PurposeCode != "DCM 121322" {
			t.Errorf("frame %d: derivation code %q purpose %q", i, f.DerivationCode, f.PurposeCode)
		}
		if f.SegmentNumber != 1 || len(f.DimensionIndexValues) != 2 || f.DimensionIndexValues[0] != 1 {
			t.Errorf("frame %d: segment %d, dimension index values %v", i, f.SegmentNumber, f.DimensionIndexValues)
		}
		for p := range f.Mask {
			if f.Mask[p] != src.Mask[p] {
				t.Fatalf("frame %d pixel %d (row %d col %d): SEG %v, scored %v", i, p, p/seg.Cols, p%seg.Cols, f.Mask[p], src.Mask[p])
			}
		}
	}
}

func TestSEGGolden(t *testing.T) {
	// 37 x 29 = 1073 pixels: frames start mid-byte.
	s := makeSeries(t, 7, 37, 29, true, 1)
	obj, err := BuildSEG(s.res, SEGOptions{SeriesDescription: "Anomaly segmentation (anomalynode)"})
	if err != nil {
		t.Fatal(err)
	}
	want := expectedFrames(s.res, false)
	if len(want) < 2 || len(want) == len(s.res.Sources) {
		t.Fatalf("synthetic lesion covers %d of %d slices; the test needs some but not all", len(want), len(s.res.Sources))
	}
	checkSEG(t, s.res, obj.Part10, want)
	seg, _ := ReadSEG(obj.Part10)
	if seg.SpacingBetweenSlices != "2.5" {
		t.Errorf("SpacingBetweenSlices %q, want 2.5", seg.SpacingBetweenSlices)
	}
	if n := (len(want)*37*29 + 7) / 8; seg.PixelDataLength != n+n%2 {
		t.Errorf("pixel data length is not the packed length padded to even (%d)", n+n%2)
	}

	dir := t.TempDir()
	segPath := filepath.Join(dir, "seg.dcm")
	if err := os.WriteFile(segPath, obj.Part10, 0o644); err != nil {
		t.Fatal(err)
	}
	dciodvfy(t, segPath)
	dump := dcmdumpE(t, segPath)
	for _, must := range []string{"(0062,0001) CS [BINARY]", "(0062,0013) CS [NO]", "(0070,0080) CS [ANOMALY]", "(2050,0020) CS [IDENTITY]",
		"(0028,0100) US 1", "(0028,0102) US 0", "(0008,0060) CS [SEG]", "[49755003]", "[52988006]", "[123110]", "(0062,0008) CS [AUTOMATIC]"} {
		if !strings.Contains(strings.ToUpper(dump), strings.ToUpper(must)) {
			t.Errorf("dcmdump lacks %s", must)
		}
	}
	checkGolden(t, "seg_golden.dump", dump, "SEG", "TestSEGGolden")

	// Source + SEG + SC must agree on patient and study (dcentvfy).
	scs, err := BuildSC(s.res, SCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if out := dcentvfy(t, dir, append(slices.Clone(s.files), segPath), scs); len(out) > 0 {
		t.Logf("dcentvfy: %s", out)
	}
}

// dcentvfy writes the SC objects to dir and runs dcentvfy over files and
// them: they must agree on patient, study and series (no Error line). It
// returns dcentvfy's output.
func dcentvfy(t *testing.T, dir string, files []string, scs []*Object) []byte {
	t.Helper()
	for i, o := range scs {
		p := filepath.Join(dir, "sc"+string(rune('a'+i))+".dcm")
		if err := os.WriteFile(p, o.Part10, 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, p)
	}
	out, err := exec.Command(peers.Tool(t, "dcentvfy"), files...).CombinedOutput()
	if err != nil || bytes.Contains(out, []byte("Error")) {
		t.Fatalf("dcentvfy: %v\n%s", err, out)
	}
	return out
}

func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < len(al) && i < len(bl); i++ {
		if al[i] != bl[i] {
			return "golden: " + al[i] + "\ngot:    " + bl[i]
		}
	}
	return "lengths differ"
}

func TestSEGVariants(t *testing.T) {
	tests := []struct {
		name       string
		n, r, c    int
		lesion     bool
		all        bool
		wantFrames int // -1: slices with findings
	}{
		{"no findings is still valid", 4, 20, 20, false, false, 1},
		{"every slice", 5, 33, 17, true, true, 5},
		{"multiple of 8", 5, 32, 16, true, false, -1},
		{"single slice", 1, 31, 31, true, false, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := makeSeries(t, tc.n, tc.r, tc.c, tc.lesion, 2)
			obj, err := BuildSEG(s.res, SEGOptions{AllSlices: tc.all})
			if err != nil {
				t.Fatal(err)
			}
			want := expectedFrames(s.res, tc.all)
			if !tc.lesion {
				want = expectedFrames(s.res, true)[:1]
			}
			if tc.wantFrames > 0 && len(want) != tc.wantFrames {
				t.Fatalf("test expects %d frames, computed %d", tc.wantFrames, len(want))
			}
			checkSEG(t, s.res, obj.Part10, want)
			dciodvfy(t, writeTemp(t, "seg.dcm", obj.Part10))
		})
	}
}

func TestUIDDeterminism(t *testing.T) {
	s := makeSeries(t, 4, 16, 24, true, 3)
	a, err := BuildSEG(s.res, SEGOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Same inputs in another order: the same object, byte for byte.
	rev := *s.res
	rev.Sources = slices.Clone(s.res.Sources)
	slices.Reverse(rev.Sources)
	b, err := BuildSEG(&rev, SEGOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if a.SOPInstanceUID != b.SOPInstanceUID || !bytes.Equal(a.Part10, b.Part10) {
		t.Fatal("rebuilding the same result gave a different SEG")
	}
	// An amended version: new instance, same series, description names it.
	v2 := *s.res
	v2.Version = 2
	c, err := BuildSEG(&v2, SEGOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c.SOPInstanceUID == a.SOPInstanceUID || c.SeriesInstanceUID != a.SeriesInstanceUID {
		t.Fatalf("version 2: instance %s (v1 %s), series %s (v1 %s)", c.SOPInstanceUID, a.SOPInstanceUID, c.SeriesInstanceUID, a.SeriesInstanceUID)
	}
	seg, _ := ReadSEG(c.Part10)
	if d := seg.Attrs.String("SeriesDescription"); !strings.Contains(d, "v2") {
		t.Errorf("version 2 description %q does not name the version", d)
	}
	// Another model: another series.
	m := *s.res
	m.Model.SHA256 = "ffff"
	d, _ := BuildSEG(&m, SEGOptions{})
	if d.SeriesInstanceUID == a.SeriesInstanceUID || d.SOPInstanceUID == a.SOPInstanceUID {
		t.Fatal("a different model reused the output UIDs")
	}
	// SC UIDs: stable per slice, distinct across slices and from the SEG.
	sc1, _ := BuildSC(s.res, SCOptions{})
	sc2, _ := BuildSC(&rev, SCOptions{})
	seen := map[string]bool{a.SOPInstanceUID: true}
	for i := range sc1 {
		if sc1[i].SOPInstanceUID != sc2[i].SOPInstanceUID {
			t.Fatal("SC UIDs depend on input order")
		}
		if seen[sc1[i].SOPInstanceUID] {
			t.Fatal("duplicate UID")
		}
		seen[sc1[i].SOPInstanceUID] = true
	}
	for uid := range seen {
		if len(uid) > 64 || !strings.HasPrefix(uid, "2.25.") {
			t.Errorf("UID %q is not a valid 2.25 UID", uid)
		}
	}
}

func TestSC(t *testing.T) {
	// 37 x 29 x 3 is odd: Pixel Data needs its pad byte.
	s := makeSeries(t, 4, 37, 29, true, 4)
	objs, err := BuildSC(s.res, SCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != len(s.res.Sources) {
		t.Fatalf("%d SC objects for %d slices", len(objs), len(s.res.Sources))
	}
	only, _ := BuildSC(s.res, SCOptions{OnlyFindings: true})
	if want := len(expectedFrames(s.res, false)); len(only) != want {
		t.Fatalf("OnlyFindings: %d objects, want %d", len(only), want)
	}
	if off, err := BuildSC(s.res, SCOptions{Disabled: true}); err != nil || len(off) != 0 {
		t.Fatalf("Disabled: %d objects (%v), want none", len(off), err)
	}
	bySOP := map[string]*SourceSlice{}
	for i := range s.res.Sources {
		bySOP[getString(s.res.Sources[i].Header, "SOPInstanceUID")] = &s.res.Sources[i]
	}
	for _, o := range objs {
		p := writeTemp(t, "sc.dcm", o.Part10)
		dciodvfy(t, p)
		dcmdumpE(t, p)
		body, err := o.DataSet()
		if err != nil {
			t.Fatal(err)
		}
		a, err := parseExplicitLE(body, 0)
		if err != nil {
			t.Fatal(err)
		}
		src := bySOP[a.First("SourceImageSequence").String("ReferencedSOPInstanceUID")]
		if src == nil {
			t.Fatal("SC does not reference a source slice")
		}
		for _, kw := range []string{"StudyInstanceUID", "FrameOfReferenceUID", "InstanceNumber", "PatientID", "BodyPartExamined"} {
			if a.String(kw) != getString(src.Header, kw) {
				t.Errorf("%s %q, source %q", kw, a.String(kw), getString(src.Header, kw))
			}
		}
		if !slices.Equal(a.Strings("ImagePositionPatient"), getStrings(src.Header, "ImagePositionPatient")) {
			t.Error("SC position differs from its source's")
		}
		for kw, want := range map[string]string{"Modality": "OT", "ConversionType": "WSD", "BurnedInAnnotation": "YES", "PhotometricInterpretation": "RGB"} {
			if got := a.String(kw); got != want {
				t.Errorf("%s %q, want %q", kw, got, want)
			}
		}
		if a.Int("SamplesPerPixel") != 3 || a.Int("PlanarConfiguration") != 0 || a.Int("BitsAllocated") != 8 {
			t.Error("SC is not interleaved 8-bit RGB")
		}
		if !strings.Contains(a.String("ImageComments"), Legend) || !strings.Contains(a.String("SeriesDescription"), Legend) {
			t.Error("legend missing from ImageComments or SeriesDescription")
		}
		if got := strings.Join(a.Strings("PatientOrientation"), `\`); got != `L\P` {
			t.Errorf("PatientOrientation %q, want L\\P", got)
		}
		pix := a.Bytes("PixelData")
		// Where the mask is set the pixel is coloured (heat or outline), and
		// far from any score it stays grey.
		for i, m := range src.Mask {
			r, g, b := pix[3*i], pix[3*i+1], pix[3*i+2]
			if m && r == g && g == b {
				t.Fatalf("mask pixel %d is grey", i)
			}
			if src.Scores[i] < 0.2 && i/29 < 37-16 && (r != g || g != b) {
				t.Fatalf("background pixel %d is coloured", i)
			}
		}
	}
}

func TestHeatMapLegend(t *testing.T) {
	s := &SourceSlice{Rows: 40, Cols: 200, Scores: make([]float32, 8000), Mask: make([]bool, 8000), Display: make([]uint8, 8000)}
	rgb := HeatMap(s, 0.25, 1, 0.6)
	yellow := 0
	for y := 24; y < 40; y++ {
		for x := 0; x < 200; x++ {
			i := 3 * (y*200 + x)
			if rgb[i] == 255 && rgb[i+1] == 255 && rgb[i+2] == 0 {
				yellow++
			}
		}
	}
	if yellow < 100 {
		t.Fatalf("legend has %d yellow pixels; not drawn", yellow)
	}
}

// TestWriteFuzzSeed keeps testdata/seg_small.dcm (the fuzz seed and a
// ready-made sample for viewers) in step with the builder.
func TestWriteFuzzSeed(t *testing.T) {
	s := makeSeries(t, 3, 11, 13, true, 6)
	obj, err := BuildSEG(s.res, SEGOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join("testdata", "seg_small.dcm")
	if *update {
		if err := os.WriteFile(p, obj.Part10, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(b, obj.Part10) {
		t.Fatalf("%s is missing or stale (go test -run TestWriteFuzzSeed -update): %v", p, err)
	}
}

// checkGolden compares a dump with testdata/name; -update rewrites the file.
func checkGolden(t *testing.T, name, dump, what, test string) {
	t.Helper()
	golden := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(golden, []byte(dump), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	g, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update once)", err, test)
	}
	if string(g) != dump {
		t.Errorf("%s differs from %s (go test -run %s -update after checking the change):\n%s", what, golden, test, firstDiff(string(g), dump))
	}
}
