package pixel

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"anomalynode/inference/pixel/pixeltest"
	"anomalynode/internal/dcm"
	"anomalynode/internal/synth"
)

// jlsScanParams returns NEAR and ILV of the first SOS segment of a JPEG-LS
// stream and whether an LSE segment precedes it.
func jlsScanParams(b []byte) (near, ilv int, lse bool) {
	for i := 0; i+1 < len(b); i++ {
		if b[i] != 0xFF {
			continue
		}
		switch b[i+1] {
		case mLSE:
			lse = true
		case mSOS:
			ns := int(b[i+4])
			j := i + 5 + 2*ns
			if j+1 < len(b) {
				return int(b[j]), int(b[j+1]), lse
			}
		}
	}
	return -1, -1, lse
}

// TestJPEGLSDcmtk compresses every source with dcmcjpls (lossless, with
// non-default thresholds and RESET, near-lossless with NEAR 1, 2 and 7, with
// 1 KB fragments, zero padding) and requires the decoded stored values to
// equal dcmdjpls's decompression of the same file, and for lossless streams
// the source's too; near-lossless ones must stay within NEAR of the source.
func TestJPEGLSDcmtk(t *testing.T) {
	dir := t.TempDir()
	sources := jpegSources(t, dir)
	// dcmcjpls refuses near-lossless coding of signed data: an unsigned
	// CT slice (raw Hounsfield + 1024) gives the near-lossless runs a
	// realistic CT.
	res, err := synth.Generate(synth.Options{Seed: 5, Slices: 1, Rows: 37, Cols: 44, Modality: synth.ModalityCT, Source: synth.SourcePhantom})
	if err != nil {
		t.Fatal(err)
	}
	b, err := res.EncodeSlice(0)
	if err != nil {
		t.Fatal(err)
	}
	sources["synth-ct-unsigned"] = filepath.Join(dir, "synth-ct-unsigned.dcm")
	if err := os.WriteFile(sources["synth-ct-unsigned"], b, 0o644); err != nil {
		t.Fatal(err)
	}
	// Smooth slopes with 0/1 noise keep the regular mode's errors near
	// zero (k = 0, where the error mapping depends on the bias).
	rng := rand.New(rand.NewPCG(80, 81))
	const r, c = 29, 37
	smooth := make([]uint32, r*c)
	for i := range smooth {
		smooth[i] = uint32(3000 + 5*(i%c) + 7*(i/c) + rng.IntN(2))
	}
	sources["u16-smooth"] = pixeltest.Write(t, dir, "u16-smooth.dcm", pixeltest.Spec{Rows: r, Cols: c, Raw: smooth})
	type variant struct {
		name string
		args []string
		ts   string
		near int
	}
	variants := []variant{
		{"lossless", nil, dcm.JPEGLSLossless, 0},
		{"lossless-cooked", []string{"+pc"}, dcm.JPEGLSLossless, 0},
		{"lossless-t-5-20-80-reset-32", []string{"+t1", "5", "+t2", "20", "+t3", "80", "+rs", "32"}, dcm.JPEGLSLossless, 0},
		{"lossless-1k-fragments-zero-pad", []string{"+fs", "1", "+pz"}, dcm.JPEGLSLossless, 0},
		{"near1", []string{"+en", "+md", "1"}, dcm.JPEGLSNearLossless, 1},
		{"near2", []string{"+en"}, dcm.JPEGLSNearLossless, 2},
		{"near7-t-9-9-9-reset-31", []string{"+en", "+md", "7", "+t1", "9", "+t2", "9", "+t3", "9", "+rs", "31"}, dcm.JPEGLSNearLossless, 7},
	}
	names := make([]string, 0, len(sources))
	for n := range sources {
		names = append(names, n)
	}
	sort.Strings(names)
	split := 0
	for _, src := range names {
		orig := decodeFileT(t, sources[src])
		for _, v := range variants {
			if v.near > 0 && orig[0].MinStored < 0 {
				continue
			}
			t.Run(src+"/"+v.name, func(t *testing.T) {
				comp := filepath.Join(dir, src+"-"+v.name+".dcm")
				runTool(t, "dcmcjpls", append(append([]string{}, v.args...), sources[src], comp)...)
				got := decodeFileT(t, comp)
				if got[0].TransferSyntax != v.ts {
					t.Fatalf("dcmcjpls wrote transfer syntax %s, want %s", got[0].TransferSyntax, v.ts)
				}
				frags := jpegFragments(t, comp)
				if len(frags) > len(got) {
					split++
				}
				if near, ilv, _ := jlsScanParams(frags[0]); near != v.near || ilv != 0 {
					t.Fatalf("stream has NEAR %d, ILV %d; want %d, 0", near, ilv, v.near)
				}
				defaults := !strings.Contains(v.name, "-t-")
				joined, err := splitJPEGFrames(frags, len(got))
				if err != nil {
					t.Fatal(err)
				}
				for _, f := range joined {
					checkJLSDefaults(t, f, defaults)
				}
				plain := filepath.Join(dir, src+"-"+v.name+"-dcmdjpls.dcm")
				runTool(t, "dcmdjpls", comp, plain)
				sameStored(t, "vs dcmdjpls", decodeFileT(t, plain), got)
				if v.near == 0 {
					sameStored(t, "vs source", orig, got)
					return
				}
				for f := range orig {
					for i, w := range orig[f].Stored {
						if d := got[f].Stored[i] - w; d > int32(v.near) || d < -int32(v.near) {
							t.Fatalf("frame %d pixel %d: %d, source %d: more than NEAR %d apart", f, i, got[f].Stored[i], w, v.near)
						}
					}
				}
			})
		}
	}
	if split == 0 {
		t.Fatal("no dcmcjpls output had a frame split over fragments")
	}
}

