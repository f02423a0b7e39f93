package output

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/suyashkumar/dicom"

	"anomalynode/inference"
	"anomalynode/inference/stage"
	"anomalynode/ingest"
	"anomalynode/internal/dcm"
	"anomalynode/internal/peers"
)

const enhancedMRImageStorage = "1.2.840.10008.5.1.4.1.1.4.1"

// enhancedOptions shapes an enhanced multi-frame test series.
type enhancedOptions struct {
	instances, frames int
	rows, cols        int
	seed              uint64
	// noPositions leaves the Plane Position functional group out and writes a
	// top-level ImagePositionPatient instead (an old-style multi-frame).
	noPositions bool
	// perFrameOrientation puts Plane Orientation in every per-frame item
	// instead of the shared item.
	perFrameOrientation bool
	// samePosition puts every frame at one position (e.g. a dynamic series).
	samePosition bool
}

// enhancedSeries is a series of Enhanced MR instances and what the test knows
// about every frame, independently of the code under test.
type enhancedSeries struct {
	res   *SeriesResult
	files []string
	// pos is each frame's ImagePositionPatient as written, by frameKey.
	pos map[string][]string
	// along is each frame's position along the normal (0,0,1), by frameKey.
	along map[string]float64
	// spacing, thickness and iop are the values written for every frame.
	spacing, thickness, iop []string
}

func frameKey(sop string, frame int) string { return fmt.Sprintf("%s/%d", sop, frame) }

