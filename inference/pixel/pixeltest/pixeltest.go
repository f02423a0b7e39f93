// Package pixeltest writes small Part-10 test instances with
// suyashkumar/dicom, the library the node reads with, so the decoder's tests
// and those of its callers build their inputs one way. Test code only.
package pixeltest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/frame"
	"github.com/suyashkumar/dicom/pkg/tag"

	"anomalynode/internal/dcm"
)

// Spec describes a small test instance; zero fields take defaults
// (Explicit VR Little Endian, one 16-bit MONOCHROME2 frame, fixed UIDs).
type Spec struct {
	TS                    string
	Rows, Cols, Frames    int
	BitsAlloc, BitsStored int
	Signed                bool
	Photometric           string
	Slope, Intercept      string
	WC, WW                string
	Series, SOP           string
	Instance              int
	// Raw holds the sample words (before masking), frames*rows*cols.
	Raw []uint32
	// Fragments overrides the encapsulated fragments (RLE/JPEG).
	Fragments [][]byte
}

func (s *Spec) defaults() {
	if s.TS == "" {
		s.TS = dcm.ExplicitVRLittleEndian
	}
	if s.Frames == 0 {
		s.Frames = 1
	}
	if s.BitsAlloc == 0 {
		s.BitsAlloc = 16
	}
	if s.BitsStored == 0 {
		s.BitsStored = s.BitsAlloc
	}
	if s.Photometric == "" {
		s.Photometric = "MONOCHROME2"
	}
	if s.Series == "" {
		s.Series = "1.2.826.0.1.3680043.10.1.1"
	}
	if s.SOP == "" {
		s.SOP = fmt.Sprintf("%s.%d", s.Series, s.Instance+1)
	}
}

// Element returns a new element, failing the test when the value does not fit.
func Element(t testing.TB, tg tag.Tag, v any) *dicom.Element {
	t.Helper()
	e, err := dicom.NewElement(tg, v)
	if err != nil {
		t.Fatalf("element %v: %v", tg, err)
	}
	return e
}

// Build returns Part-10 bytes for spec.
func Build(t testing.TB, s Spec) []byte {
	t.Helper()
	s.defaults()
	pr := 0
	if s.Signed {
		pr = 1
	}
	els := []*dicom.Element{
		Element(t, tag.MediaStorageSOPClassUID, []string{"1.2.840.10008.5.1.4.1.1.2"}),
		Element(t, tag.MediaStorageSOPInstanceUID, []string{s.SOP}),
		Element(t, tag.TransferSyntaxUID, []string{s.TS}),
		Element(t, tag.SOPClassUID, []string{"1.2.840.10008.5.1.4.1.1.2"}),
		Element(t, tag.SOPInstanceUID, []string{s.SOP}),
		Element(t, tag.StudyInstanceUID, []string{"1.2.826.0.1.3680043.10.1"}),
		Element(t, tag.SeriesInstanceUID, []string{s.Series}),
		Element(t, tag.Modality, []string{"CT"}),
		Element(t, tag.InstanceNumber, []string{strconv.Itoa(s.Instance)}),
		Element(t, tag.SamplesPerPixel, []int{1}),
		Element(t, tag.PhotometricInterpretation, []string{s.Photometric}),
		Element(t, tag.Rows, []int{s.Rows}),
		Element(t, tag.Columns, []int{s.Cols}),
		Element(t, tag.BitsAllocated, []int{s.BitsAlloc}),
		Element(t, tag.BitsStored, []int{s.BitsStored}),
		Element(t, tag.HighBit, []int{s.BitsStored - 1}),
		Element(t, tag.PixelRepresentation, []int{pr}),
	}
	if s.Frames > 1 {
		els = append(els, Element(t, tag.NumberOfFrames, []string{strconv.Itoa(s.Frames)}))
	}
	if s.Slope != "" {
		els = append(els, Element(t, tag.RescaleSlope, []string{s.Slope}), Element(t, tag.RescaleIntercept, []string{s.Intercept}))
	}
	if s.WC != "" {
		els = append(els, Element(t, tag.WindowCenter, []string{s.WC}), Element(t, tag.WindowWidth, []string{s.WW}))
	}
	switch s.TS {
	case dcm.ImplicitVRLittleEndian, dcm.ExplicitVRLittleEndian, dcm.ExplicitVRBigEndian:
		var order binary.AppendByteOrder = binary.LittleEndian
		if s.TS == dcm.ExplicitVRBigEndian {
			order = binary.BigEndian
		}
		var raw []byte
		for _, v := range s.Raw {
			if s.BitsAlloc == 8 {
				raw = append(raw, byte(v))
			} else {
				raw = order.AppendUint16(raw, uint16(v))
			}
		}
		if len(raw)%2 == 1 {
			raw = append(raw, 0)
		}
		els = append(els, Element(t, tag.PixelData, dicom.PixelDataInfo{IntentionallyUnprocessed: true, UnprocessedValueData: raw}))
	default:
		frags := s.Fragments
		if frags == nil && s.TS == dcm.RLELossless {
			n := s.Rows * s.Cols
			for f := 0; f < s.Frames; f++ {
				frags = append(frags, EncodeRLE(s.Raw[f*n:(f+1)*n], s.BitsAlloc))
			}
		}
		pdi := dicom.PixelDataInfo{IsEncapsulated: true}
		for _, fr := range frags {
			if len(fr)%2 == 1 {
				fr = append(fr, 0)
			}
			pdi.Frames = append(pdi.Frames, &frame.Frame{Encapsulated: true, EncapsulatedData: frame.EncapsulatedFrame{Data: fr}})
		}
		e := Element(t, tag.PixelData, pdi)
		e.ValueLength = tag.VLUndefinedLength
		e.RawValueRepresentation = "OB"
		els = append(els, e)
	}
	var buf bytes.Buffer
	if err := dicom.Write(&buf, dicom.Dataset{Elements: els}, dicom.SkipVRVerification()); err != nil {
		t.Fatalf("write dicom: %v", err)
	}
	return buf.Bytes()
}