// checkJLSDefaults compares the LSE preset parameters dcmcjpls wrote with
// the defaults this decoder derives (T.87 C.2.4.1.1) when the encoder was
// left on its defaults; and, for those streams, requires the stream with
// its LSE segment removed, so that the decoder's defaults are used, to
// decode to the same samples.
func checkJLSDefaults(t *testing.T, stream []byte, defaults bool) {
	t.Helper()
	i := bytes.Index(stream, []byte{0xFF, mLSE})
	if i < 0 {
		if !defaults {
			t.Fatal("non-default parameters without an LSE segment")
		}
		return
	}
	seg := stream[i+4 : i+2+u16(stream[i+2:])]
	u := func(j int) int { return int(seg[j])<<8 | int(seg[j+1]) }
	sof := bytes.Index(stream, []byte{0xFF, mSOF55})
	near, _, _ := jlsScanParams(stream)
	prec := int(stream[sof+4])
	want := jlsParams{maxval: 1<<prec - 1, near: near}
	if err := jlsDefaults(&want, prec); err != nil {
		t.Fatal(err)
	}
	got := [5]int{u(1), u(3), u(5), u(7), u(9)}
	if !defaults {
		if got == [5]int{want.maxval, want.t1, want.t2, want.t3, want.reset} {
			t.Fatalf("LSE %v holds the defaults: the options did not reach the stream", got)
		}
		return
	}
	if got != [5]int{want.maxval, want.t1, want.t2, want.t3, want.reset} {
		t.Fatalf("dcmcjpls LSE MAXVAL/T1/T2/T3/RESET %v, our defaults %v", got, [5]int{want.maxval, want.t1, want.t2, want.t3, want.reset})
	}
	with, _, err := decodeJPEGLSFrame(stream, u16(stream[sof+5:]), u16(stream[sof+7:]))
	if err != nil {
		t.Fatal(err)
	}
	stripped := append(append([]byte(nil), stream[:i]...), stream[i+2+len(seg)+2:]...)
	without, _, err := decodeJPEGLSFrame(stripped, u16(stream[sof+5:]), u16(stream[sof+7:]))
	if err != nil {
		t.Fatalf("without LSE: %v", err)
	}
	if !slices.Equal(with, without) {
		t.Fatal("decoding with the default parameters differs from decoding with dcmcjpls's LSE")
	}
}

