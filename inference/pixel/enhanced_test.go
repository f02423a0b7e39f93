package pixel

import (
	"bytes"
	"strconv"
	"testing"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"anomalynode/inference/pixel/pixeltest"
	"anomalynode/internal/synth"
)

// An Enhanced MR instance keeps its window and every frame's position in the
// Functional Groups only: each decoded frame must carry them as a classic
// slice of the same series does, or the frames would be windowed differently
// from the slices the model was fitted on.
func TestDecodeEnhancedMRFunctionalGroups(t *testing.T) {
	r, err := synth.Generate(synth.Options{Seed: 7, Slices: 4, Rows: 24, Cols: 20, Source: synth.SourcePhantom})
	if err != nil {
		t.Fatal(err)
	}
	order := []int{2, 0, 3, 1}
	data, enh, err := r.EncodeEnhanced(order)
	if err != nil {
		t.Fatal(err)
	}
	frames, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(frames) != len(order) {
		t.Fatalf("%d frames, want %d", len(frames), len(order))
	}
	first, err := r.EncodeSlice(0)
	if err != nil {
		t.Fatal(err)
	}
	classic, err := Decode(first)
	if err != nil {
		t.Fatal(err)
	}
	want := classic[0]
	if !want.HasWindow {
		t.Fatal("the classic synth slice has no window: the comparison below would prove nothing")
	}
	for f, s := range frames {
		if !s.HasWindow || s.WindowCenter != want.WindowCenter || s.WindowWidth != want.WindowWidth {
			t.Errorf("frame %d: window %v (%v/%v), want %v/%v as the classic slices", f+1, s.HasWindow, s.WindowCenter, s.WindowWidth, want.WindowCenter, want.WindowWidth)
		}
		if s.Slope != want.Slope || s.Intercept != want.Intercept {
			t.Errorf("frame %d: rescale %v/%v, want %v/%v", f+1, s.Slope, s.Intercept, want.Slope, want.Intercept)
		}
		if len(s.ImagePosition) != 3 {
			t.Fatalf("frame %d: no position", f+1)
		}
		for i, v := range enh.Positions[f] {
			if w, _ := strconv.ParseFloat(v, 64); s.ImagePosition[i] != w {
				t.Errorf("frame %d: position %v, want %v", f+1, s.ImagePosition, enh.Positions[f])
				break
			}
		}
	}
}

// An Enhanced CT's RescaleIntercept (-1024) is only in Pixel Value
// Transformation: without it every Hounsfield value would be 1024 too high.
// Per-frame values win over shared ones, the top level is the fallback, and a
// per-frame sequence of the wrong length is an error, not a guess.
func TestDecodeFunctionalGroupPrecedence(t *testing.T) {
	item := func(els ...*dicom.Element) []*dicom.Element { return els }
	seqEl := func(tg tag.Tag, items ...[]*dicom.Element) *dicom.Element { return pixeltest.Element(t, tg, items) }
	shared := seqEl(tag.SharedFunctionalGroupsSequence, item(
		seqEl(tag.PixelValueTransformationSequence, item(
			pixeltest.Element(t, tag.RescaleIntercept, []string{"-1024"}), pixeltest.Element(t, tag.RescaleSlope, []string{"1"}))),
		seqEl(tag.FrameVOILUTSequence, item(
			pixeltest.Element(t, tag.WindowCenter, []string{"40"}), pixeltest.Element(t, tag.WindowWidth, []string{"400"}))),
	))
	perFrame := func(n int) *dicom.Element {
		var items [][]*dicom.Element
		for f := 0; f < n; f++ {
			it := item(seqEl(tag.PlanePositionSequence, item(
				pixeltest.Element(t, tag.ImagePositionPatient, []string{"0", "0", strconv.Itoa(5 * f)}))))
			if f == 1 {
				it = append(it, seqEl(tag.FrameVOILUTSequence, item(
					pixeltest.Element(t, tag.WindowCenter, []string{"300"}), pixeltest.Element(t, tag.WindowWidth, []string{"1500"}))))
			}
			items = append(items, it)
		}
		return seqEl(tag.PerFrameFunctionalGroupsSequence, items...)
	}
	spec := pixeltest.Spec{Rows: 2, Cols: 3, Frames: 3, Slope: "3", Intercept: "7", WC: "1", WW: "2", Raw: pixeltest.Ramp(18, func(i int) uint32 { return uint32(i) })}
	decode := func(extra ...*dicom.Element) ([]*Slice, error) {
		ds, err := dicom.ParseUntilEOF(bytes.NewReader(pixeltest.Build(t, spec)), nil, dicom.SkipProcessingPixelDataValue())
		if err != nil {
			t.Fatal(err)
		}
		ds.Elements = append(ds.Elements, extra...)
		return DecodeDataset(&ds)
	}

	frames, err := decode(shared, perFrame(3))
	if err != nil {
		t.Fatal(err)
	}
	for f, s := range frames {
		wc, ww := 40.0, 400.0
		if f == 1 {
			wc, ww = 300, 1500
		}
		if s.Slope != 1 || s.Intercept != -1024 || s.WindowCenter != wc || s.WindowWidth != ww {
			t.Errorf("frame %d: rescale %v/%v window %v/%v, want 1/-1024 %v/%v", f+1, s.Slope, s.Intercept, s.WindowCenter, s.WindowWidth, wc, ww)
		}
		if len(s.ImagePosition) != 3 || s.ImagePosition[2] != float64(5*f) {
			t.Errorf("frame %d: position %v", f+1, s.ImagePosition)
		}
	}
	if v := frames[0].ModalityValues()[4]; v != 4-1024 {
		t.Errorf("modality value %v, want %v", v, 4-1024)
	}

	// Per-frame positions only: the rescale and window stay the top level's.
	frames, err = decode(perFrame(3))
	if err != nil {
		t.Fatal(err)
	}
	if s := frames[2]; s.Slope != 3 || s.Intercept != 7 || s.WindowCenter != 1 || s.ImagePosition[2] != 10 {
		t.Errorf("top-level fallback: %v/%v window %v position %v", s.Slope, s.Intercept, s.WindowCenter, s.ImagePosition)
	}

	if _, err := decode(shared, perFrame(2)); !errorsIs(err, ErrBadPixelData) {
		t.Errorf("2 per-frame items for 3 frames: %v, want ErrBadPixelData", err)
	}
}
