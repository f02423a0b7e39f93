package pixel

import (
	"errors"
	"fmt"
)

// Lossless JPEG (ITU-T T.81 | ISO/IEC 10918-1 Annex H, Process 14: Huffman
// coded, non-hierarchical) for single-component images, as DICOM encapsulates
// it for transfer syntaxes 1.2.840.10008.1.2.4.57 and .70 (PS3.5 A.4.1, 8.2.1).
// Written from the standard: no well-kept Go library decodes it for the 12-16
// bit samples CT needs.

// JPEG markers (T.81 Table B.1) the lossless decoder acts on.
const (
	mSOF3 = 0xC3 // lossless, Huffman coding, non-differential
	mDHT  = 0xC4
	mDAC  = 0xCC
	mRST0 = 0xD0
	mRST7 = 0xD7
	mSOI  = 0xD8
	mEOI  = 0xD9
	mSOS  = 0xDA
	mDNL  = 0xDC
	mDRI  = 0xDD
	mDHP  = 0xDE
	mTEM  = 0x01
)

// huffLUTBits is the number of bits the fast Huffman lookup resolves at once;
// longer codes take the MAXCODE walk of F.2.2.3.
const huffLUTBits = 11

// Fast lookup entries: the low 5 bits are the bits to consume; with lutDone
// set the rest (>> 8) is the difference itself (code and additional bits both
// fit the lookup), otherwise it is the category whose additional bits follow.
// 0 means a code longer than huffLUTBits.
const (
	lutLenMask = 0x1F
	lutDone    = 0x20
)

// ljHuffman is one decoding table built from a DHT segment (Annex C).
type ljHuffman struct {
	// lut maps the next huffLUTBits bits to an entry (see lutDone).
	lut [1 << huffLUTBits]int32
	// maxcode[l] is the largest code of length l, -1 when there is none.
	maxcode [17]int32
	// valptr[l] + code indexes vals for a code of length l.
	valptr [17]int32
	vals   []uint8
	ok     bool
}

// build derives the code tables from the BITS counts and HUFFVAL values
// (C.2 generates sizes and codes; F.2.2.3 MAXCODE/VALPTR). A table whose codes
// do not fit their lengths, or that holds a category above 16, is corrupt.
func (h *ljHuffman) build(counts []byte, vals []byte) error {
	*h = ljHuffman{vals: append([]uint8(nil), vals...)}
	for _, v := range vals {
		if v > 16 {
			return fmt.Errorf("Huffman value %d is not a difference category (0-16)", v)
		}
	}
	code, k := int32(0), int32(0)
	for l := 1; l <= 16; l++ {
		n := int32(counts[l-1])
		h.valptr[l] = k - code
		h.maxcode[l] = -1
		for i := int32(0); i < n; i++ {
			if code >= 1<<l {
				return fmt.Errorf("Huffman table overflows at code length %d", l)
			}
			if l <= huffLUTBits {
				h.fillLUT(code, l, int(vals[k]))
			}
			code++
			k++
		}
		if n > 0 {
			h.maxcode[l] = code - 1
		}
		code <<= 1
	}
	h.ok = true
	return nil
}

// fillLUT enters the code of length l for category cat: resolved to its
// difference for every value of the additional bits when they fit too.
func (h *ljHuffman) fillLUT(code int32, l, cat int) {
	extra := 0
	if cat > 0 && cat < 16 {
		extra = cat
	}
	if l+extra > huffLUTBits {
		lo := code << (huffLUTBits - l)
		for j := int32(0); j < 1<<(huffLUTBits-l); j++ {
			h.lut[lo+j] = int32(cat)<<8 | int32(l)
		}
		return
	}
	free := huffLUTBits - l - extra
	for v := int32(0); v < 1<<extra; v++ {
		d := extend(v, cat)
		lo := (code<<extra | v) << free
		for j := int32(0); j < 1<<free; j++ {
			h.lut[lo+j] = d<<8 | lutDone | int32(l+extra)
		}
	}
}

// extend turns category cat and its additional bits v into the difference
// (F.2.2.1 EXTEND, Table H.2: category 16 is 32768 with no additional bits).
func extend(v int32, cat int) int32 {
	switch cat {
	case 0:
		return 0
	case 16:
		return 32768
	}
	if v < 1<<(cat-1) {
		v -= 1<<cat - 1
	}
	return v
}

// ljBits reads the entropy-coded segment: X'FF00' is a data X'FF', fill bytes
// X'FF' before a marker are skipped, and a marker ends the data (F.1.2.3,
// B.1.1.2). Bits are right-aligned in acc.
type ljBits struct {
	data []byte
	pos  int
	acc  uint64
	n    uint
	// end is set once a marker or the end of the data stops the reading.
	end bool
}

