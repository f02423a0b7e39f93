package pixel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"image"
	"image/jpeg"
	"strings"
	"testing"

	"anomalynode/inference/pixel/pixeltest"
	"anomalynode/internal/dcm"
)

func TestDecodeNative(t *testing.T) {
	cases := []struct {
		name string
		spec pixeltest.Spec
		want func(i int) int32
	}{
		{"u16", pixeltest.Spec{Rows: 5, Cols: 7, Raw: pixeltest.Ramp(35, func(i int) uint32 { return uint32(i * 1000) })}, func(i int) int32 { return int32(i * 1000) }},
		{"s16 negative", pixeltest.Spec{Rows: 4, Cols: 3, Signed: true, Raw: pixeltest.Ramp(12, func(i int) uint32 { return uint32(uint16(int16(-1024 + 300*i))) })}, func(i int) int32 { return int32(-1024 + 300*i) }},
		{"s12 in 16 with overlay bits", pixeltest.Spec{Rows: 3, Cols: 3, BitsStored: 12, Signed: true, Raw: pixeltest.Ramp(9, func(i int) uint32 { return uint32(0xF000 | uint16(int16(-5+i))&0x0FFF) })}, func(i int) int32 { return int32(-5 + i) }},
		{"u8 odd length", pixeltest.Spec{Rows: 3, Cols: 5, BitsAlloc: 8, Raw: pixeltest.Ramp(15, func(i int) uint32 { return uint32(i * 17) })}, func(i int) int32 { return int32(i * 17) }},
		{"implicit", pixeltest.Spec{TS: dcm.ImplicitVRLittleEndian, Rows: 2, Cols: 2, Raw: []uint32{1, 2, 3, 65535}}, func(i int) int32 { return []int32{1, 2, 3, 65535}[i] }},
		{"big endian", pixeltest.Spec{TS: dcm.ExplicitVRBigEndian, Rows: 2, Cols: 2, Signed: true, Raw: []uint32{1, 0xFFFF, 258, 0x8000}}, func(i int) int32 { return []int32{1, -1, 258, -32768}[i] }},
		{"rle 16", pixeltest.Spec{TS: dcm.RLELossless, Rows: 6, Cols: 9, Signed: true, Raw: pixeltest.Ramp(54, func(i int) uint32 { return uint32(uint16(int16((i / 9) * -700))) })}, func(i int) int32 { return int32((i / 9) * -700) }},
		{"rle 8", pixeltest.Spec{TS: dcm.RLELossless, Rows: 4, Cols: 130, BitsAlloc: 8, Raw: pixeltest.Ramp(520, func(i int) uint32 { return uint32((i * i) % 251) })}, func(i int) int32 { return int32((i * i) % 251) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			slices, err := Decode(pixeltest.Build(t, tc.spec))
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
			if s.SeriesInstanceUID == "" || s.SOPInstanceUID == "" || s.Rows != tc.spec.Rows || s.Cols != tc.spec.Cols {
				t.Fatalf("header: %+v", s)
			}
		})
	}
}

