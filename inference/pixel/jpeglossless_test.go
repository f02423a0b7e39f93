package pixel

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"anomalynode/inference/pixel/pixeltest"
	"anomalynode/internal/dcm"
	"anomalynode/internal/peers"
	"anomalynode/internal/synth"
)

// runTool runs a dcmtk program and fails the test with its output on error.
func runTool(t testing.TB, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(peers.Tool(t, name), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// decodeFileT decodes a Part-10 file or fails the test.
func decodeFileT(t testing.TB, path string) []*Slice {
	t.Helper()
	s, err := DecodeFile(path)
	if err != nil {
		t.Fatalf("decode %s: %v", filepath.Base(path), err)
	}
	return s
}

// sameStored fails unless both decodes hold the same frames, sizes and
// stored values.
func sameStored(t *testing.T, what string, want, got []*Slice) {
	t.Helper()
	if len(want) != len(got) {
		t.Fatalf("%s: %d frames, want %d", what, len(got), len(want))
	}
	for f := range want {
		w, g := want[f], got[f]
		if w.Rows != g.Rows || w.Cols != g.Cols || len(w.Stored) != len(g.Stored) {
			t.Fatalf("%s frame %d: %dx%d (%d values), want %dx%d (%d)", what, f, g.Cols, g.Rows, len(g.Stored), w.Cols, w.Rows, len(w.Stored))
		}
		for i := range w.Stored {
			if w.Stored[i] != g.Stored[i] {
				t.Fatalf("%s frame %d: pixel %d (row %d col %d) is %d, want %d", what, f, i, i/w.Cols, i%w.Cols, g.Stored[i], w.Stored[i])
			}
		}
	}
}

// jpegFragments returns the encapsulated fragments of a Part-10 file.
func jpegFragments(t testing.TB, path string) [][]byte {
	t.Helper()
	ds, err := dicom.ParseFile(path, nil, dicom.SkipProcessingPixelDataValue())
	if err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	el, err := ds.FindElementByTag(tag.PixelData)
	if err != nil {
		t.Fatalf("%s: no pixel data", path)
	}
	return fragments(el.Value.GetValue().(dicom.PixelDataInfo))
}

// scanPredictor returns the predictor selection (Ss) and point transform of
// the first SOS segment in a JPEG stream (-1 when there is none).
func scanPredictor(b []byte) (ss, pt int) {
	for i := 0; i+1 < len(b); i++ {
		if b[i] == 0xFF && b[i+1] == mSOS && i+4 < len(b) {
			ns := int(b[i+4])
			j := i + 5 + 2*ns
			if j+2 < len(b) {
				return int(b[j]), int(b[j+2] & 0x0F)
			}
		}
	}
	return -1, -1
}

// jpegSources are the images the dcmtk round trips start from: edge patterns
// written with the pixeltest.Spec builder and realistic slices from internal/synth.
func jpegSources(t *testing.T, dir string) map[string]string {
	t.Helper()
	rng := rand.New(rand.NewPCG(5, 14))
	out := map[string]string{}
	const r, c = 23, 31 // odd sizes: no power-of-two alignment to hide behind
	// 16-bit unsigned: noise, a smooth ramp, and a line alternating 0 and
	// 32768 whose differences are exactly 32768 (category 16, no extra bits).
	u16 := make([]uint32, r*c)
	for i := range u16 {
		y, x := i/c, i%c
		switch {
		case y == 4:
			u16[i] = uint32(x%2) * 32768
		case y == 5:
			u16[i] = uint32(x%2) * 65535
		case y < 12:
			u16[i] = uint32(rng.IntN(65536))
		default:
			u16[i] = uint32(1000 + 37*x + 91*y)
		}
	}
	out["u16"] = pixeltest.Write(t, dir, "u16.dcm", pixeltest.Spec{Rows: r, Cols: c, Raw: u16})
	u12 := make([]uint32, r*c)
	for i := range u12 {
		u12[i] = uint32((i*i + 7*i) % 4096)
		if i%11 == 0 {
			u12[i] = 4095
		}
	}
	out["u12"] = pixeltest.Write(t, dir, "u12.dcm", pixeltest.Spec{Rows: r, Cols: c, BitsStored: 12, Raw: u12})
	s16 := make([]uint32, r*c)
	for i := range s16 {
		v := int16(-1024 + rng.IntN(3000))
		switch i % 17 {
		case 0:
			v = -32768
		case 1:
			v = 32767
		}
		s16[i] = uint32(uint16(v))
	}
	out["s16"] = pixeltest.Write(t, dir, "s16.dcm", pixeltest.Spec{Rows: r, Cols: c, Signed: true, Raw: s16})
	u8 := make([]uint32, r*c)
	for i := range u8 {
		u8[i] = uint32(rng.IntN(256))
		if i/c > 10 {
			u8[i] = uint32(i % 256)
		}
	}
	out["u8"] = pixeltest.Write(t, dir, "u8.dcm", pixeltest.Spec{Rows: r, Cols: c, BitsAlloc: 8, Raw: u8})
	const nf = 3
	mf := make([]uint32, nf*r*c)
	for i := range mf {
		mf[i] = uint32((i/(r*c)+1)*500 + rng.IntN(200))
	}
	out["multiframe"] = pixeltest.Write(t, dir, "mf.dcm", pixeltest.Spec{Rows: r, Cols: c, Frames: nf, Raw: mf})

	// Realistic content: a signed CT slice (negative values, rescale) and a
	// 12-bit MR slice.
	for _, o := range []synth.Options{
		{Seed: 3, Slices: 1, Rows: 40, Cols: 36, Modality: synth.ModalityCT, Signed: true, Source: synth.SourcePhantom},
		{Seed: 4, Slices: 1, Rows: 33, Cols: 48, Modality: synth.ModalityMR, Source: synth.SourcePhantom},
	} {
		res, err := synth.Generate(o)
		if err != nil {
			t.Fatal(err)
		}
		b, err := res.EncodeSlice(0)
		if err != nil {
			t.Fatal(err)
		}
		name := "synth-" + strings.ToLower(o.Modality)
		p := filepath.Join(dir, name+".dcm")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		out[name] = p
	}
	return out
}

// TestJPEGLosslessDcmtk compresses every source with dcmcjpeg (Process 14,
// SV1 and each predictor 1-7, and with a point transform) and requires the
// decoded stored values to equal the uncompressed source's and dcmdjpeg's
// decompression of the same file, frame by frame.
func TestJPEGLosslessDcmtk(t *testing.T) {
	dir := t.TempDir()
	sources := jpegSources(t, dir)
	type variant struct {
		name string
		args []string
		ts   string
		sv   int
		pt   int
	}
	variants := []variant{{"e1", []string{"+e1"}, dcm.JPEGLosslessSV1, 1, 0}}
	for sv := 1; sv <= 7; sv++ {
		variants = append(variants, variant{fmt.Sprintf("sv%d", sv), []string{"+el", "+sv", fmt.Sprint(sv)}, dcm.JPEGLossless, sv, 0})
	}
	// Fragments of at most 1 KB: frames span several fragments.
	variants = append(variants, variant{"e1-1k-fragments", []string{"+e1", "+fs", "1"}, dcm.JPEGLosslessSV1, 1, 0})
	// With Pt > 0 the low bits are dropped: only dcmdjpeg's output is the reference.
	variants = append(variants, variant{"sv4-pt2", []string{"+el", "+sv", "4", "+pt", "2"}, dcm.JPEGLossless, 4, 2})
	names := make([]string, 0, len(sources))
	for n := range sources {
		names = append(names, n)
	}
	sort.Strings(names)
	split := 0
	for _, src := range names {
		orig := decodeFileT(t, sources[src])
		for _, v := range variants {
			t.Run(src+"/"+v.name, func(t *testing.T) {
				comp := filepath.Join(dir, src+"-"+v.name+".dcm")
				runTool(t, "dcmcjpeg", append(append([]string{}, v.args...), sources[src], comp)...)
				got := decodeFileT(t, comp)
				if got[0].TransferSyntax != v.ts {
					t.Fatalf("dcmcjpeg wrote transfer syntax %s, want %s", got[0].TransferSyntax, v.ts)
				}
				frags := jpegFragments(t, comp)
				if len(frags) > len(got) {
					split++
				}
				if ss, pt := scanPredictor(frags[0]); ss != v.sv || pt != v.pt {
					t.Fatalf("stream has predictor %d, Pt %d; want %d, %d", ss, pt, v.sv, v.pt)
				}
				if v.pt == 0 {
					sameStored(t, "vs source", orig, got)
				}
				plain := filepath.Join(dir, src+"-"+v.name+"-dcmdjpeg.dcm")
				runTool(t, "dcmdjpeg", comp, plain)
				sameStored(t, "vs dcmdjpeg", decodeFileT(t, plain), got)
			})
		}
	}
	if split == 0 {
		t.Fatal("no dcmcjpeg output had a frame split over fragments")
	}
}

// losslessTestEncoder writes Process 14 streams with what dcmcjpeg does not
// offer: restart intervals, fill bytes before markers, and codes longer than
// the fast lookup. Its output is checked against dcmdjpeg, not just against
// the decoder under test.
type losslessTestEncoder struct {
	w, h, p, pt, sel int
	restartRows      int
	fillBytes        bool
	out              []byte
	acc              uint32
	nacc             uint
}

// testCodeLen is the code length of each category: 0-2 take 2 bits, category
// k >= 3 takes k bits (16 takes 16), so categories 10+ need the slow path.
func testCodeLen(cat int) int {
	switch {
	case cat < 3:
		return 2
	case cat == 16:
		return 16
	default:
		return cat
	}
}

func (e *losslessTestEncoder) table() (counts [16]byte, vals []byte, codes [17]uint32) {
	for cat := 0; cat <= 16; cat++ {
		counts[testCodeLen(cat)-1]++
		vals = append(vals, byte(cat))
	}
	code := uint32(0)
	k := 0
	for l := 1; l <= 16; l++ {
		for i := 0; i < int(counts[l-1]); i++ {
			codes[vals[k]] = code
			code++
			k++
		}
		code <<= 1
	}
	return counts, vals, codes
}

func (e *losslessTestEncoder) bits(v uint32, n uint) {
	for i := int(n) - 1; i >= 0; i-- {
		e.acc = e.acc<<1 | (v>>uint(i))&1
		e.nacc++
		if e.nacc == 8 {
			b := byte(e.acc)
			e.out = append(e.out, b)
			if b == 0xFF {
				e.out = append(e.out, 0)
			}
			e.acc, e.nacc = 0, 0
		}
	}
}

func (e *losslessTestEncoder) flush() {
	for e.nacc != 0 {
		e.bits(1, 1)
	}
}

func seg(marker byte, body ...byte) []byte {
	n := len(body) + 2
	return append([]byte{0xFF, marker, byte(n >> 8), byte(n)}, body...)
}

// encode compresses samples (already P bits wide; Pt drops low bits first).
func (e *losslessTestEncoder) encode(samples []uint16) []byte {
	counts, vals, codes := e.table()
	e.out = []byte{0xFF, mSOI}
	e.out = append(e.out, seg(0xFE, []byte("anomalynode test encoder")...)...)
	e.out = append(e.out, seg(mSOF3, byte(e.p), byte(e.h>>8), byte(e.h), byte(e.w>>8), byte(e.w), 1, 1, 0x11, 0)...)
	e.out = append(e.out, seg(mDHT, append(append([]byte{0x00}, counts[:]...), vals...)...)...)
	if e.restartRows > 0 {
		ri := e.restartRows * e.w
		e.out = append(e.out, seg(mDRI, byte(ri>>8), byte(ri))...)
	}
	e.out = append(e.out, seg(mSOS, 1, 1, 0x00, byte(e.sel), 0, byte(e.pt))...)
	v := make([]int32, len(samples))
	for i, s := range samples {
		v[i] = int32(s >> e.pt)
	}
	interval := 0
	for y := 0; y < e.h; y++ {
		first := y == 0
		if e.restartRows > 0 && y > 0 && y%e.restartRows == 0 {
			e.flush()
			if e.fillBytes {
				e.out = append(e.out, 0xFF, 0xFF)
			}
			e.out = append(e.out, 0xFF, byte(mRST0+interval%8))
			interval++
			first = true
		}
		for x := 0; x < e.w; x++ {
			i := y*e.w + x
			var px int32
			switch {
			case first && x == 0:
				px = 1 << (e.p - e.pt - 1)
			case first:
				px = v[i-1]
			case x == 0:
				px = v[i-e.w]
			default:
				ra, rb, rc := v[i-1], v[i-e.w], v[i-e.w-1]
				px = [...]int32{0, ra, rb, rc, ra + rb - rc, ra + (rb-rc)>>1, rb + (ra-rc)>>1, (ra + rb) >> 1}[e.sel]
			}
			d := (v[i] - px) & 0xFFFF
			if d >= 32768 {
				d -= 65536
			}
			if d == -32768 {
				d = 32768
			}
			cat, mag := 0, d
			if mag < 0 {
				mag = -mag
			}
			for mag>>cat != 0 {
				cat++
			}
			e.bits(codes[cat], uint(testCodeLen(cat)))
			if cat > 0 && cat < 16 {
				extra := d
				if d < 0 {
					extra = d + (1 << cat) - 1
				}
				e.bits(uint32(extra), uint(cat))
			}
		}
	}
	e.flush()
	return append(e.out, 0xFF, mEOI)
}

// TestJPEGLosslessRestartIntervals decodes streams with restart intervals
// (and fill bytes before the RST markers) and requires the source values and
// dcmdjpeg's decompression of the same file.
func TestJPEGLosslessRestartIntervals(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	const r, c = 19, 13
	cases := []struct {
		name             string
		p, pt, sel, rows int
		fill, signed     bool
		bitsStored       int
	}{
		{"sv1-every-line", 16, 0, 1, 1, false, false, 16},
		{"sv7-every-4-lines-fill", 16, 0, 7, 4, true, true, 16},
		{"sv6-p12-every-5", 12, 0, 6, 5, false, false, 12},
		{"sv4-pt1-every-3", 16, 1, 4, 3, true, false, 16},
		{"sv5-no-restart", 16, 0, 5, 0, false, true, 16},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw := make([]uint32, r*c)
			samples := make([]uint16, r*c)
			for i := range raw {
				v := uint32(rng.IntN(1 << tc.p))
				if i%c < 4 {
					v = uint32(i * 97 % (1 << tc.p))
				}
				if tc.pt > 0 {
					v &^= 1<<tc.pt - 1
				}
				raw[i], samples[i] = v, uint16(v)
			}
			enc := &losslessTestEncoder{w: c, h: r, p: tc.p, pt: tc.pt, sel: tc.sel, restartRows: tc.rows, fillBytes: tc.fill}
			stream := enc.encode(samples)
			got, prec, err := decodeJPEGLosslessFrame(stream, r, c)
			if err != nil {
				t.Fatal(err)
			}
			if prec != tc.p {
				t.Fatalf("precision %d, want %d", prec, tc.p)
			}
			for i := range samples {
				if got[i] != samples[i] {
					t.Fatalf("sample %d = %d, want %d", i, got[i], samples[i])
				}
			}
			comp := pixeltest.Write(t, dir, tc.name+".dcm", pixeltest.Spec{TS: dcm.JPEGLossless, Rows: r, Cols: c, BitsStored: tc.bitsStored, Signed: tc.signed, Fragments: [][]byte{stream}})
			plain := pixeltest.Write(t, dir, tc.name+"-native.dcm", pixeltest.Spec{Rows: r, Cols: c, BitsStored: tc.bitsStored, Signed: tc.signed, Raw: raw})
			dec := decodeFileT(t, comp)
			sameStored(t, "vs source", decodeFileT(t, plain), dec)
			peer := filepath.Join(dir, tc.name+"-dcmdjpeg.dcm")
			runTool(t, "dcmdjpeg", comp, peer)
			sameStored(t, "vs dcmdjpeg", decodeFileT(t, peer), dec)
		})
	}
}