func u16(b []byte) int { return int(b[0])<<8 | int(b[1]) }

// charLS1Thresholds are the default thresholds CharLS 1.x, and so dcmtk,
// uses: the MAXVAL >= 128 formula of T.87 C.2.4.1.1 for every MAXVAL
// (CharLS issue #51). For MAXVAL >= 128 they are the standard's.
func charLS1Thresholds(maxval, near int) (t1, t2, t3 int) {
	f := (min(maxval, 4095) + 128) >> 8
	clamp := func(i, j int) int {
		if i > maxval || i < j {
			return j
		}
		return i
	}
	t1 = clamp(f*1+2+3*near, near+1)
	t2 = clamp(f*4+3+5*near, t1)
	t3 = clamp(f*17+4+7*near, t2)
	return
}

// TestJPEGLSLowBitDcmtk covers 6 and 7-bit samples (MAXVAL < 128; dcmcjpls
// refuses fewer bits). dcmcjpls codes them with CharLS 1.x's thresholds but
// writes no LSE segment, so a decoder following T.87 (this one, CharLS 2)
// takes other thresholds; the test gives ours dcmtk's in an LSE segment and
// then requires dcmdjpls's values (and the source's for lossless). Such
// images are practically absent from DICOM (CT, MR, CR, DX are 8-16 bit).
func TestJPEGLSLowBitDcmtk(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(6, 7))
	const r, c = 29, 37
	for _, bitsStored := range []int{7, 6} {
		raw := make([]uint32, r*c)
		top := 1<<bitsStored - 1
		for i := range raw {
			raw[i] = uint32((i%c + i/c + rng.IntN(3)) % (top + 1))
			if i/c > 20 {
				raw[i] = uint32(rng.IntN(top + 1))
			}
		}
		src := pixeltest.Write(t, dir, fmt.Sprintf("u%d.dcm", bitsStored), pixeltest.Spec{Rows: r, Cols: c, BitsAlloc: 8, BitsStored: bitsStored, Raw: raw})
		// +pc: "cooked" coding keeps the stored bits' precision.
		for _, args := range [][]string{{"+pc"}, {"+en", "+md", "1"}, {"+en"}} {
			name := fmt.Sprintf("u%d/%s", bitsStored, strings.Join(args, ""))
			t.Run(name, func(t *testing.T) {
				comp := filepath.Join(dir, "comp.dcm")
				runTool(t, "dcmcjpls", append(append([]string{}, args...), src, comp)...)
				stream := jpegFragments(t, comp)[0]
				sof := findMarker(t, stream, mSOF55)
				if p := int(stream[sof+4]); p != bitsStored {
					t.Fatalf("precision %d, want %d", p, bitsStored)
				}
				near, _, lse := jlsScanParams(stream)
				if lse {
					t.Fatal("dcmcjpls wrote an LSE segment: the test's premise is gone")
				}
				t1, t2, t3 := charLS1Thresholds(top, near)
				lseSeg := []byte{0xFF, mLSE, 0, 13, 1, 0, byte(top), 0, byte(t1), 0, byte(t2), 0, byte(t3), 0, 64}
				sos := findMarker(t, stream, mSOS)
				patched := append(append(append([]byte(nil), stream[:sos]...), lseSeg...), stream[sos:]...)
				got, _, err := decodeJPEGLSFrame(patched, r, c)
				if err != nil {
					t.Fatal(err)
				}
				plain := filepath.Join(dir, "plain.dcm")
				runTool(t, "dcmdjpls", comp, plain)
				want := decodeFileT(t, plain)[0].Stored
				for i := range want {
					if int32(got[i]) != want[i] {
						t.Fatalf("pixel %d = %d, dcmdjpls %d", i, got[i], want[i])
					}
					if near == 0 && want[i] != int32(raw[i]) {
						t.Fatalf("pixel %d = %d, source %d", i, want[i], raw[i])
					}
				}
			})
		}
	}
}