func (r *ljBits) fill() {
	for r.n <= 56 && !r.end {
		if r.pos >= len(r.data) {
			r.end = true
			return
		}
		b := r.data[r.pos]
		if b == 0xFF {
			j := r.pos + 1
			for j < len(r.data) && r.data[j] == 0xFF {
				j++
			}
			if j >= len(r.data) || r.data[j] != 0x00 {
				// A marker (or a dangling X'FF'): leave pos on it.
				r.end = true
				return
			}
			r.pos = j + 1
		} else {
			r.pos++
		}
		r.acc = r.acc<<8 | uint64(b)
		r.n += 8
	}
}

// errLJTruncated reports entropy-coded data that ends before the image does.
var errLJTruncated = errors.New("entropy-coded data ends before the last sample")

// decodeDiff reads one Huffman-coded difference (F.2.2.1 with Table H.2:
// category 16 is 32768 with no additional bits).
func (r *ljBits) decodeDiff(h *ljHuffman) (int32, error) {
	if r.n < 32 {
		r.fill()
	}
	var peek uint32
	if r.n >= huffLUTBits {
		peek = uint32(r.acc>>(r.n-huffLUTBits)) & (1<<huffLUTBits - 1)
	} else {
		peek = uint32(r.acc<<(huffLUTBits-r.n)) & (1<<huffLUTBits - 1)
	}
	var s int32
	if e := h.lut[peek]; e != 0 {
		l := uint(e & lutLenMask)
		if l > r.n {
			return 0, errLJTruncated
		}
		r.n -= l
		if e&lutDone != 0 {
			return e >> 8, nil
		}
		s = e >> 8
	} else {
		found := false
		for l := uint(huffLUTBits + 1); l <= 16; l++ {
			if l > r.n {
				return 0, errLJTruncated
			}
			c := int32(r.acc>>(r.n-l)) & (1<<l - 1)
			if c <= h.maxcode[l] {
				i := h.valptr[l] + c
				if i < 0 || int(i) >= len(h.vals) {
					break
				}
				r.n -= l
				s = int32(h.vals[i])
				found = true
				break
			}
		}
		if !found {
			return 0, errors.New("invalid Huffman code in the entropy-coded data")
		}
	}
	if s == 0 || s == 16 {
		return extend(0, int(s)), nil
	}
	l := uint(s)
	if l > r.n {
		return 0, errLJTruncated
	}
	v := int32(r.acc>>(r.n-l)) & (1<<l - 1)
	r.n -= l
	return extend(v, int(s)), nil
}

// restart consumes the RSTn marker that must end a restart interval, n being
// the interval's number modulo 8 (E.2.4), after dropping the fill bits.
func (r *ljBits) restart(n int) error {
	r.acc, r.n, r.end = 0, 0, false
	next, err := jpegRST(r.data, r.pos, n)
	if err != nil {
		return err
	}
	r.pos = next
	return nil
}

// losslessJPEG is what sets Process 14's header apart for walkJPEGHeader.
var losslessJPEG = jpegDialect{errs: "lossless JPEG", sof: mSOF3, otherSOF: "only SOF3, Huffman lossless", driBytes: 2}

