package fgroups

import (
	"errors"
	"testing"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
)

func el(t *testing.T, tg tag.Tag, v any) *dicom.Element {
	t.Helper()
	e, err := dicom.NewElement(tg, v)
	if err != nil {
		t.Fatalf("element %v: %v", tg, err)
	}
	return e
}

func value(e *dicom.Element) string {
	if e == nil {
		return "<nil>"
	}
	return dicom.MustGetStrings(e.Value)[0]
}

func TestFrameLookup(t *testing.T) {
	item := func(els ...*dicom.Element) []*dicom.Element { return els }
	sq := func(tg tag.Tag, items ...[]*dicom.Element) *dicom.Element { return el(t, tg, items) }
	pos := func(z string) []*dicom.Element {
		return item(sq(tag.PlanePositionSequence, item(el(t, tag.ImagePositionPatient, []string{"0", "0", z}))))
	}
	// Frame 2 overrides the shared window; frame 3 has no position item.
	frame2 := append(pos("5"), sq(tag.FrameVOILUTSequence, item(el(t, tag.WindowCenter, []string{"300"}))))
	ds := &dicom.Dataset{Elements: []*dicom.Element{
		sq(tag.SharedFunctionalGroupsSequence, item(
			sq(tag.FrameVOILUTSequence, item(el(t, tag.WindowCenter, []string{"40"}))),
			sq(tag.PlanePositionSequence, item(el(t, tag.ImagePositionPatient, []string{"9", "9", "9"}))),
		)),
		sq(tag.PerFrameFunctionalGroupsSequence, pos("0"), frame2, item(el(t, tag.FrameLabel, []string{"x"}))),
	}}
	if !Enhanced(ds) {
		t.Fatal("Enhanced = false for an object with functional groups")
	}
	for _, c := range []struct {
		frame        int
		window, posZ string
	}{
		{0, "40", "0"},
		{1, "300", "5"},
		{2, "40", "9"}, // no per-frame position: the shared one
	} {
		f, err := Of(ds, c.frame, 3)
		if err != nil {
			t.Fatal(err)
		}
		if got := value(f.Element(tag.FrameVOILUTSequence, tag.WindowCenter)); got != c.window {
			t.Errorf("frame %d: window %s, want %s", c.frame+1, got, c.window)
		}
		if e := f.Element(tag.PlanePositionSequence, tag.ImagePositionPatient); e == nil || dicom.MustGetStrings(e.Value)[2] != c.posZ {
			t.Errorf("frame %d: position %v, want z %s", c.frame+1, e, c.posZ)
		}
		if e := f.Element(tag.PixelMeasuresSequence, tag.PixelSpacing); e != nil {
			t.Errorf("frame %d: found a PixelSpacing nobody wrote: %v", c.frame+1, e)
		}
	}
	if _, err := Of(ds, 0, 4); !errors.Is(err, ErrItemCount) {
		t.Errorf("3 items for 4 frames: %v, want ErrItemCount", err)
	}
	if _, err := Of(ds, 3, 3); err == nil {
		t.Error("frame 4 of 3: no error")
	}

	classic := &dicom.Dataset{Elements: []*dicom.Element{el(t, tag.WindowCenter, []string{"40"})}}
	if Enhanced(classic) {
		t.Error("Enhanced = true for a classic object")
	}
	f, err := Of(classic, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	if e := f.Element(tag.FrameVOILUTSequence, tag.WindowCenter); e != nil {
		t.Errorf("classic object: found %v in functional groups it does not have", e)
	}
}