// TestJPEGLSDefaultThresholds checks the default preset parameters against
// values worked out by hand from T.87 C.2.4.1.1 (the MAXVAL >= 128 ones are
// also what dcmcjpls writes in its LSE segments, checked in
// TestJPEGLSDcmtk).
func TestJPEGLSDefaultThresholds(t *testing.T) {
	for _, tc := range []struct {
		prec, maxval, near int
		t1, t2, t3         int
	}{
		{8, 255, 0, 3, 7, 21},
		{8, 255, 2, 9, 17, 35},
		{12, 4095, 0, 18, 67, 276},
		{16, 65535, 0, 18, 67, 276},
		{16, 65535, 2, 24, 77, 290},
		{7, 127, 0, 2, 3, 10},
		{6, 63, 0, 2, 3, 5},
		{6, 63, 1, 3, 6, 12},
		{4, 15, 0, 2, 3, 4},
		{2, 3, 0, 2, 3, 3},
	} {
		p := jlsParams{near: tc.near}
		if err := jlsDefaults(&p, tc.prec); err != nil {
			t.Fatal(err)
		}
		if p.maxval != tc.maxval || p.t1 != tc.t1 || p.t2 != tc.t2 || p.t3 != tc.t3 || p.reset != 64 {
			t.Errorf("P=%d NEAR=%d: MAXVAL %d T %d/%d/%d RESET %d, want %d T %d/%d/%d RESET 64",
				tc.prec, tc.near, p.maxval, p.t1, p.t2, p.t3, p.reset, tc.maxval, tc.t1, tc.t2, tc.t3)
		}
	}
}

// jlsScanData splits a one-scan JPEG-LS stream into its header (SOI up to
// and including the SOS segment) and its entropy-coded data (up to the EOI).
func jlsScanData(t *testing.T, stream []byte) (header, ecs []byte) {
	t.Helper()
	sos := findMarker(t, stream, mSOS)
	end := sos + 2 + u16(stream[sos+2:])
	eoi := bytes.LastIndex(stream, []byte{0xFF, mEOI})
	if eoi < end {
		t.Fatal("no EOI after the scan")
	}
	return stream[:end], stream[end:eoi]
}