// makeEnhanced writes o.instances Enhanced MR instances of o.frames frames
// each (Per-frame and Shared Functional Groups, PS3.3 C.7.6.16) whose frames
// interleave in space: frame order is not position order within an instance
// and instances alternate along the normal. A spherical "lesion" like
// makeSeries' gives each frame its scores and mask; res.Sources holds one
// SourceSlice per frame, shuffled.
func makeEnhanced(t testing.TB, o enhancedOptions) *enhancedSeries {
	t.Helper()
	rng := rand.New(rand.NewPCG(o.seed, 11))
	study := DeriveUID("mf-study", fmt.Sprint(o.seed))
	series := DeriveUID("mf-series", fmt.Sprint(o.seed))
	frameOfRef := DeriveUID("mf-for", fmt.Sprint(o.seed))
	es := &enhancedSeries{
		res: &SeriesResult{Model: ModelIdentity{Name: "dinov2-dpmm", Version: "3", SHA256: "ab12cd"}, Version: 1, Threshold: 0.5,
			Created: time.Date(2026, 11, 29, 12, 30, 45, 0, time.UTC)},
		pos: map[string][]string{}, along: map[string]float64{},
		spacing: []string{"0.78125", "0.78125"}, thickness: []string{"3"}, iop: []string{"1", "0", "0", "0", "1", "0"},
	}
	total := o.instances * o.frames
	slot := rng.Perm(total)
	rows, cols := o.rows, o.cols
	cy, cx, cz, rad := float64(rows)*0.45, float64(cols)*0.5, float64(total-1)/2, math.Max(2.5, float64(min(rows, cols))/5)
	dir := t.TempDir()
	for in := 0; in < o.instances; in++ {
		sop := DeriveUID("mf-sop", fmt.Sprint(o.seed), fmt.Sprint(in))
		e := &elems{}
		e.str("SpecificCharacterSet", "ISO_IR 100")
		e.str("ImageType", "ORIGINAL", "PRIMARY", "M", "NONE")
		e.str("SOPClassUID", enhancedMRImageStorage)
		e.str("SOPInstanceUID", sop)
		e.str("StudyDate", "20261128")
		e.str("StudyTime", "101500")
		e.str("ContentDate", "20261128")
		e.str("ContentTime", "101700")
		e.str("AccessionNumber", "ACC456")
		e.str("Modality", "MR")
		e.str("Manufacturer", "Synthetic")
		e.str("ReferringPhysicianName", "Ref^Doctor")
		e.str("StudyDescription", "MR Brain")
		e.str("SeriesDescription", "T2 enhanced")
		e.str("PatientName", "Doe^John")
		e.str("PatientID", "PID0002")
		e.str("PatientBirthDate", "19650505")
		e.str("PatientSex", "M")
		e.str("BodyPartExamined", "BRAIN")
		e.str("StudyInstanceUID", study)
		e.str("SeriesInstanceUID", series)
		e.str("StudyID", "S2")
		e.str("SeriesNumber", "5")
		e.str("InstanceNumber", fmt.Sprint(in+1))
		e.str("FrameOfReferenceUID", frameOfRef)
		e.str("PositionReferenceIndicator")
		e.str("NumberOfFrames", fmt.Sprint(o.frames))
		e.num("SamplesPerPixel", 1)
		e.str("PhotometricInterpretation", "MONOCHROME2")
		e.num("Rows", rows)
		e.num("Columns", cols)
		e.num("BitsAllocated", 16)
		e.num("BitsStored", 12)
		e.num("HighBit", 11)
		e.num("PixelRepresentation", 0)
		shared := &elems{}
		pm := &elems{}
		pm.add("PixelSpacing", es.spacing)
		pm.add("SliceThickness", es.thickness)
		shared.seq("PixelMeasuresSequence", pm)
		orientation := func(item *elems) {
			po := &elems{}
			po.add("ImageOrientationPatient", es.iop)
			item.seq("PlaneOrientationSequence", po)
		}
		if !o.perFrameOrientation {
			orientation(shared)
		}
		e.seq("SharedFunctionalGroupsSequence", shared)
		if o.noPositions {
			e.add("ImagePositionPatient", []string{"-100", "-90", "-10"})
			if o.perFrameOrientation {
				e.add("ImageOrientationPatient", es.iop)
			}
		}
		var perFrame []*elems
		pix := make([]byte, 0, o.frames*rows*cols*2)
		for f := 0; f < o.frames; f++ {
			k := slot[in*o.frames+f] // position rank along the normal
			z := -10 - 2.5*float64(total-1-k)
			if o.samePosition {
				z = -10
			}
			ipp := []string{"-100", "-90", formatDS(z)}
			pf := &elems{}
			fc := &elems{}
			fc.num("FrameAcquisitionNumber", f+1)
			pf.seq("FrameContentSequence", fc)
			if !o.noPositions {
				pp := &elems{}
				pp.add("ImagePositionPatient", ipp)
				pf.seq("PlanePositionSequence", pp)
			}
			if o.perFrameOrientation {
				orientation(pf)
			}
			perFrame = append(perFrame, pf)
			key := frameKey(sop, f)
			es.pos[key], es.along[key] = ipp, z
			n := rows * cols
			src := SourceSlice{Frame: f, Rows: rows, Cols: cols, Scores: make([]float32, n), Mask: make([]bool, n), Display: make([]uint8, n)}
			for y := 0; y < rows; y++ {
				for x := 0; x < cols; x++ {
					i := y*cols + x
					v := 200 + 300*math.Sin(float64(x+f)/4)*math.Cos(float64(y)/6) + 40*rng.Float64()
					pix = binary.LittleEndian.AppendUint16(pix, uint16(math.Max(0, v)))
					src.Display[i] = uint8(math.Max(0, math.Min(255, v/600*255)))
					d := math.Sqrt((float64(y)-cy)*(float64(y)-cy)+(float64(x)-cx)*(float64(x)-cx)+4*(float64(k)-cz)*(float64(k)-cz)) / rad
					src.Scores[i] = float32(math.Exp(-d * d))
					src.Mask[i] = src.Scores[i] > es.res.Threshold
				}
			}
			es.res.Sources = append(es.res.Sources, src)
		}
		e.seq("PerFrameFunctionalGroupsSequence", perFrame...)
		e.add("PixelData", dicom.PixelDataInfo{IntentionallyUnprocessed: true, UnprocessedValueData: pix})
		part10, err := encode(e, enhancedMRImageStorage, sop)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, fmt.Sprintf("mf%02d.dcm", in))
		if err := os.WriteFile(path, part10, 0o644); err != nil {
			t.Fatal(err)
		}
		hdr, err := dicom.ParseFile(path, nil, dicom.SkipPixelData())
		if err != nil {
			t.Fatal(err)
		}
		for i := len(es.res.Sources) - o.frames; i < len(es.res.Sources); i++ {
			es.res.Sources[i].Header = &hdr
		}
		es.files = append(es.files, path)
	}
	// Within an instance the frames must not already be in position order,
	// or a builder ordering by frame number would pass.
	if o.frames > 2 && !o.noPositions && !o.samePosition {
		inOrder := true
		for f := 1; f < o.frames; f++ {
			if slot[f] < slot[f-1] {
				inOrder = false
			}
		}
		if inOrder {
			t.Fatalf("seed %d lays instance 0's frames out in frame order; pick another", o.seed)
		}
	}
	rng.Shuffle(len(es.res.Sources), func(i, j int) { es.res.Sources[i], es.res.Sources[j] = es.res.Sources[j], es.res.Sources[i] })
	return es
}

