package output

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/suyashkumar/dicom"
)

const mrImageStorage = "1.2.840.10008.5.1.4.1.1.4"

// synthSeries is a small MR-like series with a spherical "lesion" of known
// extent: the scores fall off with distance from its centre and the mask is
// scores > threshold. Slices are returned in a shuffled order and instance
// numbers run against the slice normal, so a builder that orders by anything
// but geometry gets it wrong.
type synthSeries struct {
	res   *SeriesResult
	files []string // source Part 10 files, same order as res.Sources
}

func makeSeries(t testing.TB, n, rows, cols int, lesion bool, seed uint64) *synthSeries {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 7))
	study := DeriveUID("test-study", fmt.Sprint(seed))
	series := DeriveUID("test-series", fmt.Sprint(seed))
	frame := DeriveUID("test-for", fmt.Sprint(seed))
	res := &SeriesResult{
		Model:     ModelIdentity{Name: "dinov2-dpmm", Version: "3", SHA256: "ab12cd"},
		Version:   1,
		Threshold: 0.5,
		Created:   time.Date(2026, 11, 29, 12, 30, 45, 0, time.UTC),
	}
	dir := t.TempDir()
	s := &synthSeries{res: res}
	cy, cx, cz, rad := float64(rows)*0.4, float64(cols)*0.55, float64(n)/2, math.Max(2.5, float64(min(rows, cols))/6)
	order := rng.Perm(n)
	for _, k := range order {
		// Slice k sits at z = -10 - 2.5k (feet-ward); instance numbers count up
		// as z goes down, i.e. against the normal (0,0,1).
		z := -10 - 2.5*float64(k)
		sop := DeriveUID("test-sop", fmt.Sprint(seed), fmt.Sprint(k))
		e := &elems{}
		e.str("SpecificCharacterSet", "ISO_IR 100")
		e.str("ImageType", "ORIGINAL", "PRIMARY", "M", "NONE")
		e.str("SOPClassUID", mrImageStorage)
		e.str("SOPInstanceUID", sop)
		e.str("StudyDate", "20261128")
		e.str("StudyTime", "101500")
		e.str("AccessionNumber", "ACC123")
		e.str("Modality", "MR")
		e.str("Manufacturer", "Synthetic")
		e.str("ReferringPhysicianName", "Ref^Doctor")
		e.str("StudyDescription", "MR Brain")
		e.str("SeriesDescription", "T1 axial")
		e.str("PatientName", "Doe^Jane")
		e.str("PatientID", "PID0001")
		e.str("PatientBirthDate", "19700101")
		e.str("PatientSex", "F")
		e.str("BodyPartExamined", "BRAIN")
		e.str("ScanningSequence", "SE")
		e.str("SequenceVariant", "NONE")
		e.str("ScanOptions")
		e.str("MRAcquisitionType", "2D")
		e.str("SliceThickness", "2.5")
		e.str("RepetitionTime", "500")
		e.str("EchoTime", "12")
		e.str("EchoTrainLength", "1")
		e.str("PatientPosition", "HFS")
		e.str("StudyInstanceUID", study)
		e.str("SeriesInstanceUID", series)
		e.str("StudyID", "S1")
		e.str("SeriesNumber", "3")
		e.str("InstanceNumber", fmt.Sprint(k+1))
		e.str("ImagePositionPatient", "-120.5", "-98.25", formatDS(z))
		e.str("ImageOrientationPatient", "1", "0", "0", "0", "1", "0")
		e.str("FrameOfReferenceUID", frame)
		e.str("PositionReferenceIndicator")
		e.str("SliceLocation", formatDS(z))
		e.num("SamplesPerPixel", 1)
		e.str("PhotometricInterpretation", "MONOCHROME2")
		e.num("Rows", rows)
		e.num("Columns", cols)
		e.str("PixelSpacing", "0.9375", "0.9375")
		e.num("BitsAllocated", 16)
		e.num("BitsStored", 12)
		e.num("HighBit", 11)
		e.num("PixelRepresentation", 0)
		e.str("WindowCenter", "500")
		e.str("WindowWidth", "1000")
		pix := make([]byte, rows*cols*2)
		scores := make([]float32, rows*cols)
		mask := make([]bool, rows*cols)
		disp := make([]uint8, rows*cols)
		for y := 0; y < rows; y++ {
			for x := 0; x < cols; x++ {
				v := 300 + 400*math.Sin(float64(x)/5)*math.Cos(float64(y)/7) + 50*rng.Float64()
				i := y*cols + x
				binary.LittleEndian.PutUint16(pix[2*i:], uint16(math.Max(0, v)))
				disp[i] = uint8(math.Max(0, math.Min(255, v/1000*255)))
				if lesion {
					d := math.Sqrt((float64(y)-cy)*(float64(y)-cy)+(float64(x)-cx)*(float64(x)-cx)+6*(float64(k)-cz)*(float64(k)-cz)) / rad
					scores[i] = float32(math.Exp(-d * d))
					mask[i] = scores[i] > res.Threshold
				} else {
					scores[i] = float32(0.1 * rng.Float64())
				}
			}
		}
		e.add("PixelData", dicom.PixelDataInfo{IntentionallyUnprocessed: true, UnprocessedValueData: pix})
		part10, err := encode(e, mrImageStorage, sop)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, fmt.Sprintf("src%03d.dcm", k))
		if err := os.WriteFile(path, part10, 0o644); err != nil {
			t.Fatal(err)
		}
		hdr, err := dicom.ParseFile(path, nil, dicom.SkipPixelData())
		if err != nil {
			t.Fatal(err)
		}
		res.Sources = append(res.Sources, SourceSlice{Header: &hdr, Rows: rows, Cols: cols, Scores: scores, Mask: mask, Display: disp})
		s.files = append(s.files, path)
	}
	return s
}
