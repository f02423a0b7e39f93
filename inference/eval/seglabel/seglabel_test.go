package seglabel

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"anomalynode/inference/pixel"
)

// fakeSEGs reads a file holding "SEG" as a 1 x 2 SEG of study S1 with two
// overlapping frames for image I1, "BAD" as a SEG whose frame lacks pixels,
// and nothing else.
func fakeSEGs(b []byte) (*SEG, error) {
	switch string(b) {
	case "SEG":
		return &SEG{StudyInstanceUID: "S1", Rows: 1, Cols: 2, Frames: []Frame{
			{SourceSOPInstanceUID: "I1", Mask: []bool{true, false}},
			{SourceSOPInstanceUID: "I1", Mask: []bool{false, true}},
		}}, nil
	case "BAD":
		return &SEG{StudyInstanceUID: "S1", Rows: 1, Cols: 2, Frames: []Frame{{SourceSOPInstanceUID: "I1", Mask: []bool{true}}}}, nil
	}
	return nil, errors.New("not a SEG")
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{"seg.dcm": "SEG", "sub/other.dcm": "not one", "notes.txt": "x"} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	l, err := Load(dir, fakeSEGs)
	if err != nil || l.Files != 1 {
		t.Fatalf("Load: %d SEG files, %v", l.Files, err)
	}
	cases := []struct {
		slice     pixel.Slice
		found     bool
		mask      []uint8
		wantError bool
	}{
		{pixel.Slice{SOPInstanceUID: "I1", StudyInstanceUID: "S1", Rows: 1, Cols: 2}, true, []uint8{1, 1}, false}, // segments merged
		// A slice of the SEG's study without a frame: healthy.
		{pixel.Slice{SOPInstanceUID: "I2", StudyInstanceUID: "S1", Rows: 1, Cols: 2}, true, []uint8{0, 0}, false},
		// Another study: unknown.
		{pixel.Slice{SOPInstanceUID: "I3", StudyInstanceUID: "S2", Rows: 1, Cols: 2}, false, []uint8{0, 0}, false},
		{pixel.Slice{SOPInstanceUID: "I1", StudyInstanceUID: "S1", Rows: 2, Cols: 1}, false, nil, true},
	}
	for i, c := range cases {
		s := c.slice
		masks := [][]uint8{make([]uint8, 2)}
		found, err := l.Masks([]*pixel.Slice{&s}, masks)
		if (err != nil) != c.wantError || found != c.found || (!c.wantError && !slices.Equal(masks[0], c.mask)) {
			t.Errorf("case %d: found %v mask %v err %v", i, found, masks[0], err)
		}
	}
	// Multi-frame images are not labelled by SEG.
	a, b := cases[0].slice, cases[0].slice
	if found, err := l.Masks([]*pixel.Slice{&a, &b}, [][]uint8{make([]uint8, 2), make([]uint8, 2)}); found || err != nil {
		t.Errorf("two frames: found %v err %v", found, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bad.dcm"), []byte("BAD"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir, fakeSEGs); err == nil {
		t.Error("a SEG frame with too few mask pixels was accepted")
	}
}
