package synth

import (
	"bytes"
	"errors"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"anomalynode/internal/peers"
)

// items returns the items of the sequence tg in ds.
func items(t *testing.T, ds dicom.Dataset, tg tag.Tag) []dicom.Dataset {
	t.Helper()
	e, err := ds.FindElementByTag(tg)
	if err != nil {
		t.Fatalf("missing %v: %v", tg, err)
	}
	var out []dicom.Dataset
	for _, it := range e.Value.GetValue().([]*dicom.SequenceItemValue) {
		out = append(out, dicom.Dataset{Elements: it.GetValue().([]*dicom.Element)})
	}
	return out
}

// TestWriteEnhanced writes a series as one Enhanced MR instance with its
// frames out of position order and checks it with an independent parser
// (suyashkumar/dicom) and dciodvfy: every frame carries its slice's position
// and pixels, the shared groups the series' geometry.
func TestWriteEnhanced(t *testing.T) {
	r, err := Generate(Options{Seed: 31, Slices: 5, Rows: 24, Cols: 20, Lesions: 1, Source: SourcePhantom})
	if err != nil {
		t.Fatal(err)
	}
	order := []int{3, 0, 4, 2, 1}
	path := filepath.Join(t.TempDir(), "enhanced.dcm")
	e, err := WriteEnhanced(path, r, order)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(e.Slices, order) || len(e.Positions) != len(order) {
		t.Fatalf("Enhanced = %+v, want slices %v and a position per frame", e, order)
	}
	if e.Frame(4) != 3 || e.Frame(3) != 1 || e.Frame(7) != 0 {
		t.Errorf("Frame(4), Frame(3), Frame(7) = %d, %d, %d, want 3, 1, 0", e.Frame(4), e.Frame(3), e.Frame(7))
	}

	ds, err := dicom.ParseFile(path, nil)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	for tg, want := range map[tag.Tag]string{
		tag.SOPClassUID: EnhancedMRImageStorage, tag.MediaStorageSOPClassUID: EnhancedMRImageStorage,
		tag.SOPInstanceUID: e.SOPInstanceUID, tag.MediaStorageSOPInstanceUID: e.SOPInstanceUID,
		tag.StudyInstanceUID: r.StudyInstanceUID, tag.SeriesInstanceUID: r.SeriesInstanceUID,
		tag.FrameOfReferenceUID: r.FrameOfReferenceUID, tag.NumberOfFrames: "5", tag.Modality: "MR",
	} {
		if got := strs(t, ds, tg); len(got) != 1 || strings.TrimRight(got[0], " \x00") != want {
			t.Errorf("%v = %q, want %q", tg, got, want)
		}
	}
	// A node ignores DERIVED images of our manufacturer (its own outputs).
	if it := strs(t, ds, tag.ImageType); it[0] != "ORIGINAL" {
		t.Errorf("ImageType %q, want ORIGINAL first", it)
	}
	for _, tg := range []tag.Tag{tag.ImagePositionPatient, tag.ImageOrientationPatient, tag.PixelSpacing, tag.SliceLocation} {
		if _, err := ds.FindElementByTag(tg); err == nil {
			t.Errorf("%v at the top level; an enhanced image keeps it in the functional groups", tg)
		}
	}
	shared := items(t, ds, tag.SharedFunctionalGroupsSequence)
	if len(shared) != 1 {
		t.Fatalf("%d shared items", len(shared))
	}
	pm := items(t, shared[0], tag.PixelMeasuresSequence)[0]
	if got := floats(t, pm, tag.PixelSpacing); got[0] != r.PixelSpacing || got[1] != r.PixelSpacing {
		t.Errorf("shared PixelSpacing %v, want %v", got, r.PixelSpacing)
	}
	if got := floats(t, items(t, shared[0], tag.PlaneOrientationSequence)[0], tag.ImageOrientationPatient); !slices.Equal(got, r.Orientation[:]) {
		t.Errorf("shared ImageOrientationPatient %v, want %v", got, r.Orientation)
	}

	perFrame := items(t, ds, tag.PerFrameFunctionalGroupsSequence)
	if len(perFrame) != len(order) {
		t.Fatalf("%d per-frame items, want %d", len(perFrame), len(order))
	}
	pix, err := ds.FindElementByTag(tag.PixelData)
	if err != nil {
		t.Fatal(err)
	}
	frames := dicom.MustGetPixelDataInfo(pix.Value).Frames
	if len(frames) != len(order) {
		t.Fatalf("%d frames of pixel data, want %d", len(frames), len(order))
	}
	for f, k := range order {
		sl := r.Slices[k]
		item := perFrame[f]
		pp := items(t, item, tag.PlanePositionSequence)[0]
		if got := floats(t, pp, tag.ImagePositionPatient); !slices.Equal(got, sl.Position[:]) {
			t.Errorf("frame %d at %v, slice %d at %v", f+1, got, k, sl.Position)
		}
		if got := strs(t, pp, tag.ImagePositionPatient); !slices.Equal(got, e.Positions[f]) {
			t.Errorf("frame %d position written %q, reported %q", f+1, got, e.Positions[f])
		}
		if got := ints(t, items(t, item, tag.FrameContentSequence)[0], tag.DimensionIndexValues); !slices.Equal(got, []int{sl.InstanceNumber}) {
			t.Errorf("frame %d DimensionIndexValues %v, want [%d]", f+1, got, sl.InstanceNumber)
		}
		nf, err := frames[f].GetNativeFrame()
		if err != nil {
			t.Fatal(err)
		}
		for i, want := range sl.Stored {
			if got, err := nf.GetPixel(i%r.Cols, i/r.Cols); err != nil || got[0] != int(want) {
				t.Fatalf("frame %d pixel %d = %v (%v), slice %d has %d", f+1, i, got, err, k, want)
			}
		}
	}
	// Frames out of position order: the fixture is useful only so.
	if slices.IsSorted(order) {
		t.Fatal("the order is sorted")
	}

	out, err := exec.Command(peers.Tool(t, "dciodvfy"), "-new", path).CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "Error") {
			t.Errorf("dciodvfy: %s", line)
		}
	}
	if err != nil {
		t.Errorf("dciodvfy exit: %v\n%s", err, out)
	}

	// The same call gives the same bytes; another order another instance.
	b1, _, err := r.EncodeEnhanced(order)
	if err != nil {
		t.Fatal(err)
	}
	b2, e2, err := r.EncodeEnhanced(order)
	if err != nil || !bytes.Equal(b1, b2) || e2.SOPInstanceUID != e.SOPInstanceUID {
		t.Errorf("EncodeEnhanced is not deterministic (err %v)", err)
	}
	_, all, err := r.EncodeEnhanced(nil)
	if err != nil || !slices.Equal(all.Slices, []int{0, 1, 2, 3, 4}) || all.SOPInstanceUID == e.SOPInstanceUID {
		t.Errorf("EncodeEnhanced(nil) = %+v, %v; want every slice in order in another instance", all, err)
	}
}

// TestWriteEnhancedRefuses: what an Enhanced MR instance cannot hold.
func TestWriteEnhancedRefuses(t *testing.T) {
	mr, err := Generate(Options{Seed: 3, Slices: 3, Rows: 8, Cols: 8, Source: SourcePhantom})
	if err != nil {
		t.Fatal(err)
	}
	ct, err := Generate(Options{Seed: 3, Slices: 3, Rows: 8, Cols: 8, Source: SourcePhantom, Modality: ModalityCT})
	if err != nil {
		t.Fatal(err)
	}
	m1, err := Generate(Options{Seed: 3, Slices: 3, Rows: 8, Cols: 8, Source: SourcePhantom, Monochrome1: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		r     *Result
		order []int
	}{
		{"CT", ct, nil},
		{"MONOCHROME1", m1, nil},
		{"empty", mr, []int{}},
		{"out of range", mr, []int{0, 3}},
		{"negative", mr, []int{-1}},
		{"repeated", mr, []int{1, 1}},
	} {
		if _, _, err := c.r.EncodeEnhanced(c.order); !errors.Is(err, ErrBadOptions) {
			t.Errorf("%s: err %v, want ErrBadOptions", c.name, err)
		}
	}
}
