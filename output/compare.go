package output

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"anomalynode/inference/findings"
	"anomalynode/internal/npy"
	"anomalynode/internal/synth"
)

// DefaultMinLesionMM3 is the smallest painted lesion a detection report
// counts (issue 19: lesions of at least 0.5 cm3).
const DefaultMinLesionMM3 = 500

// LesionReport compares the SEGs a node returned for a synthetic series
// (anomalynode synth --lesions) with the lesions painted into it: the proof
// that the node finds what is there, used by the demo, the drills and the
// viewer test.
type LesionReport struct {
	// SEGs counts the SEG objects that reference the series.
	SEGs int `json:"segs"`
	// Segments counts their segments (findings, or one per-pixel mask).
	Segments int `json:"segments"`
	// Lesions are the painted lesions (connected regions of the label masks
	// on the series' geometry) of at least the minimum volume; Small counts
	// the smaller ones, left out.
	Lesions []LesionMatch `json:"lesions"`
	// Small counts painted lesions below the minimum volume.
	Small int `json:"small"`
	// Detected counts Lesions overlapped by a SEG voxel.
	Detected int `json:"detected"`
	// Dice compares every SEG voxel with every painted lesion voxel (-1
	// when both are empty).
	Dice float64 `json:"dice"`
	// SEGVoxels and LesionVoxels are the two sides of Dice.
	SEGVoxels    int `json:"seg_voxels"`
	LesionVoxels int `json:"lesion_voxels"`
}

// LesionMatch is one painted lesion and how the SEG covers it.
type LesionMatch struct {
	// VolumeMM3 and CentroidMM describe the painted lesion.
	VolumeMM3  float64    `json:"volume_mm3"`
	CentroidMM [3]float64 `json:"centroid_mm"`
	// Detected is true when a SEG voxel overlaps it.
	Detected bool `json:"detected"`
	// Dice compares the lesion with the SEG segments that overlap it.
	Dice float64 `json:"dice"`
	// DistanceMM is the distance from its centroid to the centroid of the
	// overlapping segments' voxels (-1 when not detected; JSON has no NaN).
	DistanceMM float64 `json:"distance_mm"`
}

// ReadManifest reads the manifest.json of a synthetic series folder.
func ReadManifest(dir string) (*synth.Manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return nil, fmt.Errorf("output: %w", err)
	}
	m := &synth.Manifest{}
	if err := json.Unmarshal(b, m); err != nil {
		return nil, fmt.Errorf("output: %s/manifest.json: %w", dir, err)
	}
	m.Dir = dir
	return m, nil
}

// CompareLesions compares SEG objects (Part 10 bytes; those of other series
// are ignored) with the painted lesions of the synthetic series in dir.
func CompareLesions(dir string, segs [][]byte, minLesionMM3 float64) (*LesionReport, error) {
	m, err := ReadManifest(dir)
	if err != nil {
		return nil, err
	}
	n := m.Rows * m.Cols
	at := map[string]int{}
	truth := make([]findings.Slice, len(m.Slices))
	for i, s := range m.Slices {
		at[s.SOPInstanceUID] = i
		sc := make([]float32, n)
		if s.LabelNPY != "" {
			a, err := npy.Read(filepath.Join(dir, s.LabelNPY))
			if err != nil {
				return nil, fmt.Errorf("output: labels: %w", err)
			}
			if len(a.U8) != n {
				return nil, fmt.Errorf("output: %s has %d uint8 values, want %d", s.LabelNPY, len(a.U8), n)
			}
			for j, v := range a.U8 {
				if v != 0 {
					sc[j] = 1
				}
			}
		}
		truth[i] = findings.Slice{Plane: findings.Plane{Position: s.ImagePositionPatient, Orientation: m.Orientation,
			Spacing: [2]float64{m.PixelSpacing, m.PixelSpacing}}, Rows: m.Rows, Cols: m.Cols, Scores: sc}
	}
	// The painted lesions are the connected regions of the masks.
	lesions, err := findings.Extract(truth, findings.Params{PixelThreshold: 0.5})
	if err != nil {
		return nil, fmt.Errorf("output: painted lesions: %w", err)
	}
	// Every SEG voxel of the series, with its segment (per SEG, so segments
	// of two SEGs stay apart).
	seg := make([][]int, len(m.Slices))
	rep := &LesionReport{Dice: -1}
	for k, p := range segs {
		s, err := ReadSEG(p)
		if err != nil {
			return nil, err
		}
		if s.Attrs.String("FrameOfReferenceUID") != m.FrameOfReferenceUID && s.FrameOfReferenceUID != m.FrameOfReferenceUID {
			continue
		}
		ours := false
		segNums := map[int]bool{}
		for _, f := range s.Frames {
			i, ok := at[f.SourceSOPInstanceUID]
			if !ok || len(f.Mask) != n {
				continue
			}
			ours = true
			segNums[f.SegmentNumber] = true
			for j, v := range f.Mask {
				if v {
					if seg[i] == nil {
						seg[i] = make([]int, n)
					}
					seg[i][j] = 1000*(k+1) + f.SegmentNumber
				}
			}
		}
		if ours {
			rep.SEGs++
			rep.Segments += len(segNums)
		}
	}
	// Voxel centres in patient coordinates, from the manifest's geometry.
	pos := func(i, j int) [3]float64 {
		r, c := float64(j/m.Cols), float64(j%m.Cols)
		o, p := m.Orientation, m.Slices[i].ImagePositionPatient
		var x [3]float64
		for a := 0; a < 3; a++ {
			x[a] = p[a] + c*m.PixelSpacing*o[a] + r*m.PixelSpacing*o[3+a]
		}
		return x
	}
	both := 0
	for i := range m.Slices {
		for j := 0; j < n; j++ {
			l, s := lesions.Labels[i][j] != 0, seg[i] != nil && seg[i][j] != 0
			if l {
				rep.LesionVoxels++
			}
			if s {
				rep.SEGVoxels++
			}
			if l && s {
				both++
			}
		}
	}
	if rep.LesionVoxels+rep.SEGVoxels > 0 {
		rep.Dice = 2 * float64(both) / float64(rep.LesionVoxels+rep.SEGVoxels)
	}
	for _, f := range lesions.Findings {
		if f.VolumeMM3 < minLesionMM3 {
			rep.Small++
			continue
		}
		lm := LesionMatch{VolumeMM3: f.VolumeMM3, CentroidMM: f.Centroid, Dice: 0, DistanceMM: -1}
		// The segments that overlap the lesion, then all their voxels.
		over := map[int]bool{}
		inter := 0
		for i := range m.Slices {
			for j := 0; j < n; j++ {
				if int(lesions.Labels[i][j]) == f.ID && seg[i] != nil && seg[i][j] != 0 {
					over[seg[i][j]] = true
					inter++
				}
			}
		}
		if len(over) > 0 {
			lm.Detected = true
			rep.Detected++
			var sum [3]float64
			cnt := 0
			for i := range m.Slices {
				for j := 0; j < n; j++ {
					if seg[i] != nil && over[seg[i][j]] {
						x := pos(i, j)
						for a := range sum {
							sum[a] += x[a]
						}
						cnt++
					}
				}
			}
			d := 0.0
			for a := range sum {
				d += (sum[a]/float64(cnt) - f.Centroid[a]) * (sum[a]/float64(cnt) - f.Centroid[a])
			}
			lm.DistanceMM = math.Sqrt(d)
			lm.Dice = 2 * float64(inter) / float64(f.Voxels+cnt)
		}
		rep.Lesions = append(rep.Lesions, lm)
	}
	return rep, nil
}
