package synth

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"
)

type niftiSpec struct {
	bo         binary.ByteOrder
	dims       []int16
	datatype   int16
	bitpix     int16
	pixdim     [3]float32
	slope      float32
	inter      float32
	qform      int16
	sform      int16
	quatern    [6]float32 // b c d x y z
	qfac       float32
	srow       [12]float32
	voxOffset  float32
	data       []byte
	magic      string
	compressed bool
}

func (s niftiSpec) bytes() []byte {
	h := make([]byte, 352)
	bo := s.bo
	if bo == nil {
		bo = binary.LittleEndian
	}
	bo.PutUint32(h[0:], 348)
	bo.PutUint16(h[40:], uint16(len(s.dims)))
	for i, d := range s.dims {
		bo.PutUint16(h[42+2*i:], uint16(d))
	}
	bo.PutUint16(h[70:], uint16(s.datatype))
	bo.PutUint16(h[72:], uint16(s.bitpix))
	put := func(off int, v float32) { bo.PutUint32(h[off:], math.Float32bits(v)) }
	put(76, s.qfac)
	for i, p := range s.pixdim {
		put(80+4*i, p)
	}
	vo := s.voxOffset
	if vo == 0 {
		vo = 352
	}
	put(108, vo)
	put(112, s.slope)
	put(116, s.inter)
	bo.PutUint16(h[252:], uint16(s.qform))
	bo.PutUint16(h[254:], uint16(s.sform))
	for i, v := range s.quatern {
		put(256+4*i, v)
	}
	for i, v := range s.srow {
		put(280+4*i, v)
	}
	magic := s.magic
	if magic == "" {
		magic = "n+1\x00"
	}
	copy(h[344:], magic)
	out := append(h, bytes.Repeat([]byte{0}, int(vo)-352)...)
	out = append(out, s.data...)
	if s.compressed {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write(out)
		zw.Close()
		return b.Bytes()
	}
	return out
}

func TestReadNIfTI(t *testing.T) {
	le, be := binary.LittleEndian, binary.BigEndian
	i16 := func(bo binary.ByteOrder, v ...int16) []byte {
		b := make([]byte, 2*len(v))
		for i, x := range v {
			bo.PutUint16(b[2*i:], uint16(x))
		}
		return b
	}
	f32 := func(v ...float32) []byte {
		b := make([]byte, 4*len(v))
		for i, x := range v {
			le.PutUint32(b[4*i:], math.Float32bits(x))
		}
		return b
	}
	diag := [12]float32{2, 0, 0, -10, 0, 3, 0, -20, 0, 0, 4, -30}
	cases := []struct {
		name   string
		spec   niftiSpec
		u8     []uint8
		f32    []float32
		affine [3][4]float64
	}{
		{
			name:   "uint8 sform gzip",
			spec:   niftiSpec{dims: []int16{2, 2, 1}, datatype: 2, bitpix: 8, pixdim: [3]float32{2, 3, 4}, slope: 1, sform: 1, srow: diag, data: []byte{1, 2, 3, 4}, compressed: true},
			u8:     []uint8{1, 2, 3, 4},
			affine: [3][4]float64{{2, 0, 0, -10}, {0, 3, 0, -20}, {0, 0, 4, -30}},
		},
		{
			name:   "uint8 scaled becomes float",
			spec:   niftiSpec{dims: []int16{2, 2, 1}, datatype: 2, bitpix: 8, pixdim: [3]float32{1, 1, 1}, slope: 2, inter: -1, data: []byte{0, 1, 255, 4}},
			f32:    []float32{-1, 1, 509, 7},
			affine: [3][4]float64{{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}},
		},
		{
			name:   "int16 big endian qform 180 about z",
			spec:   niftiSpec{bo: be, dims: []int16{2, 2, 1}, datatype: 4, bitpix: 16, pixdim: [3]float32{0.5, 0.5, 2}, qform: 1, quatern: [6]float32{0, 0, 1, 5, 6, 7}, qfac: 1, data: i16(be, -1024, 0, 7, 300)},
			f32:    []float32{-1024, 0, 7, 300},
			affine: [3][4]float64{{-0.5, 0, 0, 5}, {0, -0.5, 0, 6}, {0, 0, 2, 7}},
		},
		{
			name:   "float32 qfac -1 no transform codes",
			spec:   niftiSpec{dims: []int16{1, 2, 1}, datatype: 16, bitpix: 32, pixdim: [3]float32{1, 2, 3}, qfac: -1, data: f32(1.5, -2.25)},
			f32:    []float32{1.5, -2.25},
			affine: [3][4]float64{{1, 0, 0, 0}, {0, 2, 0, 0}, {0, 0, 3, 0}},
		},
		{
			name:   "int16 qform with qfac -1 and extension bytes",
			spec:   niftiSpec{dims: []int16{1, 1, 2}, datatype: 4, bitpix: 16, pixdim: [3]float32{1, 1, 2}, qform: 2, qfac: -1, voxOffset: 368, data: i16(le, 5, 6)},
			f32:    []float32{5, 6},
			affine: [3][4]float64{{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, -2, 0}},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n, err := ReadNIfTI(bytes.NewReader(c.spec.bytes()))
			if err != nil {
				t.Fatal(err)
			}
			if c.u8 != nil && !bytes.Equal(n.U8, c.u8) {
				t.Errorf("u8 %v want %v", n.U8, c.u8)
			}
			if c.f32 != nil {
				if len(n.F32) != len(c.f32) {
					t.Fatalf("f32 %v want %v", n.F32, c.f32)
				}
				for i := range c.f32 {
					if n.F32[i] != c.f32[i] {
						t.Errorf("f32 %v want %v", n.F32, c.f32)
					}
				}
			}
			for r := 0; r < 3; r++ {
				for k := 0; k < 4; k++ {
					if math.Abs(n.Affine[r][k]-c.affine[r][k]) > 1e-6 {
						t.Fatalf("affine %v want %v", n.Affine, c.affine)
					}
				}
			}
			inv := invertAffine(n.Affine)
			p := apply(n.Affine, [3]float64{1, 2, 3})
			if q := apply(inv, p); math.Abs(q[0]-1)+math.Abs(q[1]-2)+math.Abs(q[2]-3) > 1e-9 {
				t.Errorf("inverse affine round trip %v", q)
			}
		})
	}
}