// expected is the test's own frame list: the sources (all, or those with
// findings) ordered by the positions the fixture wrote.
func (es *enhancedSeries) expected(all bool) []*SourceSlice {
	var out []*SourceSlice
	for i := range es.res.Sources {
		if all || slices.Contains(es.res.Sources[i].Mask, true) {
			out = append(out, &es.res.Sources[i])
		}
	}
	sort.Slice(out, func(i, j int) bool { return es.along[es.key(out[i])] < es.along[es.key(out[j])] })
	return out
}

func (es *enhancedSeries) key(s *SourceSlice) string {
	return frameKey(getString(s.Header, "SOPInstanceUID"), s.Frame)
}

func TestMultiFrameSEG(t *testing.T) {
	// 23 x 19 = 437 pixels: frames start mid-byte.
	es := makeEnhanced(t, enhancedOptions{instances: 2, frames: 4, rows: 23, cols: 19, seed: 5})
	for _, all := range []bool{false, true} {
		t.Run(fmt.Sprintf("all=%v", all), func(t *testing.T) {
			obj, err := BuildSEG(es.res, SEGOptions{AllSlices: all})
			if err != nil {
				t.Fatal(err)
			}
			want := es.expected(all)
			if !all && (len(want) < 2 || len(want) == len(es.res.Sources)) {
				t.Fatalf("lesion covers %d of %d frames; the test needs some but not all", len(want), len(es.res.Sources))
			}
			seg, err := ReadSEG(obj.Part10)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(seg.PixelSpacing, es.spacing) || seg.SliceThickness != es.thickness[0] || !slices.Equal(seg.ImageOrientationPatient, es.iop) {
				t.Errorf("shared pixel measures %q / %q, orientation %q: not the source frames'", seg.PixelSpacing, seg.SliceThickness, seg.ImageOrientationPatient)
			}
			if all && seg.SpacingBetweenSlices != "2.5" {
				t.Errorf("SpacingBetweenSlices %q, want 2.5 (frames of both instances interleave 2.5 mm apart)", seg.SpacingBetweenSlices)
			}
			if len(seg.Frames) != len(want) {
				t.Fatalf("%d frames, want %d", len(seg.Frames), len(want))
			}
			var prev float64
			for i, f := range seg.Frames {
				src := want[i]
				sop := getString(src.Header, "SOPInstanceUID")
				if f.SourceSOPInstanceUID != sop || f.SourceSOPClassUID != enhancedMRImageStorage {
					t.Errorf("frame %d: source %s (%s), want %s", i+1, f.SourceSOPInstanceUID, f.SourceSOPClassUID, sop)
				}
				if !slices.Equal(f.SourceFrameNumbers, []int{src.Frame + 1}) {
					t.Errorf("frame %d: ReferencedFrameNumber %v, want [%d]", i+1, f.SourceFrameNumbers, src.Frame+1)
				}
				if !slices.Equal(f.ImagePositionPatient, es.pos[es.key(src)]) {
					t.Errorf("frame %d: ImagePositionPatient %q, source frame's %q", i+1, f.ImagePositionPatient, es.pos[es.key(src)])
				}
				z, _ := ParseFloats(f.ImagePositionPatient)
				if i > 0 && z[2] <= prev {
					t.Errorf("frame %d is not above frame %d along the normal", i+1, i)
				}
				prev = z[2]
				if all && (len(f.DimensionIndexValues) != 2 || f.DimensionIndexValues[1] != i+1) {
					t.Errorf("frame %d: DimensionIndexValues %v", i+1, f.DimensionIndexValues)
				}
				if !slices.Equal(f.Mask, src.Mask) {
					t.Errorf("frame %d: mask differs from source frame %s's", i+1, es.key(src))
				}
			}
			// Each source instance is referenced once, with its frames.
			rs := seg.Attrs.First("ReferencedSeriesSequence")
			var inst []string
			for _, it := range rs.Items("ReferencedInstanceSequence") {
				inst = append(inst, it.String("ReferencedSOPInstanceUID"))
			}
			slices.Sort(inst)
			wantInst := []string{getString(es.res.Sources[0].Header, "SOPInstanceUID")}
			for _, s := range es.res.Sources {
				if u := getString(s.Header, "SOPInstanceUID"); !slices.Contains(wantInst, u) {
					wantInst = append(wantInst, u)
				}
			}
			slices.Sort(wantInst)
			if !slices.Equal(inst, wantInst) {
				t.Errorf("ReferencedInstanceSequence %v, want each instance once %v", inst, wantInst)
			}
			srcSeq := seg.Attrs.Items("SourceImageSequence")
			if len(srcSeq) != len(wantInst) {
				t.Fatalf("Source Image Sequence has %d items for %d instances", len(srcSeq), len(wantInst))
			}
			for _, it := range srcSeq {
				if got := it.Strings("ReferencedFrameNumber"); !slices.Equal(got, []string{"1", "2", "3", "4"}) {
					t.Errorf("Source Image Sequence item %s: ReferencedFrameNumber %q, want 1..4", it.String("ReferencedSOPInstanceUID"), got)
				}
			}

			dir := t.TempDir()
			segPath := filepath.Join(dir, "seg.dcm")
			if err := os.WriteFile(segPath, obj.Part10, 0o644); err != nil {
				t.Fatal(err)
			}
			dciodvfy(t, segPath)
			dcmdumpE(t, segPath)
			files := append(slices.Clone(es.files), segPath)
			out, err := exec.Command(peers.Tool(t, "dcentvfy"), files...).CombinedOutput()
			if err != nil || bytes.Contains(out, []byte("Error")) {
				t.Fatalf("dcentvfy: %v\n%s", err, out)
			}
		})
	}
	// Input order does not matter, byte for byte.
	a, _ := BuildSEG(es.res, SEGOptions{})
	rev := *es.res
	rev.Sources = slices.Clone(es.res.Sources)
	slices.Reverse(rev.Sources)
	b, err := BuildSEG(&rev, SEGOptions{})
	if err != nil || !bytes.Equal(a.Part10, b.Part10) {
		t.Fatalf("rebuilding from reversed sources gave another SEG (%v)", err)
	}
}