// TestJPEGLSRestartIntervals decodes streams with restart intervals. No
// encoder at hand writes them, but a restart interval is coded independently
// (contexts, RUNindex and the line above start afresh), so the entropy-coded
// data of each interval is dcmcjpls's coding of those lines as an image of
// their own. The test codes each strip of R lines with dcmcjpls, joins the
// strips' data with RSTn markers (and fill bytes) under one header with a DRI
// segment, and requires the source's values (lossless) and dcmdjpls's
// decoding of every strip (near-lossless).
func TestJPEGLSRestartIntervals(t *testing.T) {
	dir := t.TempDir()
	sources := jpegSources(t, dir)
	// Every fourth line pair is flat: each 4-line strip ends in a whole-line
	// run, which leaves RUNindex high for the next interval to reset.
	rng := rand.New(rand.NewPCG(4, 80))
	bands := make([]uint32, 24*40)
	for i := range bands {
		bands[i] = uint32(rng.IntN(4000))
		if i/40%4 >= 2 {
			bands[i] = 1234
		}
	}
	sources["bands"] = pixeltest.Write(t, dir, "bands.dcm", pixeltest.Spec{Rows: 24, Cols: 40, BitsStored: 12, Raw: bands})
	cases := []struct {
		src   string
		lines int
		args  []string
		fill  bool
		ts    string
	}{
		{"u16", 1, nil, false, dcm.JPEGLSLossless},
		{"bands", 4, nil, false, dcm.JPEGLSLossless},
		{"bands", 4, []string{"+en", "+md", "1"}, true, dcm.JPEGLSNearLossless},
		{"synth-ct", 3, nil, true, dcm.JPEGLSLossless},
		{"synth-ct", 7, nil, false, dcm.JPEGLSLossless}, // the last interval is shorter
		{"synth-mr", 2, []string{"+en"}, true, dcm.JPEGLSNearLossless},
		{"u12", 4, []string{"+en", "+md", "3"}, false, dcm.JPEGLSNearLossless},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s/%d-lines%s", tc.src, tc.lines, strings.Join(tc.args, "")), func(t *testing.T) {
			whole := decodeFileT(t, sources[tc.src])[0]
			rows, cols := whole.Rows, whole.Cols
			signed := whole.MinStored < 0
			bitsStored := 0
			for 1<<bitsStored-1 < int(whole.MaxStored) {
				bitsStored++
			}
			if signed {
				bitsStored++
			}
			var (
				header, joined []byte
				peer           []int32
			)
			for i, y0 := 0, 0; y0 < rows; i, y0 = i+1, y0+tc.lines {
				y1 := min(y0+tc.lines, rows)
				raw := make([]uint32, 0, (y1-y0)*cols)
				for _, v := range whole.Stored[y0*cols : y1*cols] {
					raw = append(raw, uint32(v)&(1<<bitsStored-1))
				}
				strip := pixeltest.Write(t, dir, "strip.dcm", pixeltest.Spec{Rows: y1 - y0, Cols: cols, BitsStored: bitsStored, Signed: signed, Raw: raw})
				comp := filepath.Join(dir, "strip-jls.dcm")
				runTool(t, "dcmcjpls", append(append([]string{}, tc.args...), strip, comp)...)
				plain := filepath.Join(dir, "strip-plain.dcm")
				runTool(t, "dcmdjpls", comp, plain)
				peer = append(peer, decodeFileT(t, plain)[0].Stored...)
				h, ecs := jlsScanData(t, jpegFragments(t, comp)[0])
				// Only the frame height may differ between the strips' headers.
				sof := findMarker(t, h, mSOF55)
				h = append([]byte(nil), h...)
				h[sof+5], h[sof+6] = byte(rows>>8), byte(rows)
				if i == 0 {
					header = h
				} else {
					if !bytes.Equal(h, header) {
						t.Fatalf("strip %d header % x differs from % x", i, h, header)
					}
					if tc.fill {
						joined = append(joined, 0xFF, 0xFF)
					}
					joined = append(joined, 0xFF, byte(mRST0+(i-1)%8))
				}
				joined = append(joined, ecs...)
			}
			sos := findMarker(t, header, mSOS)
			stream := append(append([]byte(nil), header[:sos]...), 0xFF, mDRI, 0, 4, 0, byte(tc.lines))
			stream = append(append(append(stream, header[sos:]...), joined...), 0xFF, mEOI)
			if bytes.Count(stream, []byte{0xFF, mRST0 + 7}) == 0 && rows/tc.lines > 8 {
				t.Fatal("RST7 never written")
			}
			got := decodeFileT(t, pixeltest.Write(t, dir, "restart.dcm", pixeltest.Spec{TS: tc.ts, Rows: rows, Cols: cols, BitsStored: bitsStored, Signed: signed, Fragments: [][]byte{stream}}))
			sameStored(t, "vs dcmdjpls per strip", []*Slice{{Rows: rows, Cols: cols, Stored: peer}}, got)
			if tc.ts == dcm.JPEGLSLossless {
				sameStored(t, "vs source", []*Slice{whole}, got)
			}
			// The markers are checked: a wrong RSTn is bad pixel data.
			if rows > tc.lines {
				i := bytes.Index(stream[len(header)+6:], []byte{0xFF, mRST0}) + len(header) + 6
				broken := append([]byte(nil), stream...)
				broken[i+1] = mRST0 + 5
				if _, _, err := decodeJPEGLSFrame(broken, rows, cols); !errors.Is(err, ErrBadPixelData) || !strings.Contains(err.Error(), "RST0") {
					t.Fatalf("wrong RST: %v", err)
				}
			}
		})
	}
}

