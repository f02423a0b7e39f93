package synth

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"anomalynode/internal/npy"
)

// Folder layout of a written series (see docs/synth.md).
const (
	ImagesDir    = "images"
	LabelsDir    = "labels"
	ManifestFile = "manifest.json"
)

// Manifest describes a written series; it is also written as DIR/manifest.json.
type Manifest struct {
	// Source is the anatomy volume path or "phantom".
	Source string `json:"source"`
	// Seed the series was made from.
	Seed uint64 `json:"seed"`
	// Modality is MR or CT.
	Modality string `json:"modality"`
	// SOPClassUID of every image.
	SOPClassUID string `json:"sop_class_uid"`
	// StudyInstanceUID of the series.
	StudyInstanceUID string `json:"study_instance_uid"`
	// SeriesInstanceUID of the series.
	SeriesInstanceUID string `json:"series_instance_uid"`
	// FrameOfReferenceUID of the series.
	FrameOfReferenceUID string `json:"frame_of_reference_uid"`
	// PatientID is the synthetic patient ID.
	PatientID string `json:"patient_id"`
	// Rows is the number of image rows.
	Rows int `json:"rows"`
	// Cols is the number of columns.
	Cols int `json:"cols"`
	// PixelSpacing in mm (square pixels).
	PixelSpacing float64 `json:"pixel_spacing_mm"`
	// SliceSpacing is thickness and spacing between slices, mm.
	SliceSpacing float64 `json:"slice_spacing_mm"`
	// Orientation is ImageOrientationPatient.
	Orientation [6]float64 `json:"image_orientation_patient"`
	// Lesions are the painted lesions (empty for a healthy series).
	Lesions []ManifestLesion `json:"lesions"`
	// LargestLesionSlice is the index into Slices with the most lesion pixels (-1: none).
	LargestLesionSlice int `json:"largest_lesion_slice"`
	// Slices in InstanceNumber order.
	Slices []ManifestSlice `json:"slices"`
	// Dir is the folder the series was written to (not stored in the JSON).
	Dir string `json:"-"`
}

// ManifestLesion is one painted lesion.
type ManifestLesion struct {
	// CenterMM is the centre in patient LPS mm.
	CenterMM [3]float64 `json:"center_mm"`
	// RadiiMM are the ellipsoid semi-axes (in-plane a, b, through-plane c).
	RadiiMM [3]float64 `json:"radii_mm"`
	// AngleDeg is the in-plane rotation of the first axis from the row direction.
	AngleDeg float64 `json:"angle_deg"`
	// Amplitude is the intensity change at the centre (MR T1 units or HU):
	// negative for a hypo-intense lesion.
	Amplitude float64 `json:"amplitude"`
}

// ManifestSlice is one slice's entry.
type ManifestSlice struct {
	// File is the DICOM file, relative to the series folder.
	File string `json:"file"`
	// LabelPNG is the 0/255 mask PNG, relative ("" when no labels).
	LabelPNG string `json:"label_png,omitempty"`
	// LabelNPY is the uint8 0/1 mask .npy, relative ("" when no labels).
	LabelNPY string `json:"label_npy,omitempty"`
	// SOPInstanceUID of the slice.
	SOPInstanceUID string `json:"sop_instance_uid"`
	// InstanceNumber of the slice.
	InstanceNumber int `json:"instance_number"`
	// ImagePositionPatient of the slice.
	ImagePositionPatient [3]float64 `json:"image_position_patient"`
	// LesionPixels counts mask pixels.
	LesionPixels int `json:"lesion_pixels"`
	// CentroidRow is the lesion centroid row in pixels (-1: none).
	CentroidRow float64 `json:"centroid_row"`
	// CentroidCol is the lesion centroid column in pixels (-1: none).
	CentroidCol float64 `json:"centroid_col"`
}

// WriteSeries generates a series and writes it to dir (created if needed).
func WriteSeries(dir string, opts Options) (*Manifest, error) {
	r, err := Generate(opts)
	if err != nil {
		return nil, err
	}
	return r.Write(dir)
}

// BaseName is the file name stem of slice k (IM0001 for the first).
func BaseName(k int) string { return fmt.Sprintf("IM%04d", k+1) }