// decodeJPEGLosslessFrame decodes one lossless JPEG image (Process 14,
// one component) whose frame header must say rows x cols: the size is checked
// before anything is allocated. It returns the reconstructed samples, point
// transform applied, row-major, and the sample precision P. A colour or
// otherwise unsupported image returns an *UnsupportedError without its
// transfer syntax (the caller adds it); any malformed stream an error wrapping
// ErrBadPixelData.
func decodeJPEGLosslessFrame(data []byte, rows, cols int) (samples []uint16, precision int, err error) {
	e := losslessJPEG.errs
	var tables ljTables
	h, err := walkJPEGHeader(data, rows, cols, &losslessJPEG, func(m byte, seg []byte) error {
		switch m {
		case mDHP:
			return e.unsupported("hierarchical mode")
		case mDHT:
			return tables.define(seg, e)
		case mDNL:
			return e.bad("DNL marker before the scan")
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	p, x, y, seg, pos := h.frame.precision, cols, rows, h.scan, h.ecs
	if seg[0] != 1 || seg[1] != h.frame.compID {
		return nil, 0, e.bad("scan of %d components / component %d, frame has component %d", seg[0], seg[1], h.frame.compID)
	}
	td := seg[2] >> 4
	ss, se, ah, al := int(seg[3]), int(seg[4]), int(seg[5]>>4), int(seg[5]&0x0F)
	if td > 3 || !tables[td].ok {
		return nil, 0, e.bad("scan uses undefined Huffman table %d", td)
	}
	if ss < 1 || ss > 7 {
		return nil, 0, e.unsupported("predictor selection %d (1-7)", ss)
	}
	if se != 0 || ah != 0 || al >= p {
		return nil, 0, e.bad("scan Se=%d Ah=%d Pt=%d with precision %d", se, ah, al, p)
	}
	// Every sample takes at least one bit, so the image cannot be
	// larger than 8 samples per remaining byte: this bounds the
	// allocation by the input size, whatever the header claims.
	if n := x * y; n/8 > len(data)-pos {
		return nil, 0, e.bad("%dx%d samples cannot fit in %d bytes", x, y, len(data)-pos)
	}
	restartInt := h.restartInterval
	if restartInt > 0 && restartInt%x != 0 {
		// libjpeg, and so dcmtk and most DICOM encoders, only write
		// and read intervals of whole lines; nothing to test others on.
		return nil, 0, e.unsupported("restart interval %d is not a whole number of %d-sample lines", restartInt, x)
	}
	out := make([]uint16, x*y)
	if err := decodeLosslessScan(data[pos:], out, x, y, p, al, ss, restartInt/x, &tables[td]); err != nil {
		return nil, 0, e.bad("%v", err)
	}
	return out, p, nil
}

// ljTables are the four DC Huffman table destinations of T.81 B.2.4.2.
type ljTables [4]ljHuffman

// define reads a DHT segment (B.2.4.2): one or more tables, each a class and
// destination byte, 16 code-length counts and the values.
func (t *ljTables) define(seg []byte, e jpegErrs) error {
	for len(seg) > 0 {
		if len(seg) < 17 {
			return e.bad("Huffman table segment truncated")
		}
		tc, th := seg[0]>>4, seg[0]&0x0F
		if tc > 1 || th > 3 {
			return e.bad("Huffman table class %d, id %d", tc, th)
		}
		total := 0
		for _, c := range seg[1:17] {
			total += int(c)
		}
		if total > 256 || 17+total > len(seg) {
			return e.bad("Huffman table lists %d codes in a %d-byte segment", total, len(seg))
		}
		// Lossless scans use the DC-style tables; an AC table is
		// parsed and set aside (some encoders write both).
		if tc == 0 {
			if err := t[th].build(seg[1:17], seg[17:17+total]); err != nil {
				return e.bad("Huffman table %d: %v", th, err)
			}
		}
		seg = seg[17+total:]
	}
	return nil
}

// decodeLosslessScan reconstructs the samples of a one-component scan (H.2):
// each line starts from the sample above, the first line of the scan and of
// each restart interval from the sample to the left and its first sample from
// 2^(P-Pt-1) (H.1.2.1). Sums are taken modulo 2^16; Pt shifts the output.
func decodeLosslessScan(ecs []byte, out []uint16, w, h, p, pt, sel, restartRows int, tbl *ljHuffman) error {
	r := ljBits{data: ecs}
	initial := int32(1) << (p - pt - 1)
	interval := 0
	for yy := 0; yy < h; yy++ {
		first := yy == 0
		if restartRows > 0 && yy > 0 && yy%restartRows == 0 {
			if err := r.restart(interval); err != nil {
				return fmt.Errorf("line %d: %v", yy, err)
			}
			interval++
			first = true
		}
		row := out[yy*w : (yy+1)*w]
		d, err := r.decodeDiff(tbl)
		if err != nil {
			return fmt.Errorf("line %d: %v", yy, err)
		}
		if first {
			row[0] = uint16(initial + d)
			for xx := 1; xx < w; xx++ {
				if d, err = r.decodeDiff(tbl); err != nil {
					return fmt.Errorf("line %d: %v", yy, err)
				}
				row[xx] = uint16(int32(row[xx-1]) + d)
			}
			continue
		}
		above := out[(yy-1)*w : yy*w]
		row[0] = uint16(int32(above[0]) + d)
		for xx := 1; xx < w; xx++ {
			if d, err = r.decodeDiff(tbl); err != nil {
				return fmt.Errorf("line %d: %v", yy, err)
			}
			ra, rb, rc := int32(row[xx-1]), int32(above[xx]), int32(above[xx-1])
			var px int32
			switch sel {
			case 1:
				px = ra
			case 2:
				px = rb
			case 3:
				px = rc
			case 4:
				px = ra + rb - rc
			case 5:
				px = ra + (rb-rc)>>1
			case 6:
				px = rb + (ra-rc)>>1
			default:
				px = (ra + rb) >> 1
			}
			row[xx] = uint16(px + d)
		}
	}
	if pt > 0 {
		for i, v := range out {
			out[i] = v << pt
		}
	}
	return nil
}
