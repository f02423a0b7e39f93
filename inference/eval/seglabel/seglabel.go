// Package seglabel reads ground-truth masks from binary DICOM Segmentation
// objects for the evaluation driver (eval.LabelSource). The SEG parser itself
// is the caller's (a Reader; the command wires the output package's ReadSEG),
// so this package, below output, does not import it.
package seglabel

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"anomalynode/inference/eval"
	"anomalynode/inference/pixel"
)

// SEG is what Load needs of one binary segmentation object.
type SEG struct {
	// StudyInstanceUID is the segmented study.
	StudyInstanceUID string
	// Rows and Cols are the frame size.
	Rows, Cols int
	// Frames are the segmentation's frames.
	Frames []Frame
}

// Frame is one SEG frame: the image it segments and its mask.
type Frame struct {
	// SourceSOPInstanceUID is the segmented image (the frame's derivation source).
	SourceSOPInstanceUID string
	// Mask is Rows*Cols, true inside the segment.
	Mask []bool
}

// Reader parses a file's bytes as a binary SEG; an error means the file is
// not one it can read, and Load ignores it.
type Reader func(part10 []byte) (*SEG, error)

var _ eval.LabelSource = (*Labels)(nil)

// Labels holds the masks of the SEGs found under a folder, by source SOP
// Instance UID, and the studies they cover.
type Labels struct {
	bySOP   map[string][]bool
	size    map[string][2]int
	studies map[string]bool
	// Files counts the SEG objects read.
	Files int
}

// Load reads every file under dir that read parses as a binary SEG; other
// files are ignored. Overlapping segments are merged: a pixel is anomalous
// when any segment marks it.
func Load(dir string, read Reader) (*Labels, error) {
	l := &Labels{bySOP: map[string][]bool{}, size: map[string][2]int{}, studies: map[string]bool{}}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		seg, err := read(b)
		if err != nil {
			return nil // not a readable SEG: not a label
		}
		l.Files++
		l.studies[seg.StudyInstanceUID] = true
		for _, fr := range seg.Frames {
			uid := fr.SourceSOPInstanceUID
			if len(fr.Mask) != seg.Rows*seg.Cols || uid == "" {
				return fmt.Errorf("SEG %s: frame for %q has %d mask pixels for %dx%d", path, uid, len(fr.Mask), seg.Rows, seg.Cols)
			}
			m, ok := l.bySOP[uid]
			if !ok {
				m = make([]bool, len(fr.Mask))
				l.bySOP[uid] = m
				l.size[uid] = [2]int{seg.Rows, seg.Cols}
			}
			for i, v := range fr.Mask {
				m[i] = m[i] || v
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("seglabel: %w", err)
	}
	return l, nil
}

// Masks implements eval.LabelSource for single-frame images: the SEG frames
// that reference the image, or an empty mask when a SEG covers its study but
// has no frame for it (BINARY SEGs usually omit empty frames).
func (l *Labels) Masks(slices []*pixel.Slice, masks [][]uint8) (bool, error) {
	if len(slices) != 1 {
		return false, nil
	}
	s := slices[0]
	m, ok := l.bySOP[s.SOPInstanceUID]
	if !ok {
		return l.studies[s.StudyInstanceUID], nil
	}
	if sz := l.size[s.SOPInstanceUID]; sz[0] != s.Rows || sz[1] != s.Cols {
		return false, fmt.Errorf("seglabel: SEG frames are %dx%d, image %dx%d", sz[0], sz[1], s.Rows, s.Cols)
	}
	for i, v := range m {
		if v {
			masks[0][i] = 1
		} else {
			masks[0][i] = 0
		}
	}
	return true, nil
}