// jlsSample returns one dcmcjpls stream of a 23x31 16-bit image (lossless or
// with NEAR 2).
func jlsSample(t testing.TB, near bool) []byte {
	t.Helper()
	dir := t.TempDir()
	raw := pixeltest.Ramp(23*31, func(i int) uint32 { return uint32(i*i) % 60000 })
	src := pixeltest.Write(t, dir, "src.dcm", pixeltest.Spec{Rows: 23, Cols: 31, Raw: raw})
	comp := filepath.Join(dir, "comp.dcm")
	args := []string{src, comp}
	if near {
		args = append([]string{"+en"}, args...)
	}
	runTool(t, "dcmcjpls", args...)
	return jpegFragments(t, comp)[0]
}

func TestJPEGLSErrors(t *testing.T) {
	good := jlsSample(t, false)
	if _, _, err := decodeJPEGLSFrame(good, 23, 31); err != nil {
		t.Fatalf("good stream: %v", err)
	}
	mut := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	sos := findMarker(t, good, mSOS)
	sof := findMarker(t, good, mSOF55)
	lse := []byte{0xFF, mLSE, 0, 13, 1, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0}
	withLSE := func(body []byte) []byte {
		return append(append(append([]byte(nil), good[:sos]...), body...), good[sos:]...)
	}
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
		{"size differs from header", good, 20, 31, ErrBadPixelData, "DICOM header says"},
		{"garbage entropy data", mut(func(b []byte) []byte {
			for i := sos + 10; i < len(b)-2; i++ {
				b[i] = 0
			}
			return b
		}), 23, 31, ErrBadPixelData, "JPEG-LS"},
		{"colour", mut(func(b []byte) []byte {
			hdr := []byte{0xFF, mSOF55, 0, 17, b[sof+4], b[sof+5], b[sof+6], b[sof+7], b[sof+8], 3, 1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0}
			return append(append(append([]byte(nil), b[:sof]...), hdr...), b[sof+13:]...)
		}), 23, 31, ErrUnsupported, "3 components"},
		{"line interleaved", mut(func(b []byte) []byte { b[sos+8] = 1; return b }), 23, 31, ErrUnsupported, "interleave"},
		{"mapping table", mut(func(b []byte) []byte { b[sos+6] = 1; return b }), 23, 31, ErrUnsupported, "mapping table"},
		{"mapping table LSE", withLSE([]byte{0xFF, mLSE, 0, 6, 2, 1, 1, 0}), 23, 31, ErrUnsupported, "LSE"},
		{"baseline frame", mut(func(b []byte) []byte { b[sof+1] = 0xC0; return b }), 23, 31, ErrUnsupported, "SOF0"},
		{"precision 17", mut(func(b []byte) []byte { b[sof+4] = 17; return b }), 23, 31, ErrBadPixelData, "precision"},
		{"MAXVAL above precision", mut(func(b []byte) []byte {
			b = withLSE(lse)
			b[sof+4] = 12 // 12-bit samples, MAXVAL 65535
			return b
		}), 23, 31, ErrBadPixelData, "MAXVAL"},
		{"thresholds out of order", withLSE([]byte{0xFF, mLSE, 0, 13, 1, 0, 0, 0, 30, 0, 20, 0, 40, 0, 0}), 23, 31, ErrBadPixelData, "thresholds"},
		{"restart marker missing", withLSE([]byte{0xFF, mDRI, 0, 4, 0, 1}), 23, 31, ErrBadPixelData, "RST0 missing"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := decodeJPEGLSFrame(tc.data, tc.rows, tc.cols)
			if !errors.Is(err, tc.want) || !strings.Contains(fmt.Sprint(err), tc.msg) {
				t.Fatalf("err = %v, want %v containing %q", err, tc.want, tc.msg)
			}
		})
	}
	t.Run("NEAR above MAXVAL/2", func(t *testing.T) {
		b := withLSE([]byte{0xFF, mLSE, 0, 13, 1, 0, 100, 0, 0, 0, 0, 0, 0, 0, 0})
		b[bytes.LastIndex(b, []byte{0xFF, mSOS})+7] = 60
		if _, _, err := decodeJPEGLSFrame(b, 23, 31); !errors.Is(err, ErrBadPixelData) || !strings.Contains(err.Error(), "NEAR") {
			t.Fatalf("err = %v", err)
		}
	})
	// Every prefix of a valid stream is an error, never a panic or a
	// short image.
	end := len(good) - 2 // the EOI, and any fill bytes before it
	for good[end-1] == 0xFF {
		end--
	}
	for n := 0; n < end; n++ {
		if _, _, err := decodeJPEGLSFrame(good[:n], 23, 31); !errors.Is(err, ErrBadPixelData) {
			t.Fatalf("prefix of %d bytes: %v", n, err)
		}
	}

	// Through Decode: the transfer syntax is named and the error classes kept.
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		spec pixeltest.Spec
		want error
	}{
		{"wrong rows", pixeltest.Spec{TS: dcm.JPEGLSLossless, Rows: 22, Cols: 31, Fragments: [][]byte{good}}, ErrBadPixelData},
		{"truncated", pixeltest.Spec{TS: dcm.JPEGLSLossless, Rows: 23, Cols: 31, Fragments: [][]byte{good[:len(good)-40]}}, ErrBadPixelData},
		{"garbage", pixeltest.Spec{TS: dcm.JPEGLSNearLossless, Rows: 23, Cols: 31, Fragments: [][]byte{bytes.Repeat([]byte{0xFF, 0xD8, 0x12}, 40)}}, ErrBadPixelData},
		{"two frames, one fragment", pixeltest.Spec{TS: dcm.JPEGLSLossless, Rows: 23, Cols: 31, Frames: 2, Fragments: [][]byte{good}}, ErrBadPixelData},
		{"16-bit samples in 8 bits", pixeltest.Spec{TS: dcm.JPEGLSLossless, Rows: 23, Cols: 31, BitsAlloc: 8, Fragments: [][]byte{good}}, ErrBadPixelData},
		{"colour", pixeltest.Spec{TS: dcm.JPEGLSLossless, Rows: 23, Cols: 31, Fragments: [][]byte{cases[6].data}}, ErrUnsupported},
		{"interleaved", pixeltest.Spec{TS: dcm.JPEGLSNearLossless, Rows: 23, Cols: 31, Fragments: [][]byte{cases[7].data}}, ErrUnsupported},
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

// FuzzDecodeJPEGLS feeds arbitrary streams and header sizes: it must never
// panic, only return samples for the size asked within the precision, and
// classify every failure as bad pixel data or unsupported. The seed corpus
// holds dcmcjpls streams (lossless and near-lossless).
func FuzzDecodeJPEGLS(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, rows, cols uint16) {
		if int(rows)*int(cols) > 1<<20 {
			// A whole-line run is one bit, so a few KB can rightly
			// code gigabytes of a huge image: not what this target
			// is for, and more than a fuzzing worker may allocate.
			return
		}
		out, p, err := decodeJPEGLSFrame(data, int(rows), int(cols))
		if err != nil {
			if !errors.Is(err, ErrBadPixelData) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		if len(out) != int(rows)*int(cols) || p < 2 || p > 16 {
			t.Fatalf("%d samples, precision %d for %dx%d", len(out), p, cols, rows)
		}
		for i, v := range out {
			if int(v) >= 1<<p {
				t.Fatalf("sample %d = %d, above %d bits", i, v, p)
			}
		}
	})
}

// BenchmarkDecodeJPEGLS decodes a 512x512 16-bit CT slice compressed by
// dcmcjpls (lossless) through Decode, against dcmdjpls in the same run
// (benchCompressedDecode).
func BenchmarkDecodeJPEGLS(b *testing.B) {
	benchCompressedDecode(b, "dcmcjpls", nil, "dcmdjpls")
}