// Manifest describes the result as Write lays it out.
func (r *Result) Manifest() *Manifest {
	m := &Manifest{
		Source: r.Source, Seed: r.Options.Seed, Modality: r.Options.Modality, SOPClassUID: r.SOPClassUID(),
		StudyInstanceUID: r.StudyInstanceUID, SeriesInstanceUID: r.SeriesInstanceUID,
		FrameOfReferenceUID: r.FrameOfReferenceUID, PatientID: r.PatientID,
		Rows: r.Rows, Cols: r.Cols, PixelSpacing: r.PixelSpacing, SliceSpacing: r.SliceSpacing,
		Orientation: r.Orientation, LargestLesionSlice: r.LargestLesionSlice(),
		Lesions: []ManifestLesion{}, Slices: make([]ManifestSlice, len(r.Slices)),
	}
	for _, l := range r.Lesions {
		m.Lesions = append(m.Lesions, ManifestLesion{CenterMM: l.Center, RadiiMM: l.Radii, AngleDeg: roundDS(l.Angle, 2), Amplitude: roundDS(l.Amplitude, 2)})
	}
	for k, s := range r.Slices {
		ms := ManifestSlice{
			File: filepath.ToSlash(filepath.Join(ImagesDir, BaseName(k)+".dcm")), SOPInstanceUID: s.SOPInstanceUID,
			InstanceNumber: s.InstanceNumber, ImagePositionPatient: s.Position, LesionPixels: s.LesionPixels,
			CentroidRow: roundDS(s.CentroidRow, 3), CentroidCol: roundDS(s.CentroidCol, 3),
		}
		if s.Mask != nil {
			ms.LabelPNG = filepath.ToSlash(filepath.Join(LabelsDir, BaseName(k)+".png"))
			ms.LabelNPY = filepath.ToSlash(filepath.Join(LabelsDir, BaseName(k)+".npy"))
		}
		m.Slices[k] = ms
	}
	return m
}

// Write stores the series under dir: images/IMnnnn.dcm, labels/IMnnnn.png and
// .npy when masks exist, and manifest.json.
func (r *Result) Write(dir string) (*Manifest, error) {
	m := r.Manifest()
	m.Dir = dir
	if err := os.MkdirAll(filepath.Join(dir, ImagesDir), 0o755); err != nil {
		return nil, fmt.Errorf("synth: %w", err)
	}
	labels := len(r.Slices) > 0 && r.Slices[0].Mask != nil
	if labels {
		if err := os.MkdirAll(filepath.Join(dir, LabelsDir), 0o755); err != nil {
			return nil, fmt.Errorf("synth: %w", err)
		}
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	next := make(chan int)
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range next {
				if err := r.writeSlice(dir, k, m.Slices[k]); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for k := range r.Slices {
		next <- k
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	js, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("synth: manifest: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, ManifestFile), append(js, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("synth: %w", err)
	}
	return m, nil
}

func (r *Result) writeSlice(dir string, k int, ms ManifestSlice) error {
	b, err := r.EncodeSlice(k)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(ms.File)), b, 0o644); err != nil {
		return fmt.Errorf("synth: %w", err)
	}
	mask := r.Slices[k].Mask
	if mask == nil {
		return nil
	}
	img := image.NewGray(image.Rect(0, 0, r.Cols, r.Rows))
	for i, v := range mask {
		if v != 0 {
			img.Pix[i] = 255
		}
	}
	var pb bytes.Buffer
	if err := png.Encode(&pb, img); err != nil {
		return fmt.Errorf("synth: mask png: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(ms.LabelPNG)), pb.Bytes(), 0o644); err != nil {
		return fmt.Errorf("synth: %w", err)
	}
	var nb bytes.Buffer
	if err := npy.Encode(&nb, &npy.Array{Shape: []int{r.Rows, r.Cols}, Dtype: npy.DtypeUint8, U8: mask}); err != nil {
		return fmt.Errorf("synth: mask npy: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(ms.LabelNPY)), nb.Bytes(), 0o644); err != nil {
		return fmt.Errorf("synth: %w", err)
	}
	return nil
}
