package inference

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/frame"
	"github.com/suyashkumar/dicom/pkg/tag"
)

// dcmSpec describes a small test instance; the helpers below write it with
// suyashkumar/dicom, the library the node reads with.
type dcmSpec struct {
	ts                    string
	rows, cols, frames    int
	bitsAlloc, bitsStored int
	signed                bool
	photometric           string
	slope, intercept      string
	wc, ww                string
	series, sop           string
	instance              int
	// raw holds the sample words (before masking), frames*rows*cols.
	raw []uint32
	// fragments overrides the encapsulated fragments (RLE/JPEG).
	fragments [][]byte
}

func (s *dcmSpec) defaults() {
	if s.ts == "" {
		s.ts = TSExplicitVRLittleEndian
	}
	if s.frames == 0 {
		s.frames = 1
	}
	if s.bitsAlloc == 0 {
		s.bitsAlloc = 16
	}
	if s.bitsStored == 0 {
		s.bitsStored = s.bitsAlloc
	}
	if s.photometric == "" {
		s.photometric = "MONOCHROME2"
	}
	if s.series == "" {
		s.series = "1.2.826.0.1.3680043.10.1.1"
	}
	if s.sop == "" {
		s.sop = fmt.Sprintf("%s.%d", s.series, s.instance+1)
	}
}

func mustEl(t testing.TB, tg tag.Tag, v any) *dicom.Element {
	t.Helper()
	e, err := dicom.NewElement(tg, v)
	if err != nil {
		t.Fatalf("element %v: %v", tg, err)
	}
	return e
}