// Write writes Build(s) to dir/name and returns its path.
func Write(t testing.TB, dir, name string, s Spec) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, Build(t, s), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// EncodeRLE is an independent PackBits encoder (PS3.5 G.3.1): replicate runs
// for 3+ equal bytes, literal runs otherwise; segments MSB first.
func EncodeRLE(samples []uint32, bitsAlloc int) []byte {
	nseg := bitsAlloc / 8
	var segs [][]byte
	for s := 0; s < nseg; s++ {
		shift := uint(8 * (nseg - 1 - s))
		b := make([]byte, len(samples))
		for i, v := range samples {
			b[i] = byte(v >> shift)
		}
		segs = append(segs, packBits(b))
	}
	hdr := make([]byte, 64)
	binary.LittleEndian.PutUint32(hdr, uint32(nseg))
	off := 64
	var out []byte
	for i, sg := range segs {
		binary.LittleEndian.PutUint32(hdr[4+4*i:], uint32(off))
		if len(sg)%2 == 1 {
			sg = append(sg, 0x80) // no-op pad byte
		}
		out = append(out, sg...)
		off += len(sg)
	}
	return append(hdr, out...)
}

func packBits(b []byte) []byte {
	var out []byte
	i := 0
	for i < len(b) {
		j := i + 1
		for j < len(b) && b[j] == b[i] && j-i < 128 {
			j++
		}
		if j-i >= 3 {
			out = append(out, byte(int8(1-(j-i))), b[i])
			i = j
			continue
		}
		// Literal run up to the next run of 3 or 128 bytes.
		k := i
		for k < len(b) && k-i < 128 {
			if k+2 < len(b) && b[k] == b[k+1] && b[k] == b[k+2] {
				break
			}
			k++
		}
		out = append(out, byte(k-i-1))
		out = append(out, b[i:k]...)
		i = k
	}
	return out
}

// Ramp returns f(0..n-1), the sample words of a test image.
func Ramp(n int, f func(i int) uint32) []uint32 {
	out := make([]uint32, n)
	for i := range out {
		out[i] = f(i)
	}
	return out
}