func TestMultiFrameSC(t *testing.T) {
	es := makeEnhanced(t, enhancedOptions{instances: 2, frames: 3, rows: 40, cols: 17, seed: 8, perFrameOrientation: true})
	objs, err := BuildSC(es.res, SCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != len(es.res.Sources) {
		t.Fatalf("%d heat maps for %d frames", len(objs), len(es.res.Sources))
	}
	rev := *es.res
	rev.Sources = slices.Clone(es.res.Sources)
	slices.Reverse(rev.Sources)
	again, err := BuildSC(&rev, SCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bySrc := map[string]*SourceSlice{}
	for i := range es.res.Sources {
		bySrc[es.key(&es.res.Sources[i])] = &es.res.Sources[i]
	}
	seen := map[string]bool{}
	want := es.expected(true)
	dir := t.TempDir()
	files := slices.Clone(es.files)
	for i, o := range objs {
		if seen[o.SOPInstanceUID] {
			t.Fatalf("heat map UID %s used twice", o.SOPInstanceUID)
		}
		seen[o.SOPInstanceUID] = true
		if again[i].SOPInstanceUID != o.SOPInstanceUID || !bytes.Equal(again[i].Part10, o.Part10) {
			t.Fatalf("heat map %d differs when the sources come in another order", i)
		}
		body, err := o.DataSet()
		if err != nil {
			t.Fatal(err)
		}
		a, err := parseExplicitLE(body, 0)
		if err != nil {
			t.Fatal(err)
		}
		if n := a.String("NumberOfFrames"); n != "" {
			t.Errorf("heat map has NumberOfFrames %q; it must be single-frame", n)
		}
		ref := a.First("SourceImageSequence")
		sop := ref.String("ReferencedSOPInstanceUID")
		fn, err := frameNumbers(ref.Strings("ReferencedFrameNumber"))
		if err != nil || len(fn) != 1 {
			t.Fatalf("heat map %d: ReferencedFrameNumber %q (%v)", i, ref.Strings("ReferencedFrameNumber"), err)
		}
		src := bySrc[frameKey(sop, fn[0]-1)]
		if src == nil {
			t.Fatalf("heat map %d references %s frame %d, which is no source frame", i, sop, fn[0])
		}
		// Output order is position order, and each map is its own frame's.
		if src != want[i] {
			t.Errorf("heat map %d is of %s, want %s", i, es.key(src), es.key(want[i]))
		}
		if !slices.Equal(a.Strings("ImagePositionPatient"), es.pos[es.key(src)]) {
			t.Errorf("heat map %d: ImagePositionPatient %q, source frame's %q", i, a.Strings("ImagePositionPatient"), es.pos[es.key(src)])
		}
		if !slices.Equal(a.Strings("ImageOrientationPatient"), es.iop) || !slices.Equal(a.Strings("PixelSpacing"), es.spacing) ||
			a.String("SliceThickness") != es.thickness[0] || a.Has("SliceLocation") {
			t.Errorf("heat map %d: plane %q spacing %q thickness %q (SliceLocation %v)", i, a.Strings("ImageOrientationPatient"),
				a.Strings("PixelSpacing"), a.String("SliceThickness"), a.Has("SliceLocation"))
		}
		if a.String("InstanceNumber") != fmt.Sprint(i+1) {
			t.Errorf("heat map %d: InstanceNumber %q, want its rank %d", i, a.String("InstanceNumber"), i+1)
		}
		if want := es.res.SCFrameInstanceUID(sop, src.Frame); o.SOPInstanceUID != want {
			t.Errorf("heat map %d: UID %s, want SCFrameInstanceUID %s", i, o.SOPInstanceUID, want)
		}
		if src.Frame == 0 && o.SOPInstanceUID != es.res.SCInstanceUID(sop) {
			t.Errorf("frame 1's heat map does not keep the instance's single-frame UID")
		}
		pix := a.Bytes("PixelData")
		for p, m := range src.Mask {
			// The legend's band covers the bottom 16 rows.
			if m && p/src.Cols < src.Rows-16 && pix[3*p] == pix[3*p+1] && pix[3*p+1] == pix[3*p+2] {
				t.Fatalf("heat map %d: mask pixel %d is grey", i, p)
			}
		}
		p := filepath.Join(dir, fmt.Sprintf("sc%02d.dcm", i))
		if err := os.WriteFile(p, o.Part10, 0o644); err != nil {
			t.Fatal(err)
		}
		dciodvfy(t, p)
		files = append(files, p)
	}
	out, err := exec.Command(peers.Tool(t, "dcentvfy"), files...).CombinedOutput()
	if err != nil || bytes.Contains(out, []byte("Error")) {
		t.Fatalf("dcentvfy: %v\n%s", err, out)
	}
	// Another version: every frame's heat map gets a new UID.
	v2 := *es.res
	v2.Version = 2
	objs2, err := BuildSC(&v2, SCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs2 {
		if seen[o.SOPInstanceUID] {
			t.Fatal("version 2 reused a heat map UID")
		}
	}
}

// TestSourceGeometry reads frame planes from the header shapes a source can
// have; positions are never invented for a multi-frame source.
func TestSourceGeometry(t *testing.T) {
	item := func(kv ...any) *elems {
		e := &elems{}
		for i := 0; i < len(kv); i += 2 {
			switch v := kv[i+1].(type) {
			case []string:
				e.add(kv[i].(string), v)
			case *elems:
				e.seq(kv[i].(string), v)
			}
		}
		return e
	}
	pos := func(z string) *elems {
		return item("PlanePositionSequence", item("ImagePositionPatient", []string{"1", "2", z}))
	}
	orient := func(v string) *elems {
		return item("PlaneOrientationSequence", item("ImageOrientationPatient", []string{v, "0", "0", "0", "1", "0"}))
	}
	measures := item("PixelMeasuresSequence", item("PixelSpacing", []string{"0.5", "0.5"}, "SliceThickness", []string{"1.5"}))
	header := func(top *elems, shared *elems, perFrame ...*elems) *dicom.Dataset {
		e := &elems{}
		e.list = append(e.list, top.list...)
		if shared != nil {
			e.seq("SharedFunctionalGroupsSequence", shared)
		}
		if perFrame != nil {
			e.seq("PerFrameFunctionalGroupsSequence", perFrame...)
		}
		if e.err != nil {
			t.Fatal(e.err)
		}
		return &dicom.Dataset{Elements: e.sorted()}
	}
	classicTop := item("ImagePositionPatient", []string{"-1", "-2", "-3"}, "ImageOrientationPatient", []string{"0", "1", "0", "0", "0", "-1"},
		"PixelSpacing", []string{"0.9", "0.9"}, "SliceThickness", []string{"5"})
	sharedAll := &elems{}
	sharedAll.list = append(append(sharedAll.list, measures.list...), orient("1").list...)
	perFrameOrient := func(z, o string) *elems {
		e := pos(z)
		e.list = append(e.list, orient(o).list...)
		return e
	}
	frames := func(n int) *elems { return item("NumberOfFrames", []string{fmt.Sprint(n)}) }
	withFrames := func(n int, top *elems) *elems {
		e := &elems{}
		e.list = append(append(e.list, frames(n).list...), top.list...)
		return e
	}
	tests := []struct {
		name    string
		h       *dicom.Dataset
		frame   int
		ipp     string
		iop     string
		spacing string
		thick   string
		multi   bool
		err     string // substring of the error; "" for none
	}{
		{"classic single frame", header(classicTop, nil), 0, `-1\-2\-3`, `0\1\0\0\0\-1`, `0.9\0.9`, "5", false, ""},
		{"classic with NumberOfFrames 1", header(withFrames(1, classicTop), nil), 0, `-1\-2\-3`, `0\1\0\0\0\-1`, `0.9\0.9`, "5", false, ""},
		{"enhanced: per-frame position, shared rest", header(frames(3), sharedAll, pos("10"), pos("30"), pos("20")), 2, `1\2\20`, `1\0\0\0\1\0`, `0.5\0.5`, "1.5", true, ""},
		{"enhanced: per-frame orientation wins over shared", header(frames(2), sharedAll, perFrameOrient("10", "1"), perFrameOrient("30", "-1")), 1, `1\2\30`, `-1\0\0\0\1\0`, `0.5\0.5`, "1.5", true, ""},
		{"enhanced: shared position", header(frames(2), func() *elems { e := pos("7"); e.list = append(e.list, sharedAll.list...); return e }(), item("FrameContentSequence", item("FrameAcquisitionNumber", []string{"1"})), item("FrameContentSequence", item("FrameAcquisitionNumber", []string{"2"}))), 1, `1\2\7`, `1\0\0\0\1\0`, `0.5\0.5`, "1.5", true, ""},
		{"enhanced single frame with top-level position only", header(withFrames(1, classicTop), measures), 0, `-1\-2\-3`, `0\1\0\0\0\-1`, `0.5\0.5`, "1.5", true, ""},
		{"old multi-frame, top-level position only", header(withFrames(3, classicTop), nil), 1, "", "", "", "", true, "frame number 2 of 3 has no ImagePositionPatient"},
		{"enhanced without positions", header(frames(2), sharedAll, item("FrameContentSequence", item("FrameAcquisitionNumber", []string{"1"})), item("FrameContentSequence", item("FrameAcquisitionNumber", []string{"2"}))), 0, "", "", "", "", true, "frame number 1 of 2 has no ImagePositionPatient"},
		{"frame beyond NumberOfFrames", header(frames(2), sharedAll, pos("1"), pos("2")), 2, "", "", "", "", true, "frame number 3, but the source has 2 frame(s)"},
		{"per-frame items do not match NumberOfFrames", header(frames(3), sharedAll, pos("1"), pos("2")), 0, "", "", "", "", true, "2 Per-frame Functional Groups items for 3 frames"},
		{"classic: only frame 0", header(classicTop, nil), 1, "", "", "", "", false, "frame number 2, but the source has 1 frame(s)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g, err := sourceGeometry(&SourceSlice{Header: tc.h, Frame: tc.frame})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one saying %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := []string{strings.Join(g.ipp, `\`), strings.Join(g.iop, `\`), strings.Join(g.spacing, `\`), strings.Join(g.thickness, `\`)}
			if want := []string{tc.ipp, tc.iop, tc.spacing, tc.thick}; !slices.Equal(got, want) {
				t.Errorf("position, orientation, spacing, thickness = %q, want %q", got, want)
			}
			if g.multiFrame != tc.multi {
				t.Errorf("multiFrame %v, want %v", g.multiFrame, tc.multi)
			}
		})
	}
}

// TestMultiFrameWithoutPositions: the builders refuse a multi-frame source
// whose frames have no position, naming the frame, rather than guessing.
func TestMultiFrameWithoutPositions(t *testing.T) {
	es := makeEnhanced(t, enhancedOptions{instances: 1, frames: 3, rows: 8, cols: 8, seed: 3, noPositions: true})
	_, err := BuildSEG(es.res, SEGOptions{})
	if !errors.Is(err, ErrBadSource) || !strings.Contains(err.Error(), "frame number") || !strings.Contains(err.Error(), "of 3 has no ImagePositionPatient") {
		t.Fatalf("BuildSEG: %v, want ErrBadSource naming the frame", err)
	}
	if _, err := BuildSC(es.res, SCOptions{}); !errors.Is(err, ErrBadSource) {
		t.Fatalf("BuildSC: %v, want ErrBadSource", err)
	}
}

// TestMultiFrameSamePosition: frames that share a position are ordered by
// instance and frame, not by arrival, so the SEG is the same whatever the
// order of the sources.
func TestMultiFrameSamePosition(t *testing.T) {
	es := makeEnhanced(t, enhancedOptions{instances: 2, frames: 3, rows: 9, cols: 7, seed: 17, samePosition: true})
	a, err := BuildSEG(es.res, SEGOptions{AllSlices: true})
	if err != nil {
		t.Fatal(err)
	}
	rev := *es.res
	rev.Sources = slices.Clone(es.res.Sources)
	slices.Reverse(rev.Sources)
	b, err := BuildSEG(&rev, SEGOptions{AllSlices: true})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Part10, b.Part10) {
		t.Fatal("frames at one position came out in arrival order")
	}
	seg, err := ReadSEG(a.Part10)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range seg.Frames {
		got = append(got, fmt.Sprintf("%s/%v", f.SourceSOPInstanceUID, f.SourceFrameNumbers))
	}
	if !slices.IsSorted(got) {
		t.Errorf("frames at one position not ordered by instance and frame: %v", got)
	}
}

// fileOpener serves source instances from Part 10 files, as ingest's store
// serves the node's finaliser.
type fileOpener map[string]string

func (f fileOpener) OpenInstance(_ context.Context, sop string) (io.ReadCloser, string, error) {
	b, err := os.ReadFile(f[sop])
	if err != nil {
		return nil, "", err
	}
	body, err := bareDataSet(b)
	if err != nil {
		return nil, "", err
	}
	return io.NopCloser(bytes.NewReader(body)), dcm.ExplicitVRLittleEndian, nil
}

// TestFinaliserLoadsEveryFrame stores the scored frames of a multi-frame
// series in a real result store (embedded JetStream), leaves one frame
// without a record, and checks the finaliser loads each other frame as a
// slice of its own, whose SEG references instance and frame.
func TestFinaliserLoadsEveryFrame(t *testing.T) {
	ctx := context.Background()
	es := makeEnhanced(t, enhancedOptions{instances: 2, frames: 3, rows: 16, cols: 12, seed: 13})
	js := openJS(t)
	store, err := stage.OpenResultStore(ctx, js, "MF_RESULTS", 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	q, err := NewQueue(ctx, js, QueueConfig{Prefix: "MF"}, nil, testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	opener := fileOpener{}
	var sops []string
	for _, p := range es.files {
		hdr, err := dicom.ParseFile(p, nil, dicom.SkipPixelData())
		if err != nil {
			t.Fatal(err)
		}
		sop := getString(&hdr, "SOPInstanceUID")
		opener[sop] = p
		sops = append(sops, sop)
	}
	series := getString(es.res.Sources[0].Header, "SeriesInstanceUID")
	skipped := frameKey(sops[1], 1)
	scored := time.Date(2026, 11, 29, 14, 0, 0, 0, time.UTC)
	for i, s := range es.res.Sources {
		if es.key(&s) == skipped {
			continue
		}
		mask := make([]uint8, len(s.Mask))
		for p, m := range s.Mask {
			if m {
				mask[p] = 1
			}
		}
		rec := &inference.SliceRecord{SOPInstanceUID: getString(s.Header, "SOPInstanceUID"), SeriesInstanceUID: series, Frame: s.Frame,
			Rows: s.Rows, Cols: s.Cols, Scores: s.Scores, Mask: mask, Display: s.Display, Scored: scored.Add(time.Duration(i) * time.Second)}
		if err := store.Put(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	f, err := NewFinaliser(FinaliserOptions{Results: store, Instances: opener, Queue: q, Log: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	c := &ingest.SeriesCompletion{SeriesInstanceUID: series, Version: 1, Instances: sops, Frames: len(es.res.Sources)}
	res, _, err := f.load(ctx, c, ServedModel{Identity: es.res.Model, Threshold: es.res.Threshold})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Sources) != len(es.res.Sources)-1 {
		t.Fatalf("loaded %d slices, want %d (every frame but the one without a record)", len(res.Sources), len(es.res.Sources)-1)
	}
	got := map[string]bool{}
	for i := range res.Sources {
		s := &res.Sources[i]
		k := es.key(s)
		if got[k] || k == skipped {
			t.Fatalf("slice %s loaded twice or without a record", k)
		}
		got[k] = true
		for j := range es.res.Sources {
			if es.key(&es.res.Sources[j]) == k && !slices.Equal(es.res.Sources[j].Mask, s.Mask) {
				t.Errorf("slice %s: loaded mask is not the stored one", k)
			}
		}
	}
	obj, err := BuildSEG(res, SEGOptions{AllSlices: true})
	if err != nil {
		t.Fatal(err)
	}
	seg, err := ReadSEG(obj.Part10)
	if err != nil {
		t.Fatal(err)
	}
	if len(seg.Frames) != len(res.Sources) {
		t.Fatalf("%d SEG frames for %d loaded slices", len(seg.Frames), len(res.Sources))
	}
	for i, fr := range seg.Frames {
		if len(fr.SourceFrameNumbers) != 1 {
			t.Fatalf("frame %d: ReferencedFrameNumber %v", i+1, fr.SourceFrameNumbers)
		}
		k := frameKey(fr.SourceSOPInstanceUID, fr.SourceFrameNumbers[0]-1)
		if !got[k] || !slices.Equal(fr.ImagePositionPatient, es.pos[k]) {
			t.Errorf("frame %d references %s at %q, want a loaded frame at its own position %q", i+1, k, fr.ImagePositionPatient, es.pos[k])
		}
	}
}
