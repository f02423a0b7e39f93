package npy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	f := &Array{Shape: []int{3, 2}, F32: []float32{1, -2, 3.5, float32(math.Inf(1)), 0, 1e-30}}
	if err := Write(filepath.Join(dir, "f.npy"), f); err != nil {
		t.Fatal(err)
	}
	got, err := Read(filepath.Join(dir, "f.npy"))
	if err != nil {
		t.Fatal(err)
	}
	if got.Dtype != DtypeFloat32 || len(got.Shape) != 2 || got.Shape[0] != 3 || got.Shape[1] != 2 {
		t.Fatalf("got %+v", got)
	}
	for i := range f.F32 {
		if got.F32[i] != f.F32[i] {
			t.Fatalf("value %d: %v != %v", i, got.F32[i], f.F32[i])
		}
	}
	u := &Array{Shape: []int{5}, U8: []uint8{0, 1, 0, 255, 1}}
	var buf bytes.Buffer
	if err := Encode(&buf, u); err != nil {
		t.Fatal(err)
	}
	if buf.Len()%64 != 5%64 || (buf.Len()-5)%64 != 0 {
		t.Errorf("header not padded to 64 bytes: total %d", buf.Len())
	}
	gu, err := Decode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if gu.Dtype != DtypeUint8 || !bytes.Equal(gu.U8, u.U8) || len(gu.Shape) != 1 || gu.Shape[0] != 5 {
		t.Fatalf("got %+v", gu)
	}
}

// TestUint8Masks round-trips 2-D uint8 masks as internal/synth writes them:
// a version 1.0 header padded to 64 bytes and ending in '\n'.
func TestUint8Masks(t *testing.T) {
	for _, sz := range [][2]int{{1, 1}, {37, 53}, {256, 256}, {3, 100}} {
		data := make([]uint8, sz[0]*sz[1])
		for i := range data {
			data[i] = uint8(i % 2)
		}
		var b bytes.Buffer
		if err := Encode(&b, &Array{Shape: []int{sz[0], sz[1]}, Dtype: DtypeUint8, U8: data}); err != nil {
			t.Fatal(err)
		}
		raw := b.Bytes()
		hl := int(binary.LittleEndian.Uint16(raw[8:]))
		if raw[6] != 1 || (10+hl)%64 != 0 || raw[10+hl-1] != '\n' {
			t.Errorf("%v: header length %d not 64-aligned", sz, hl)
		}
		got, err := Decode(bytes.NewReader(raw))
		if err != nil || got.Dtype != DtypeUint8 || len(got.Shape) != 2 || got.Shape[0] != sz[0] || got.Shape[1] != sz[1] || !bytes.Equal(got.U8, data) {
			t.Errorf("%v: %v %+v", sz, err, got)
		}
	}
}

// numpyBytes builds a file the way numpy.save does (checked against NumPy 1.26's
// output for np.save(f, np.array([[1, 2, 3]], dtype=np.float16))).
func numpyBytes(header string, data []byte) []byte {
	var b bytes.Buffer
	b.WriteString("\x93NUMPY\x01\x00")
	binary.Write(&b, binary.LittleEndian, uint16(len(header)))
	b.WriteString(header)
	b.Write(data)
	return b.Bytes()
}

func TestFromNumPy(t *testing.T) {
	h := "{'descr': '<f2', 'fortran_order': False, 'shape': (1, 3), }" + string(bytes.Repeat([]byte(" "), 58)) + "\n"
	if (10+len(h))%64 != 0 {
		t.Fatalf("test header length %d", len(h))
	}
	// float16 1, 2, 3 = 0x3c00, 0x4000, 0x4200
	a, err := Decode(bytes.NewReader(numpyBytes(h, []byte{0x00, 0x3c, 0x00, 0x40, 0x00, 0x42})))
	if err != nil {
		t.Fatal(err)
	}
	if a.Shape[0] != 1 || a.Shape[1] != 3 || a.F32[0] != 1 || a.F32[1] != 2 || a.F32[2] != 3 {
		t.Fatalf("got %+v", a)
	}
	// Big-endian float32 and a 1-tuple shape.
	h2 := "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }\n"
	a, err = Decode(bytes.NewReader(numpyBytes(h2, []byte{0x3f, 0x80, 0, 0, 0xc0, 0, 0, 0})))
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Shape) != 1 || a.F32[0] != 1 || a.F32[1] != -2 {
		t.Fatalf("got %+v", a)
	}
	// Our writer produces NumPy's exact header text.
	var buf bytes.Buffer
	if err := Encode(&buf, &Array{Shape: []int{1, 3}, F32: []float32{1, 2, 3}}); err != nil {
		t.Fatal(err)
	}
	want := "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3), }"
	if got := string(buf.Bytes()[10 : 10+len(want)]); got != want {
		t.Fatalf("header %q, want %q", got, want)
	}
}