// buildDICOM returns Part-10 bytes for spec.
func buildDICOM(t testing.TB, s dcmSpec) []byte {
	t.Helper()
	s.defaults()
	pr := 0
	if s.signed {
		pr = 1
	}
	els := []*dicom.Element{
		mustEl(t, tag.MediaStorageSOPClassUID, []string{"1.2.840.10008.5.1.4.1.1.2"}),
		mustEl(t, tag.MediaStorageSOPInstanceUID, []string{s.sop}),
		mustEl(t, tag.TransferSyntaxUID, []string{s.ts}),
		mustEl(t, tag.SOPClassUID, []string{"1.2.840.10008.5.1.4.1.1.2"}),
		mustEl(t, tag.SOPInstanceUID, []string{s.sop}),
		mustEl(t, tag.StudyInstanceUID, []string{"1.2.826.0.1.3680043.10.1"}),
		mustEl(t, tag.SeriesInstanceUID, []string{s.series}),
		mustEl(t, tag.Modality, []string{"CT"}),
		mustEl(t, tag.InstanceNumber, []string{strconv.Itoa(s.instance)}),
		mustEl(t, tag.SamplesPerPixel, []int{1}),
		mustEl(t, tag.PhotometricInterpretation, []string{s.photometric}),
		mustEl(t, tag.Rows, []int{s.rows}),
		mustEl(t, tag.Columns, []int{s.cols}),
		mustEl(t, tag.BitsAllocated, []int{s.bitsAlloc}),
		mustEl(t, tag.BitsStored, []int{s.bitsStored}),
		mustEl(t, tag.HighBit, []int{s.bitsStored - 1}),
		mustEl(t, tag.PixelRepresentation, []int{pr}),
	}
	if s.frames > 1 {
		els = append(els, mustEl(t, tag.NumberOfFrames, []string{strconv.Itoa(s.frames)}))
	}
	if s.slope != "" {
		els = append(els, mustEl(t, tag.RescaleSlope, []string{s.slope}), mustEl(t, tag.RescaleIntercept, []string{s.intercept}))
	}
	if s.wc != "" {
		els = append(els, mustEl(t, tag.WindowCenter, []string{s.wc}), mustEl(t, tag.WindowWidth, []string{s.ww}))
	}
	switch s.ts {
	case TSImplicitVRLittleEndian, TSExplicitVRLittleEndian, TSExplicitVRBigEndian:
		var order binary.AppendByteOrder = binary.LittleEndian
		if s.ts == TSExplicitVRBigEndian {
			order = binary.BigEndian
		}
		var raw []byte
		for _, v := range s.raw {
			if s.bitsAlloc == 8 {
				raw = append(raw, byte(v))
			} else {
				raw = order.AppendUint16(raw, uint16(v))
			}
		}
		if len(raw)%2 == 1 {
			raw = append(raw, 0)
		}
		els = append(els, mustEl(t, tag.PixelData, dicom.PixelDataInfo{IntentionallyUnprocessed: true, UnprocessedValueData: raw}))
	default:
		frags := s.fragments
		if frags == nil && s.ts == TSRLELossless {
			n := s.rows * s.cols
			for f := 0; f < s.frames; f++ {
				frags = append(frags, encodeRLE(s.raw[f*n:(f+1)*n], s.bitsAlloc))
			}
		}
		pdi := dicom.PixelDataInfo{IsEncapsulated: true}
		for _, fr := range frags {
			if len(fr)%2 == 1 {
				fr = append(fr, 0)
			}
			pdi.Frames = append(pdi.Frames, &frame.Frame{Encapsulated: true, EncapsulatedData: frame.EncapsulatedFrame{Data: fr}})
		}
		e := mustEl(t, tag.PixelData, pdi)
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

func writeDICOM(t testing.TB, dir, name string, s dcmSpec) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, buildDICOM(t, s), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// encodeRLE is an independent PackBits encoder (PS3.5 G.3.1): replicate runs
// for 3+ equal bytes, literal runs otherwise; segments MSB first.
func encodeRLE(samples []uint32, bitsAlloc int) []byte {
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

func ramp(n int, f func(i int) uint32) []uint32 {
	out := make([]uint32, n)
	for i := range out {
		out[i] = f(i)
	}
	return out
}

func TestDecodeNative(t *testing.T) {
	cases := []struct {
		name string
		spec dcmSpec
		want func(i int) int32
	}{
		{"u16", dcmSpec{rows: 5, cols: 7, raw: ramp(35, func(i int) uint32 { return uint32(i * 1000) })}, func(i int) int32 { return int32(i * 1000) }},
		{"s16 negative", dcmSpec{rows: 4, cols: 3, signed: true, raw: ramp(12, func(i int) uint32 { return uint32(uint16(int16(-1024 + 300*i))) })}, func(i int) int32 { return int32(-1024 + 300*i) }},
		{"s12 in 16 with overlay bits", dcmSpec{rows: 3, cols: 3, bitsStored: 12, signed: true, raw: ramp(9, func(i int) uint32 { return uint32(0xF000 | uint16(int16(-5+i))&0x0FFF) })}, func(i int) int32 { return int32(-5 + i) }},
		{"u8 odd length", dcmSpec{rows: 3, cols: 5, bitsAlloc: 8, raw: ramp(15, func(i int) uint32 { return uint32(i * 17) })}, func(i int) int32 { return int32(i * 17) }},
		{"implicit", dcmSpec{ts: TSImplicitVRLittleEndian, rows: 2, cols: 2, raw: []uint32{1, 2, 3, 65535}}, func(i int) int32 { return []int32{1, 2, 3, 65535}[i] }},
		{"big endian", dcmSpec{ts: TSExplicitVRBigEndian, rows: 2, cols: 2, signed: true, raw: []uint32{1, 0xFFFF, 258, 0x8000}}, func(i int) int32 { return []int32{1, -1, 258, -32768}[i] }},
		{"rle 16", dcmSpec{ts: TSRLELossless, rows: 6, cols: 9, signed: true, raw: ramp(54, func(i int) uint32 { return uint32(uint16(int16((i / 9) * -700))) })}, func(i int) int32 { return int32((i / 9) * -700) }},
		{"rle 8", dcmSpec{ts: TSRLELossless, rows: 4, cols: 130, bitsAlloc: 8, raw: ramp(520, func(i int) uint32 { return uint32((i * i) % 251) })}, func(i int) int32 { return int32((i * i) % 251) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			slices, err := Decode(buildDICOM(t, tc.spec))
			if err != nil {
				t.Fatal(err)
			}
			if len(slices) != 1 {
				t.Fatalf("%d slices", len(slices))
			}
			s := slices[0]
			for i, v := range s.Stored {
				if v != tc.want(i) {
					t.Fatalf("pixel %d = %d, want %d", i, v, tc.want(i))
				}
			}
			if s.SeriesInstanceUID == "" || s.SOPInstanceUID == "" || s.Rows != tc.spec.rows || s.Cols != tc.spec.cols {
				t.Fatalf("header: %+v", s)
			}
		})
	}
}

func TestDecodeMultiFrameAndHeader(t *testing.T) {
	for _, ts := range []string{TSExplicitVRLittleEndian, TSRLELossless} {
		spec := dcmSpec{ts: ts, rows: 4, cols: 6, frames: 3, slope: "2.5", intercept: "-1024", wc: "40\\50", ww: "400\\350",
			raw: ramp(72, func(i int) uint32 { return uint32(i/24*1000 + i%24) })}
		slices, err := Decode(buildDICOM(t, spec))
		if err != nil {
			t.Fatal(ts, err)
		}
		if len(slices) != 3 {
			t.Fatalf("%s: %d frames", ts, len(slices))
		}
		for f, s := range slices {
			if s.Frame != f || s.Frames != 3 || s.Stored[5] != int32(f*1000+5) {
				t.Fatalf("%s frame %d: %+v", ts, f, s.Stored)
			}
			if s.Slope != 2.5 || s.Intercept != -1024 || !s.HasWindow || s.WindowCenter != 40 || s.WindowWidth != 400 {
				t.Fatalf("%s: rescale/window %v %v %v %v", ts, s.Slope, s.Intercept, s.WindowCenter, s.WindowWidth)
			}
		}
		if v := slices[1].ModalityValues()[2]; v != 2.5*1002-1024 {
			t.Fatalf("modality value %v", v)
		}
	}
}

func TestDecodeJPEGBaseline(t *testing.T) {
	img := image.NewGray(image.Rect(0, 0, 24, 16))
	for i := range img.Pix {
		img.Pix[i] = byte(i * 3)
	}
	var jb bytes.Buffer
	if err := jpeg.Encode(&jb, img, &jpeg.Options{Quality: 95}); err != nil {
		t.Fatal(err)
	}
	ref, _ := jpeg.Decode(bytes.NewReader(jb.Bytes()))
	// Split the frame over two fragments: the decoder must join them.
	b := jb.Bytes()
	spec := dcmSpec{ts: TSJPEGBaseline, rows: 16, cols: 24, bitsAlloc: 8, fragments: [][]byte{b[:100], b[100:]}}
	slices, err := Decode(buildDICOM(t, spec))
	if err != nil {
		t.Fatal(err)
	}
	g := ref.(*image.Gray)
	for i, v := range slices[0].Stored {
		if v != int32(g.Pix[(i/24)*g.Stride+i%24]) {
			t.Fatalf("pixel %d = %d, want %d", i, v, g.Pix[i])
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	good := buildDICOM(t, dcmSpec{rows: 8, cols: 8, raw: make([]uint32, 64)})
	rle := dcmSpec{ts: TSRLELossless, rows: 8, cols: 8, raw: ramp(64, func(i int) uint32 { return uint32(i) })}
	rleFrag := encodeRLE(rle.raw, 16)
	shortRLE := rle
	shortRLE.fragments = [][]byte{rleFrag[:len(rleFrag)-6]}
	// A PixelData length of nearly 4 GB in a small file must be rejected before
	// the parser allocates it.
	huge := append([]byte(nil), good...)
	i := bytes.Index(huge, []byte("\xe0\x7f\x10\x00OW"))
	if i < 0 {
		t.Fatal("no PixelData header found")
	}
	binary.LittleEndian.PutUint32(huge[i+8:], 0xFFFFFFF0)
	nested := buildDICOM(t, dcmSpec{rows: 2, cols: 2, raw: make([]uint32, 4)})
	cases := []struct {
		name        string
		data        []byte
		unsupported bool
		syntax      bool
	}{
		{"huge length", huge, false, false},
		{"trailing garbage", append(append([]byte(nil), nested...), 1, 2, 3), false, false},
		{"truncated native", good[:len(good)-20], false, false},
		{"truncated header", good[:200], false, false},
		{"jpeg 2000", buildDICOM(t, dcmSpec{ts: "1.2.840.10008.1.2.4.90", rows: 8, cols: 8, fragments: [][]byte{{1, 2, 3, 4}}}), true, true},
		{"jpeg 12-bit lossy", buildDICOM(t, dcmSpec{ts: "1.2.840.10008.1.2.4.51", rows: 8, cols: 8, fragments: [][]byte{{1, 2}}}), true, true},
		{"jpeg-ls corrupt", buildDICOM(t, dcmSpec{ts: TSJPEGLSLossless, rows: 8, cols: 8, fragments: [][]byte{{1, 2}}}), false, false},
		{"rgb", buildDICOM(t, dcmSpec{rows: 2, cols: 2, photometric: "RGB", raw: make([]uint32, 4)}), true, false},
		{"rle truncated", buildDICOM(t, shortRLE), false, false},
		{"rle missing frame", buildDICOM(t, dcmSpec{ts: TSRLELossless, rows: 8, cols: 8, frames: 2, fragments: [][]byte{rleFrag}}), false, false},
		{"jpeg corrupt", buildDICOM(t, dcmSpec{ts: TSJPEGBaseline, rows: 8, cols: 8, bitsAlloc: 8, fragments: [][]byte{{0xFF, 0xD8, 0xFF, 0xDB, 0, 3}}}), false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(tc.data)
			if err == nil {
				t.Fatal("no error")
			}
			isU := errorsIs(err, ErrUnsupported)
			if isU != tc.unsupported || errorsIs(err, ErrUnsupportedTransferSyntax) != tc.syntax {
				t.Fatalf("err = %v (unsupported %v)", err, isU)
			}
			if !tc.unsupported && !errorsIs(err, ErrBadPixelData) && !errorsIs(err, ErrInvalidDICOM) {
				t.Fatalf("err = %v, want ErrBadPixelData or ErrInvalidDICOM", err)
			}
			if !Quarantinable(err) {
				t.Fatalf("err = %v is not quarantinable", err)
			}
		})
	}
}

func TestRLEKnownBytes(t *testing.T) {
	// PS3.5 G.3.1 example-style stream: literal of 3, replicate 4 x 0xAA, no-op, literal 1.
	seg := []byte{0x02, 1, 2, 3, 0xFD, 0xAA, 0x80, 0x00, 9}
	frame := make([]byte, 64)
	binary.LittleEndian.PutUint32(frame, 1)
	binary.LittleEndian.PutUint32(frame[4:], 64)
	frame = append(frame, seg...)
	got, err := DecodeRLE(frame, 2, 4, 8)
	if err != nil {
		t.Fatal(err)
	}
	want := []uint32{1, 2, 3, 0xAA, 0xAA, 0xAA, 0xAA, 9}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	if _, err := DecodeRLE(frame[:len(frame)-1], 2, 4, 8); err == nil {
		t.Fatal("short segment decoded")
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(buildDICOM(f, dcmSpec{rows: 4, cols: 4, raw: make([]uint32, 16)}))
	f.Add(buildDICOM(f, dcmSpec{ts: TSRLELossless, rows: 4, cols: 4, raw: ramp(16, func(i int) uint32 { return uint32(i * 999) })}))
	f.Add(buildDICOM(f, dcmSpec{ts: TSRLELossless, rows: 3, cols: 3, frames: 2, bitsAlloc: 8, raw: ramp(18, func(i int) uint32 { return uint32(i) })}))
	f.Fuzz(func(t *testing.T, data []byte) {
		slices, err := Decode(data)
		if err != nil {
			return
		}
		for _, s := range slices {
			if len(s.Stored) != s.Rows*s.Cols {
				t.Fatalf("%d values for %dx%d", len(s.Stored), s.Rows, s.Cols)
			}
		}
	})
}

func FuzzDecodeRLE(f *testing.F) {
	f.Add(encodeRLE(ramp(12, func(i int) uint32 { return uint32(i * 300) }), 16), 3, 4, 16)
	f.Add(encodeRLE(ramp(12, func(i int) uint32 { return uint32(i) }), 8), 3, 4, 8)
	f.Fuzz(func(t *testing.T, data []byte, rows, cols, bits int) {
		if rows < 1 || cols < 1 || rows*cols > 1<<16 || (bits != 8 && bits != 16) {
			return
		}
		out, err := DecodeRLE(data, rows, cols, bits)
		if err == nil && len(out) != rows*cols {
			t.Fatalf("%d samples for %dx%d", len(out), rows, cols)
		}
	})
}

func errorsIs(err, target error) bool { return errors.Is(err, target) }

// A compressed instance that claims far more samples than its bytes can hold
// is refused before anything is allocated; a large but plausible one is not.
func TestDecodeExpansionLimit(t *testing.T) {
	claim := func(rows, cols, frames, bytes int) error {
		frags := make([][]byte, frames)
		for i := range frags {
			frags[i] = make([]byte, bytes/frames)
		}
		return checkExpansion(frags, pixelInfo{rows: rows, cols: cols, frames: frames})
	}
	if err := claim(4096, 4096, 2, 512); !errors.Is(err, ErrBadPixelData) || !strings.Contains(err.Error(), "samples per byte") {
		t.Errorf("4096x4096x2 from 512 bytes: %v, want the expansion error", err)
	}
	if err := claim(4096, 4096, 1, 100); err != nil {
		t.Errorf("one 4096x4096 frame (within the free limit): %v", err)
	}
	if err := claim(512, 512, 1000, 100<<20); err != nil {
		t.Errorf("1000 512x512 frames from 100 MB: %v", err)
	}
	data := buildDICOM(t, dcmSpec{ts: TSJPEGLSLossless, rows: 4096, cols: 4096, frames: 2, fragments: [][]byte{make([]byte, 256), make([]byte, 256)}})
	if _, err := Decode(data); err == nil || !strings.Contains(err.Error(), "samples per byte") {
		t.Errorf("Decode of 4096x4096x2 from 512 bytes: %v, want the expansion error", err)
	}
}
