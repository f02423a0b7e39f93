// Package fgroups reads the attributes of one frame of a multi-frame DICOM
// object from its Functional Groups (PS3.3 C.7.6.16): the frame's item of the
// Per-frame Functional Groups Sequence first, then the one item of the Shared
// Functional Groups Sequence. Enhanced CT and MR objects keep their geometry
// (Plane Position, Plane Orientation, Pixel Measures), modality LUT (Pixel
// Value Transformation) and VOI window (Frame VOI LUT) there instead of at the
// top level, so the decoder and the output builders both read through here.
package fgroups

import (
	"errors"
	"fmt"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
)

// ErrItemCount means the Per-frame Functional Groups Sequence does not have
// one item per frame, so which item describes which frame is unknown.
var ErrItemCount = errors.New("fgroups: not one Per-frame Functional Groups item per frame")

// Frame is where the functional-group attributes of one frame are found. The
// zero value (no functional groups) finds nothing.
type Frame struct {
	perFrame, shared *dicom.Dataset
}

// Of returns the functional groups of frame (0-based) of ds, an object of
// frames frames.
func Of(ds *dicom.Dataset, frame, frames int) (Frame, error) {
	var f Frame
	// Only the frame's own item is wrapped: callers ask frame by frame, and
	// an enhanced object may have hundreds of items.
	if per := rawItems(ds, tag.PerFrameFunctionalGroupsSequence); len(per) > 0 {
		// One item per frame, the first for frame 1 (C.7.6.16.1.2).
		if len(per) != frames {
			return f, fmt.Errorf("%d Per-frame Functional Groups items for %d frames (%w)", len(per), frames, ErrItemCount)
		}
		if frame < 0 || frame >= frames {
			return f, fmt.Errorf("fgroups: frame number %d of %d", frame+1, frames)
		}
		f.perFrame = itemDataset(per[frame])
	}
	if shared := rawItems(ds, tag.SharedFunctionalGroupsSequence); len(shared) > 0 {
		f.shared = itemDataset(shared[0])
	}
	return f, nil
}

// Enhanced says whether ds has Functional Groups at all (an enhanced object).
func Enhanced(ds *dicom.Dataset) bool {
	return find(ds, tag.PerFrameFunctionalGroupsSequence) != nil || find(ds, tag.SharedFunctionalGroupsSequence) != nil
}

// Element returns attribute t of the frame's functional group macro (a
// sequence such as PlanePositionSequence): from the Per-frame item when it has
// it, else from the Shared item; nil when neither has it.
func (f Frame) Element(macro, t tag.Tag) *dicom.Element {
	for _, group := range []*dicom.Dataset{f.perFrame, f.shared} {
		if items := Items(group, macro); len(items) > 0 {
			if el := find(items[0], t); el != nil {
				return el
			}
		}
	}
	return nil
}

// Items returns the items of sequence t of ds as data sets (nil when absent).
func Items(ds *dicom.Dataset, t tag.Tag) []*dicom.Dataset {
	items := rawItems(ds, t)
	if items == nil {
		return nil
	}
	out := make([]*dicom.Dataset, 0, len(items))
	for _, it := range items {
		out = append(out, itemDataset(it))
	}
	return out
}

func rawItems(ds *dicom.Dataset, t tag.Tag) []*dicom.SequenceItemValue {
	el := find(ds, t)
	if el == nil || el.Value == nil || el.Value.ValueType() != dicom.Sequences {
		return nil
	}
	items, _ := el.Value.GetValue().([]*dicom.SequenceItemValue)
	return items
}

func itemDataset(it *dicom.SequenceItemValue) *dicom.Dataset {
	els, _ := it.GetValue().([]*dicom.Element)
	return &dicom.Dataset{Elements: els}
}

func find(ds *dicom.Dataset, t tag.Tag) *dicom.Element {
	if ds == nil {
		return nil
	}
	el, err := ds.FindElementByTag(t)
	if err != nil {
		return nil
	}
	return el
}