func TestReadNIfTIRejects(t *testing.T) {
	good := niftiSpec{dims: []int16{2, 2, 2}, datatype: 2, bitpix: 8, pixdim: [3]float32{1, 1, 1}, data: make([]byte, 8)}
	mut := func(f func(*niftiSpec)) []byte { s := good; f(&s); return s.bytes() }
	cases := map[string][]byte{
		"empty":          {},
		"short":          []byte("\x5c\x01\x00\x00abc"),
		"bad size":       append([]byte{1, 2, 3, 4}, make([]byte, 400)...),
		"two-file magic": mut(func(s *niftiSpec) { s.magic = "ni1\x00" }),
		"bad datatype":   mut(func(s *niftiSpec) { s.datatype = 128 }),
		"bitpix":         mut(func(s *niftiSpec) { s.bitpix = 16 }),
		"zero dim":       mut(func(s *niftiSpec) { s.dims = []int16{2, 0, 2} }),
		"huge":           mut(func(s *niftiSpec) { s.dims = []int16{32767, 32767, 32767} }),
		"truncated data": mut(func(s *niftiSpec) { s.data = s.data[:5] }),
		"bad gzip":       {0x1f, 0x8b, 0, 0},
	}
	for name, b := range cases {
		if _, err := ReadNIfTI(bytes.NewReader(b)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := ReadNIfTI(bytes.NewReader(mut(func(s *niftiSpec) { s.magic = "xx" }))); !errors.Is(err, ErrNotNIfTI) {
		t.Errorf("bad magic: %v", err)
	}
}

func TestLoadNIfTIFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "v.nii")
	s := niftiSpec{dims: []int16{2, 1, 1}, datatype: 512, bitpix: 16, pixdim: [3]float32{1, 1, 1}, data: []byte{0xff, 0xff, 1, 0}}
	if err := os.WriteFile(p, s.bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	n, err := LoadNIfTI(p)
	if err != nil {
		t.Fatal(err)
	}
	if n.F32[0] != 65535 || n.F32[1] != 1 {
		t.Errorf("uint16 values %v", n.F32)
	}
}

// TestGenerateFromOtherVolume: any NIfTI works as a source, e.g. a float
// phantom-like blob written to disk, and the result is normalised.
func TestGenerateFromOtherVolume(t *testing.T) {
	const n = 40
	data := make([]byte, 4*n*n*n)
	for k := 0; k < n; k++ {
		for j := 0; j < n; j++ {
			for i := 0; i < n; i++ {
				d := sq(float64(i-n/2)) + sq(float64(j-n/2)) + sq(float64(k-n/2))
				v := float32(0)
				if d < 15*15 {
					v = 3000
				}
				binary.LittleEndian.PutUint32(data[4*((k*n+j)*n+i):], math.Float32bits(v))
			}
		}
	}
	s := niftiSpec{dims: []int16{n, n, n}, datatype: 16, bitpix: 32, pixdim: [3]float32{3, 3, 3}, sform: 1,
		srow: [12]float32{3, 0, 0, -60, 0, 3, 0, -60, 0, 0, 3, -60}, data: data, compressed: true}
	p := filepath.Join(t.TempDir(), "ball.nii.gz")
	if err := os.WriteFile(p, s.bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := Generate(Options{Source: p, Rows: 48, Cols: 48, Slices: 3, NoJitter: true, Noise: -1})
	if err != nil {
		t.Fatal(err)
	}
	if r.Source != p {
		t.Fatalf("source %s", r.Source)
	}
	// Centre pixel of the middle slice: the ball, normalised to white matter.
	mid := r.Slices[1].Stored[24*48+24]
	if want := int32(t1White * mrPerT1); mid < want*9/10 || mid > want*11/10 {
		t.Errorf("centre value %d, want about %d", mid, want)
	}
}

func FuzzReadNIfTI(f *testing.F) {
	f.Add(niftiSpec{dims: []int16{2, 2, 1}, datatype: 2, bitpix: 8, pixdim: [3]float32{1, 1, 1}, slope: 1, sform: 1,
		srow: [12]float32{1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0}, data: []byte{1, 2, 3, 4}}.bytes())
	f.Add(niftiSpec{bo: binary.BigEndian, dims: []int16{1, 1, 1}, datatype: 4, bitpix: 16, pixdim: [3]float32{1, 1, 1}, qform: 1, quatern: [6]float32{0.5, 0.5, 0.5}, data: []byte{0, 1}, compressed: true}.bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := ReadNIfTI(bytes.NewReader(b))
		if err != nil {
			return
		}
		total := n.Dim[0] * n.Dim[1] * n.Dim[2]
		if len(n.U8) != total && len(n.F32) != total {
			t.Fatalf("dims %v but %d/%d values", n.Dim, len(n.U8), len(n.F32))
		}
		if det3(n.Affine) == 0 || !finite(n.Affine) {
			t.Fatalf("unusable affine %v", n.Affine)
		}
	})
}
