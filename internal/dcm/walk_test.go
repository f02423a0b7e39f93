package dcm

import (
	"encoding/binary"
	"testing"
)

func TestWalkerElement(t *testing.T) {
	le := binary.LittleEndian
	cases := []struct {
		name     string
		b        []byte
		explicit bool
		want     Header
		pos      int // after the header; 0: an error
	}{
		{"short VR", []byte{0x28, 0, 0x10, 0, 'U', 'S', 2, 0}, true, Header{0x0028, 0x0010, "US", 2}, 8},
		{"long VR", []byte{0xE0, 0x7F, 0x10, 0, 'O', 'W', 0, 0, 0x00, 0x01, 0, 0}, true, Header{0x7FE0, 0x0010, "OW", 256}, 12},
		{"long VR cut off", []byte{0xE0, 0x7F, 0x10, 0, 'O', 'B', 0, 0, 1}, true, Header{}, 0},
		{"not a VR", []byte{0x28, 0, 0x10, 0, 2, 0, 0, 0}, true, Header{}, 0},
		{"too short", []byte{0x28, 0, 0x10}, true, Header{}, 0},
		{"implicit", []byte{0x28, 0, 0x10, 0, 2, 0, 0, 0}, false, Header{0x0028, 0x0010, "", 2}, 8},
		{"implicit undefined", []byte{0x08, 0, 0x15, 0x11, 0xFF, 0xFF, 0xFF, 0xFF}, false, Header{0x0008, 0x1115, "", UndefinedLength}, 8},
	}
	for _, tc := range cases {
		w := NewWalker(tc.b, 0, tc.explicit, le)
		h, err := w.Element()
		if tc.pos == 0 {
			if err == nil || w.Pos != 0 {
				t.Errorf("%s: got %+v at %d, want an error and no move", tc.name, h, w.Pos)
			}
			continue
		}
		if err != nil || h != tc.want || w.Pos != tc.pos {
			t.Errorf("%s: got %+v at %d (%v), want %+v at %d", tc.name, h, w.Pos, err, tc.want, tc.pos)
		}
	}
	// Big endian reads the tag and the length the other way round.
	w := NewWalker([]byte{0, 0x28, 0, 0x10, 'U', 'S', 0, 2}, 0, true, binary.BigEndian)
	if h, err := w.Element(); err != nil || h != (Header{0x0028, 0x0010, "US", 2}) {
		t.Errorf("big endian: %+v %v", h, err)
	}
}

func TestWalkerBounds(t *testing.T) {
	// An item of 4 bytes holding (0010,0010) PN of 2 bytes that claims 6,
	// then a sequence delimiter.
	b := []byte{
		0xFE, 0xFF, 0x00, 0xE0, 12, 0, 0, 0,
		0x10, 0, 0x10, 0, 'P', 'N', 6, 0, 'A', 'B', 0, 0,
		0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0,
	}
	w := NewWalker(b, 0, true, binary.LittleEndian)
	it, err := w.Item()
	if err != nil || it.Group != ItemGroup || it.Element != Item || it.Length != 12 || w.Pos != 8 {
		t.Fatalf("item %+v at %d: %v", it, w.Pos, err)
	}
	in, err := w.Within(it.Length)
	if err != nil || in.Pos != 8 || in.End != 20 || w.Pos != 20 {
		t.Fatalf("within: %+v, outer at %d: %v", in, w.Pos, err)
	}
	h, err := in.Element()
	if err != nil || h.VR != "PN" || h.Length != 6 {
		t.Fatalf("element %+v: %v", h, err)
	}
	// The value runs past the item though not past the data: refused, no move.
	if v, err := in.Value(h.Length); err == nil || in.Pos != 16 {
		t.Fatalf("value %q at %d: want an error and no move", v, in.Pos)
	}
	if v, err := in.Value(4); err != nil || string(v[:2]) != "AB" || in.More() {
		t.Fatalf("value %q: %v, more %v", v, err, in.More())
	}
	if _, err := in.Value(UndefinedLength); err == nil {
		t.Fatal("an undefined length read as a value")
	}
	if _, err := w.Within(9); err == nil || w.Pos != 20 {
		t.Fatalf("within past the end: %v, at %d", err, w.Pos)
	}
	if g, e, ok := w.Peek(); !ok || g != ItemGroup || e != SequenceDelimitationItem {
		t.Fatalf("peek (%04X,%04X) %v", g, e, ok)
	}
	if _, err := w.Item(); err != nil || w.More() {
		t.Fatalf("delimiter: %v, more %v", err, w.More())
	}
	if _, _, ok := w.Peek(); ok {
		t.Fatal("peek past the end")
	}
	if _, err := w.Item(); err == nil {
		t.Fatal("item past the end")
	}
}

// FuzzWalker walks arbitrary bytes as explicit and implicit VR, into every
// defined-length value as if it were a sequence: the walk must never panic,
// move backwards or hand out a byte past its end.
func FuzzWalker(f *testing.F) {
	f.Add([]byte{0x08, 0, 0x15, 0x11, 'S', 'Q', 0, 0, 16, 0, 0, 0, 0xFE, 0xFF, 0x00, 0xE0, 8, 0, 0, 0, 0x10, 0, 0x10, 0, 'P', 'N', 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, explicit := range []bool{true, false} {
			walkAll(t, NewWalker(b, 0, explicit, binary.LittleEndian), 0)
		}
	})
}

func walkAll(t *testing.T, w *Walker, depth int) {
	for w.More() && depth < 8 {
		start := w.Pos
		var h Header
		var err error
		if g, _, ok := w.Peek(); ok && g == ItemGroup {
			h, err = w.Item()
		} else {
			h, err = w.Element()
		}
		if err != nil {
			if w.Pos != start {
				t.Fatalf("moved from %d to %d on error %v", start, w.Pos, err)
			}
			return
		}
		if h.Length == UndefinedLength {
			continue
		}
		in, err := w.Within(h.Length)
		if err != nil {
			return
		}
		if in.Pos < start || in.End > w.End || w.Pos != in.End {
			t.Fatalf("within [%d,%d) of a walk now at %d, end %d", in.Pos, in.End, w.Pos, w.End)
		}
		walkAll(t, in, depth+1)
	}
}