func TestFloat16(t *testing.T) {
	cases := map[uint16]float32{0x0000: 0, 0x8000: float32(math.Copysign(0, -1)), 0x3c00: 1, 0xc000: -2, 0x7bff: 65504,
		0x0001: 5.9604645e-08, 0x03ff: 6.097555e-05, 0x0400: 6.1035156e-05, 0x3555: 0.33325195}
	for h, want := range cases {
		if got := Float16ToFloat32(h); got != want || math.Signbit(float64(got)) != math.Signbit(float64(want)) {
			t.Errorf("%#04x -> %v, want %v", h, got, want)
		}
	}
	if !math.IsInf(float64(Float16ToFloat32(0x7c00)), 1) || !math.IsNaN(float64(Float16ToFloat32(0x7e00))) {
		t.Error("inf/nan")
	}
}

func TestBad(t *testing.T) {
	ok := "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }\n"
	cases := map[string][]byte{
		"empty":      nil,
		"magic":      []byte("\x93NUMPX\x01\x00\x00\x00"),
		"truncated":  numpyBytes(ok, []byte{0, 0, 0, 0}),
		"fortran":    numpyBytes("{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }\n", make([]byte, 8)),
		"dtype":      numpyBytes("{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }\n", make([]byte, 16)),
		"shape":      numpyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }\n", make([]byte, 8)),
		"huge shape": numpyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (100000, 100000, 100000), }\n", make([]byte, 8)),
		"no shape":   numpyBytes("{'descr': '<f4', 'fortran_order': False, }\n", make([]byte, 8)),
	}
	for name, b := range cases {
		if _, err := Decode(bytes.NewReader(b)); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: err = %v, want ErrFormat", name, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	var buf bytes.Buffer
	Encode(&buf, &Array{Shape: []int{2, 2}, F32: []float32{1, 2, 3, 4}})
	f.Add(buf.Bytes())
	f.Add(numpyBytes("{'descr': '<f2', 'fortran_order': False, 'shape': (1, 3), }\n", make([]byte, 6)))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := Decode(bytes.NewReader(b))
		if err != nil {
			return
		}
		if n := a.Len(); n != len(a.F32) && n != len(a.U8) {
			t.Fatalf("shape %v but %d/%d values", a.Shape, len(a.F32), len(a.U8))
		}
	})
}

// TestWrittenByNumPy reads files numpy.save wrote (testdata/gen_npy.py).
func TestWrittenByNumPy(t *testing.T) {
	want := make([]float32, 12)
	for i := range want {
		want[i] = (float32(i) - 5.5) / 4 // exact in float16 too
	}
	for _, name := range []string{"f4_3x4", "f2_3x4", "f8_3x4"} {
		a, err := Read(filepath.Join("testdata", name+".npy"))
		if err != nil {
			t.Fatal(err)
		}
		if len(a.Shape) != 2 || a.Shape[0] != 3 || a.Shape[1] != 4 {
			t.Fatalf("%s: shape %v", name, a.Shape)
		}
		for i, v := range want {
			if a.F32[i] != v {
				t.Fatalf("%s[%d] = %v, want %v", name, i, a.F32[i], v)
			}
		}
	}
	u, err := Read(filepath.Join("testdata", "u1_2x3.npy"))
	if err != nil || !bytes.Equal(u.U8, []byte{0, 1, 255, 7, 0, 1}) || u.Shape[1] != 3 {
		t.Fatalf("u1: %+v %v", u, err)
	}
	b, err := Read(filepath.Join("testdata", "b1_4.npy"))
	if err != nil || !bytes.Equal(b.U8, []byte{1, 0, 0, 1}) {
		t.Fatalf("b1: %+v %v", b, err)
	}
	be, err := Read(filepath.Join("testdata", "f4_be_2.npy"))
	if err != nil || be.F32[0] != 1.5 || be.F32[1] != -2.25 {
		t.Fatalf("big-endian: %+v %v", be, err)
	}
	// Our writer's bytes for the float32 array equal NumPy's.
	mine := &bytes.Buffer{}
	if err := Encode(mine, &Array{Shape: []int{3, 4}, F32: want}); err != nil {
		t.Fatal(err)
	}
	theirs, err := os.ReadFile(filepath.Join("testdata", "f4_3x4.npy"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mine.Bytes(), theirs) {
		t.Fatalf("Encode differs from numpy.save:\n%q\n%q", mine.Bytes()[:80], theirs[:80])
	}
}