// compressedSample returns one dcmcjpeg SV1 stream of a 23x31 16-bit image.
func compressedSample(t testing.TB) []byte {
	t.Helper()
	dir := t.TempDir()
	raw := pixeltest.Ramp(23*31, func(i int) uint32 { return uint32(i*i) % 60000 })
	src := pixeltest.Write(t, dir, "src.dcm", pixeltest.Spec{Rows: 23, Cols: 31, Raw: raw})
	comp := filepath.Join(dir, "comp.dcm")
	runTool(t, "dcmcjpeg", "+e1", src, comp)
	return jpegFragments(t, comp)[0]
}

// findMarker returns the index of the first X'FF' m marker.
func findMarker(t *testing.T, b []byte, m byte) int {
	t.Helper()
	i := bytes.Index(b, []byte{0xFF, m})
	if i < 0 {
		t.Fatalf("no marker %#x", m)
	}
	return i
}

func TestJPEGLosslessErrors(t *testing.T) {
	good := compressedSample(t)
	if _, _, err := decodeJPEGLosslessFrame(good, 23, 31); err != nil {
		t.Fatalf("good stream: %v", err)
	}
	mut := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	sos := findMarker(t, good, mSOS)
	dht := findMarker(t, good, mDHT)
	sof := findMarker(t, good, mSOF3)
	cases := []struct {
		name       string
		data       []byte
		rows, cols int
		want       error
		msg        string
	}{
		{"truncated half", good[:len(good)/2], 23, 31, ErrBadPixelData, "ends before"},
		{"truncated header", good[:sos+6], 23, 31, ErrBadPixelData, "runs past"},
		{"no SOI", good[2:], 23, 31, ErrBadPixelData, "SOI"},
		{"empty", nil, 23, 31, ErrBadPixelData, "SOI"},
		{"Huffman table overflows", mut(func(b []byte) []byte {
			// Three 1-bit codes, the total kept: only the code lengths lie.
			moved := 0
			for i := dht + 20; i > dht+5 && moved < 3; i-- {
				for b[i] > 0 && moved < 3 {
					b[i]--
					moved++
				}
			}
			b[dht+5] += byte(moved)
			return b
		}), 23, 31, ErrBadPixelData, "overflows"},
		{"Huffman value above 16", mut(func(b []byte) []byte { b[dht+21] = 200; return b }), 23, 31, ErrBadPixelData, "Huffman"},
		{"size differs from header", good, 20, 31, ErrBadPixelData, "DICOM header says"},
		{"colour", mut(func(b []byte) []byte {
			// Three components: the frame header grows by two component specs.
			hdr := []byte{0xFF, mSOF3, 0, 17, b[sof+4], b[sof+5], b[sof+6], b[sof+7], b[sof+8], 3, 1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0}
			return append(append(append([]byte(nil), b[:sof]...), hdr...), b[sof+13:]...)
		}), 23, 31, ErrUnsupported, "3 components"},
		{"arithmetic coding", mut(func(b []byte) []byte { b[sof+1] = 0xCB; return b }), 23, 31, ErrUnsupported, "SOF11"},
		{"predictor 0", mut(func(b []byte) []byte { b[sos+7] = 0; return b }), 23, 31, ErrUnsupported, "predictor"},
		{"undefined table", mut(func(b []byte) []byte { b[sos+6] = 0x30; return b }), 23, 31, ErrBadPixelData, "undefined Huffman"},
		{"precision 17", mut(func(b []byte) []byte { b[sof+4] = 17; return b }), 23, 31, ErrBadPixelData, "precision"},
		{"garbage entropy data", mut(func(b []byte) []byte {
			for i := sos + 10; i < len(b)-2; i++ {
				b[i] = 0xFE
			}
			return b
		}), 23, 31, ErrBadPixelData, "lossless JPEG"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := decodeJPEGLosslessFrame(tc.data, tc.rows, tc.cols)
			if !errors.Is(err, tc.want) || !strings.Contains(fmt.Sprint(err), tc.msg) {
				t.Fatalf("err = %v, want %v containing %q", err, tc.want, tc.msg)
			}
		})
	}

	// Restart markers out of sequence.
	samples := make([]uint16, 6*5)
	for i := range samples {
		samples[i] = uint16(i * 1000)
	}
	rs := (&losslessTestEncoder{w: 5, h: 6, p: 16, sel: 1, restartRows: 2}).encode(samples)
	rs[bytes.Index(rs, []byte{0xFF, mRST0})+1] = mRST0 + 3
	if _, _, err := decodeJPEGLosslessFrame(rs, 6, 5); !errors.Is(err, ErrBadPixelData) || !strings.Contains(err.Error(), "RST0") {
		t.Fatalf("out-of-sequence RST: %v", err)
	}

	// A restart interval that ends inside a line: libjpeg-based decoders
	// (dcmtk's) refuse it, and so does this one, as unsupported.
	mid := (&losslessTestEncoder{w: 5, h: 6, p: 16, sel: 1, restartRows: 2}).encode(samples)
	mid[bytes.Index(mid, []byte{0xFF, mDRI})+5] = 7
	if _, _, err := decodeJPEGLosslessFrame(mid, 6, 5); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "restart interval 7") {
		t.Fatalf("restart interval inside a line: %v", err)
	}

	// Through Decode: the transfer syntax is named and the error classes kept.
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		spec pixeltest.Spec
		want error
	}{
		{"wrong rows", pixeltest.Spec{TS: dcm.JPEGLosslessSV1, Rows: 22, Cols: 31, Fragments: [][]byte{good}}, ErrBadPixelData},
		{"truncated", pixeltest.Spec{TS: dcm.JPEGLosslessSV1, Rows: 23, Cols: 31, Fragments: [][]byte{good[:len(good)-40]}}, ErrBadPixelData},
		{"two frames, one fragment", pixeltest.Spec{TS: dcm.JPEGLosslessSV1, Rows: 23, Cols: 31, Frames: 2, Fragments: [][]byte{good}}, ErrBadPixelData},
		{"16-bit samples in 8 bits", pixeltest.Spec{TS: dcm.JPEGLossless, Rows: 23, Cols: 31, BitsAlloc: 8, Fragments: [][]byte{good}}, ErrBadPixelData},
		{"colour", pixeltest.Spec{TS: dcm.JPEGLossless, Rows: 23, Cols: 31, Fragments: [][]byte{cases[7].data}}, ErrUnsupported},
	} {
		t.Run("Decode/"+tc.name, func(t *testing.T) {
			_, err := DecodeFile(pixeltest.Write(t, dir, "e.dcm", tc.spec))
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			var ue *UnsupportedError
			if errors.As(err, &ue) && ue.TransferSyntax != tc.spec.TS {
				t.Fatalf("UnsupportedError names transfer syntax %q, want %q", ue.TransferSyntax, tc.spec.TS)
			}
		})
	}
}

