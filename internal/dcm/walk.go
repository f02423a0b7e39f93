package dcm

import (
	"encoding/binary"
	"fmt"
)

// UndefinedLength is the value length of a sequence, an item or encapsulated
// Pixel Data whose end a delimiter marks (PS3.5 7.1.1).
const UndefinedLength uint32 = 0xFFFFFFFF

// Group FFFE holds items and their delimiters (PS3.5 7.5): in every transfer
// syntax their header is the tag and a 4-byte length, with no VR.
const (
	ItemGroup                = 0xFFFE
	Item                     = 0xE000
	ItemDelimitationItem     = 0xE00D
	SequenceDelimitationItem = 0xE0DD
)

// Header is the header of one data element, item or delimiter.
type Header struct {
	Group, Element uint16
	// VR is the explicit VR; "" in implicit VR and for items and delimiters.
	VR string
	// Length is the value length; UndefinedLength for a delimited value.
	Length uint32
}

// Walker reads the element and item headers of an encoded data set held in
// memory, and their values, from Pos up to End. It never reads or returns a
// byte past End: a header cut off, or a defined length that would run past
// End, is an error before anything is sliced, so whatever a caller allocates
// from a walk is bounded by its input. It only moves forwards, one nesting
// level at a time: a defined-length sequence or item is walked by the Walker
// Within returns, a delimited one by the same Walker up to its delimiter.
// Errors are plain and say where; the caller wraps them with its own sentinel.
type Walker struct {
	data []byte
	// Pos is the offset in the data of the next header or value.
	Pos int
	// End is the offset the walk stops at: the end of the data, or of the
	// sequence or item being walked.
	End      int
	explicit bool
	order    binary.ByteOrder
}

// NewWalker walks data from pos to its end, in explicit or implicit VR and
// byte order order.
func NewWalker(data []byte, pos int, explicit bool, order binary.ByteOrder) *Walker {
	return &Walker{data: data, Pos: pos, End: len(data), explicit: explicit, order: order}
}

// More reports whether any byte remains before End.
func (w *Walker) More() bool { return w.Pos < w.End }

// Peek returns the tag at Pos without moving; ok is false when fewer than the
// 8 bytes of the shortest header remain before End.
func (w *Walker) Peek() (group, elem uint16, ok bool) {
	if w.End-w.Pos < 8 {
		return 0, 0, false
	}
	return w.order.Uint16(w.data[w.Pos:]), w.order.Uint16(w.data[w.Pos+2:]), true
}

// Element reads a data element header and moves to its value: in explicit VR
// two capital letters and a 2-byte length, or for a long VR (LongVR) two
// reserved bytes and a 4-byte length (PS3.5 7.1.2); in implicit VR a 4-byte
// length.
func (w *Walker) Element() (Header, error) {
	group, elem, ok := w.Peek()
	if !ok {
		return Header{}, fmt.Errorf("element header at byte %d cut off", w.Pos)
	}
	h := Header{Group: group, Element: elem}
	b := w.data[w.Pos:w.End]
	if !w.explicit {
		h.Length = w.order.Uint32(b[4:])
		w.Pos += 8
		return h, nil
	}
	if b[4] < 'A' || b[4] > 'Z' || b[5] < 'A' || b[5] > 'Z' {
		return Header{}, fmt.Errorf("element (%04X,%04X) at byte %d has no valid VR", group, elem, w.Pos)
	}
	h.VR = string(b[4:6])
	if !LongVR(h.VR) {
		h.Length = uint32(w.order.Uint16(b[6:]))
		w.Pos += 8
		return h, nil
	}
	if len(b) < 12 {
		return Header{}, fmt.Errorf("element (%04X,%04X) at byte %d: %s header cut off", group, elem, w.Pos, h.VR)
	}
	h.Length = w.order.Uint32(b[8:])
	w.Pos += 12
	return h, nil
}

// Item reads an item or delimiter header, or whatever stands where one
// should (the caller checks the tag), and moves to its value.
func (w *Walker) Item() (Header, error) {
	group, elem, ok := w.Peek()
	if !ok {
		return Header{}, fmt.Errorf("item header at byte %d cut off", w.Pos)
	}
	h := Header{Group: group, Element: elem, Length: w.order.Uint32(w.data[w.Pos+4:])}
	w.Pos += 8
	return h, nil
}

// Value returns the n bytes at Pos and moves past them; it is an error, and
// w does not move, when they would run past End (as UndefinedLength does).
func (w *Walker) Value(n uint32) ([]byte, error) {
	if uint64(n) > uint64(w.End-w.Pos) {
		return nil, fmt.Errorf("value of %d bytes at byte %d runs past the end (%d bytes left)", n, w.Pos, w.End-w.Pos)
	}
	v := w.data[w.Pos : w.Pos+int(n)]
	w.Pos += int(n)
	return v, nil
}

// Within returns a Walker over the n bytes at Pos (the value of a
// defined-length sequence or item, in the same syntax, at the same offsets)
// and moves w past them; an error, as for Value, when they would run past End.
func (w *Walker) Within(n uint32) (*Walker, error) {
	start := w.Pos
	if _, err := w.Value(n); err != nil {
		return nil, err
	}
	return &Walker{data: w.data, Pos: start, End: w.Pos, explicit: w.explicit, order: w.order}, nil
}
