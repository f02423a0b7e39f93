package output

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzReadSEG feeds arbitrary bytes to the SEG reader: it must return an
// error or a SEG whose frames have Rows*Cols pixels, never panic.
func FuzzReadSEG(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "*.dcm"))
	for _, p := range seeds {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		seg, err := ReadSEG(data)
		if err != nil {
			return
		}
		for i, fr := range seg.Frames {
			if len(fr.Mask) != seg.Rows*seg.Cols {
				t.Fatalf("frame %d has %d pixels for %dx%d", i, len(fr.Mask), seg.Rows, seg.Cols)
			}
		}
	})
}