// TestJPEGLosslessSplitFragments decodes a two-frame image whose frames are
// each split over two fragments.
func TestJPEGLosslessSplitFragments(t *testing.T) {
	good := compressedSample(t)
	half := len(good) / 2 &^ 1
	dir := t.TempDir()
	p := pixeltest.Write(t, dir, "split.dcm", pixeltest.Spec{TS: dcm.JPEGLosslessSV1, Rows: 23, Cols: 31, Frames: 2,
		Fragments: [][]byte{good[:half], good[half:], good[:half], good[half:]}})
	s := decodeFileT(t, p)
	want, _, err := decodeJPEGLosslessFrame(good, 23, 31)
	if err != nil {
		t.Fatal(err)
	}
	for f := range s {
		for i, v := range want {
			if s[f].Stored[i] != int32(v) {
				t.Fatalf("frame %d pixel %d = %d, want %d", f, i, s[f].Stored[i], v)
			}
		}
	}
}

// FuzzDecodeJPEGLossless feeds arbitrary streams and header sizes: it must
// never panic, only return samples for the size asked, and classify every
// failure as bad pixel data or unsupported.
func FuzzDecodeJPEGLossless(f *testing.F) {
	samples := make([]uint16, 7*9)
	for i := range samples {
		samples[i] = uint16(i * i * 31)
	}
	f.Add((&losslessTestEncoder{w: 9, h: 7, p: 16, sel: 1}).encode(samples), uint16(7), uint16(9))
	f.Add((&losslessTestEncoder{w: 9, h: 7, p: 16, sel: 7, restartRows: 2, fillBytes: true}).encode(samples), uint16(7), uint16(9))
	f.Fuzz(func(t *testing.T, data []byte, rows, cols uint16) {
		out, p, err := decodeJPEGLosslessFrame(data, int(rows), int(cols))
		if err != nil {
			if !errors.Is(err, ErrBadPixelData) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		if len(out) != int(rows)*int(cols) || p < 2 || p > 16 {
			t.Fatalf("%d samples, precision %d for %dx%d", len(out), p, cols, rows)
		}
	})
}

// BenchmarkDecodeJPEGLossless decodes a 512x512 16-bit CT slice compressed by
// dcmcjpeg (SV1) through Decode, against dcmdjpeg in the same run
// (benchCompressedDecode).
func BenchmarkDecodeJPEGLossless(b *testing.B) {
	benchCompressedDecode(b, "dcmcjpeg", []string{"+e1"}, "dcmdjpeg")
}

// benchCompressedDecode decodes a 512x512 16-bit CT slice compressed by the
// dcmtk tool compress (with args) through Decode, and in the same run times
// dcmtk's decompress on the same file (a process per file, as a PACS-side
// converter would run), its time per extra frame of a 16-frame file against
// ours, and our native decode of the uncompressed file.
func benchCompressedDecode(b *testing.B, compress string, args []string, decompress string) {
	res, err := synth.Generate(synth.Options{Seed: 9, Slices: 1, Rows: 512, Cols: 512, Modality: synth.ModalityCT, Signed: true, Source: synth.SourcePhantom})
	if err != nil {
		b.Fatal(err)
	}
	native, err := res.EncodeSlice(0)
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	src := filepath.Join(dir, "ct.dcm")
	comp := filepath.Join(dir, "ct-comp.dcm")
	if err := os.WriteFile(src, native, 0o644); err != nil {
		b.Fatal(err)
	}
	runTool(b, compress, append(append([]string(nil), args...), src, comp)...)
	data, err := os.ReadFile(comp)
	if err != nil {
		b.Fatal(err)
	}
	median := func(n int, f func()) time.Duration {
		d := make([]time.Duration, n)
		for i := range d {
			t0 := time.Now()
			f()
			d[i] = time.Since(t0)
		}
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return d[n/2]
	}
	// The same slice 16 times in one file: dcmtk's time per extra frame,
	// without its process start and file writing, is its decoder's own speed.
	const nf = 16
	raw := make([]uint32, 0, nf*512*512)
	for range nf {
		for _, v := range res.Slices[0].Stored {
			raw = append(raw, uint32(uint16(v)))
		}
	}
	srcN := pixeltest.Write(b, dir, "ct16.dcm", pixeltest.Spec{Rows: 512, Cols: 512, Frames: nf, Signed: true, Raw: raw})
	compN := filepath.Join(dir, "ct16-comp.dcm")
	runTool(b, compress, append(append([]string(nil), args...), srcN, compN)...)
	dataN, err := os.ReadFile(compN)
	if err != nil {
		b.Fatal(err)
	}
	peer := peers.Tool(b, decompress)
	dcmtkRun := func(in string) func() {
		return func() {
			if out, err := exec.Command(peer, in, filepath.Join(dir, "out.dcm")).CombinedOutput(); err != nil {
				b.Fatalf("%s: %v\n%s", decompress, err, out)
			}
		}
	}
	dcmtk := median(5, dcmtkRun(comp))
	dcmtkFrame := (median(5, dcmtkRun(compN)) - dcmtk) / (nf - 1)
	oursFrame := median(5, func() {
		if _, err := Decode(dataN); err != nil {
			b.Fatal(err)
		}
	}) / nf
	nat := median(9, func() {
		if _, err := Decode(native); err != nil {
			b.Fatal(err)
		}
	})
	b.ResetTimer()
	t0 := time.Now()
	n := 0
	for b.Loop() {
		if _, err := Decode(data); err != nil {
			b.Fatal(err)
		}
		n++
	}
	per := time.Since(t0) / time.Duration(n)
	b.ReportMetric(float64(512*512*2)/per.Seconds()/1e6, "MB/s")
	b.ReportMetric(float64(len(native))/float64(len(data)), "compression")
	b.ReportMetric(float64(dcmtk)/float64(per), decompress+"-file/ours")
	b.ReportMetric(float64(dcmtkFrame)/float64(oursFrame), decompress+"-frame/ours-frame")
	b.ReportMetric(float64(per)/float64(nat), "ours/native")
}