func TestDecodeMultiFrameAndHeader(t *testing.T) {
	for _, ts := range []string{dcm.ExplicitVRLittleEndian, dcm.RLELossless} {
		spec := pixeltest.Spec{TS: ts, Rows: 4, Cols: 6, Frames: 3, Slope: "2.5", Intercept: "-1024", WC: "40\\50", WW: "400\\350",
			Raw: pixeltest.Ramp(72, func(i int) uint32 { return uint32(i/24*1000 + i%24) })}
		slices, err := Decode(pixeltest.Build(t, spec))
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
	spec := pixeltest.Spec{TS: dcm.JPEGBaseline, Rows: 16, Cols: 24, BitsAlloc: 8, Fragments: [][]byte{b[:100], b[100:]}}
	slices, err := Decode(pixeltest.Build(t, spec))
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
	good := pixeltest.Build(t, pixeltest.Spec{Rows: 8, Cols: 8, Raw: make([]uint32, 64)})
	rle := pixeltest.Spec{TS: dcm.RLELossless, Rows: 8, Cols: 8, Raw: pixeltest.Ramp(64, func(i int) uint32 { return uint32(i) })}
	rleFrag := pixeltest.EncodeRLE(rle.Raw, 16)
	shortRLE := rle
	shortRLE.Fragments = [][]byte{rleFrag[:len(rleFrag)-6]}
	// A PixelData length of nearly 4 GB in a small file must be rejected before
	// the parser allocates it.
	huge := append([]byte(nil), good...)
	i := bytes.Index(huge, []byte("\xe0\x7f\x10\x00OW"))
	if i < 0 {
		t.Fatal("no PixelData header found")
	}
	binary.LittleEndian.PutUint32(huge[i+8:], 0xFFFFFFF0)
	nested := pixeltest.Build(t, pixeltest.Spec{Rows: 2, Cols: 2, Raw: make([]uint32, 4)})
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
		{"jpeg 2000", pixeltest.Build(t, pixeltest.Spec{TS: "1.2.840.10008.1.2.4.90", Rows: 8, Cols: 8, Fragments: [][]byte{{1, 2, 3, 4}}}), true, true},
		{"jpeg 12-bit lossy", pixeltest.Build(t, pixeltest.Spec{TS: "1.2.840.10008.1.2.4.51", Rows: 8, Cols: 8, Fragments: [][]byte{{1, 2}}}), true, true},
		{"jpeg-ls corrupt", pixeltest.Build(t, pixeltest.Spec{TS: dcm.JPEGLSLossless, Rows: 8, Cols: 8, Fragments: [][]byte{{1, 2}}}), false, false},
		{"rgb", pixeltest.Build(t, pixeltest.Spec{Rows: 2, Cols: 2, Photometric: "RGB", Raw: make([]uint32, 4)}), true, false},
		{"rle truncated", pixeltest.Build(t, shortRLE), false, false},
		{"rle missing frame", pixeltest.Build(t, pixeltest.Spec{TS: dcm.RLELossless, Rows: 8, Cols: 8, Frames: 2, Fragments: [][]byte{rleFrag}}), false, false},
		{"jpeg corrupt", pixeltest.Build(t, pixeltest.Spec{TS: dcm.JPEGBaseline, Rows: 8, Cols: 8, BitsAlloc: 8, Fragments: [][]byte{{0xFF, 0xD8, 0xFF, 0xDB, 0, 3}}}), false, false},
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
	f.Add(pixeltest.Build(f, pixeltest.Spec{Rows: 4, Cols: 4, Raw: make([]uint32, 16)}))
	f.Add(pixeltest.Build(f, pixeltest.Spec{TS: dcm.RLELossless, Rows: 4, Cols: 4, Raw: pixeltest.Ramp(16, func(i int) uint32 { return uint32(i * 999) })}))
	f.Add(pixeltest.Build(f, pixeltest.Spec{TS: dcm.RLELossless, Rows: 3, Cols: 3, Frames: 2, BitsAlloc: 8, Raw: pixeltest.Ramp(18, func(i int) uint32 { return uint32(i) })}))
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
	f.Add(pixeltest.EncodeRLE(pixeltest.Ramp(12, func(i int) uint32 { return uint32(i * 300) }), 16), 3, 4, 16)
	f.Add(pixeltest.EncodeRLE(pixeltest.Ramp(12, func(i int) uint32 { return uint32(i) }), 8), 3, 4, 8)
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
	data := pixeltest.Build(t, pixeltest.Spec{TS: dcm.JPEGLSLossless, Rows: 4096, Cols: 4096, Frames: 2, Fragments: [][]byte{make([]byte, 256), make([]byte, 256)}})
	if _, err := Decode(data); err == nil || !strings.Contains(err.Error(), "samples per byte") {
		t.Errorf("Decode of 4096x4096x2 from 512 bytes: %v, want the expansion error", err)
	}
}
