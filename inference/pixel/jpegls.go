package pixel

import (
	"errors"
	"fmt"
	"math/bits"
)

// JPEG-LS (ITU-T T.87 | ISO/IEC 14495-1) for single-component images, as
// DICOM encapsulates it for transfer syntaxes 1.2.840.10008.1.2.4.80
// (lossless) and .81 (near-lossless) (PS3.5 A.4.3, 8.2.3). Written from the
// standard: no maintained Go package decodes JPEG-LS.

// JPEG-LS markers (T.87 Annex C) besides those jpeglossless.go names.
const (
	mSOF55 = 0xF7 // JPEG-LS frame
	mLSE   = 0xF8 // JPEG-LS preset parameters
)

// jlsJ is the run-length order table J of T.87 A.7.1: a run segment coded
// by one '1' bit at run index i is 1<<jlsJ[i] samples long.
var jlsJ = [32]int{0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 9, 10, 11, 12, 13, 14, 15}

// jlsMaxMErrval bounds a decoded mapped error: a conforming stream's is at
// most RANGE+1 <= 2^16+1; anything larger is corrupt data, and refusing it
// keeps the context counters (and so k) from growing without bound.
const jlsMaxMErrval = 1<<16 + 2

// jlsParams are a scan's coding parameters (T.87 C.2.4.1.1, A.2).
type jlsParams struct {
	maxval, t1, t2, t3, reset, near int
	// rng is RANGE, qbpp and limit as in A.2.
	rng, qbpp, limit int
}

// jlsBits reads the JPEG-LS entropy-coded data: after an X'FF' byte the
// encoder inserted a 0 bit, so the next byte holds 7 data bits; X'FF'
// followed by a byte with its high bit set is a marker and ends the data
// (T.87 Annex A). Bits are right-aligned in acc.
type jlsBits struct {
	data   []byte
	pos    int
	acc    uint64
	n      uint
	prevFF bool
	end    bool
}

func (r *jlsBits) fill() {
	for r.n <= 56 && !r.end {
		if r.pos >= len(r.data) {
			r.end = true
			return
		}
		b := r.data[r.pos]
		if r.prevFF {
			if b&0x80 != 0 {
				// The X'FF' already read was a fill byte or the
				// start of a marker: this byte is its code.
				r.end = true
				return
			}
			r.acc = r.acc<<7 | uint64(b)
			r.n += 7
			r.prevFF = false
			r.pos++
			continue
		}
		if b == 0xFF && r.pos+1 < len(r.data) && r.data[r.pos+1]&0x80 != 0 {
			// A marker: leave pos on it.
			r.end = true
			return
		}
		r.acc = r.acc<<8 | uint64(b)
		r.n += 8
		r.prevFF = b == 0xFF
		r.pos++
	}
}

// errJLSTruncated reports entropy-coded data that ends before the image does.
var errJLSTruncated = errors.New("entropy-coded data ends before the last sample")

// read returns the next n bits (n <= 32).
func (r *jlsBits) read(n uint) (int, error) {
	if n == 0 {
		return 0, nil
	}
	if r.n < n {
		r.fill()
		if r.n < n {
			return 0, errJLSTruncated
		}
	}
	r.n -= n
	return int(r.acc>>r.n) & (1<<n - 1), nil
}

// bit returns the next bit.
func (r *jlsBits) bit() (int, error) {
	if r.n == 0 {
		r.fill()
		if r.n == 0 {
			return 0, errJLSTruncated
		}
	}
	r.n--
	return int(r.acc>>r.n) & 1, nil
}

// zeros counts and consumes 0 bits up to and including the next 1 bit,
// failing past max zeros.
func (r *jlsBits) zeros(max int) (int, error) {
	q := 0
	for {
		if r.n == 0 {
			r.fill()
			if r.n == 0 {
				return 0, errJLSTruncated
			}
		}
		// The available bits, left-aligned in a 64-bit word.
		w := r.acc << (64 - r.n)
		if w != 0 {
			z := bits.LeadingZeros64(w)
			q += z
			if q > max {
				return 0, errors.New("Golomb code longer than LIMIT")
			}
			r.n -= uint(z) + 1
			return q, nil
		}
		q += int(r.n)
		r.n = 0
		if q > max {
			return 0, errors.New("Golomb code longer than LIMIT")
		}
	}
}

// golomb decodes one limited-length Golomb code with parameter k (A.5):
// fewer than glimit-qbpp-1 leading zeros are the quotient, exactly that many
// an escape followed by the value minus one in qbpp bits.
func (r *jlsBits) golomb(k, glimit, qbpp int) (int, error) {
	esc := glimit - qbpp - 1
	if r.n < 32 {
		r.fill()
	}
	// Fast path: the unary part and the k low bits are all in acc.
	if w := r.acc << (64 - r.n); w != 0 {
		z := bits.LeadingZeros64(w)
		if z < esc && uint(z+1+k) <= r.n {
			r.n -= uint(z + 1 + k)
			m := z<<k | int(r.acc>>r.n)&(1<<k-1)
			if m > jlsMaxMErrval {
				return 0, fmt.Errorf("mapped error %d out of range", m)
			}
			return m, nil
		}
	}
	q, err := r.zeros(esc)
	if err != nil {
		return 0, err
	}
	if q < esc {
		v, err := r.read(uint(k))
		if err != nil {
			return 0, err
		}
		m := q<<k | v
		if m > jlsMaxMErrval {
			return 0, fmt.Errorf("mapped error %d out of range", m)
		}
		return m, nil
	}
	v, err := r.read(uint(qbpp))
	return v + 1, err
}

// restart ends a restart interval: the bits left in the
// last byte are padding, fill bytes X'FF' may precede the marker, and the
// marker must be RSTn, n being the interval's number modulo 8.
func (r *jlsBits) restart(n int) error {
	p := r.pos
	if r.prevFF && p < len(r.data) && r.data[p]&0x80 == 0 {
		// The byte after a data X'FF' carries 7 padding bits.
		p++
	}
	r.acc, r.n, r.end, r.prevFF = 0, 0, false, false
	next, err := jpegRST(r.data, p, n)
	if err != nil {
		return err
	}
	r.pos = next
	return nil
}

// jlsDefaults fills the parameters an LSE segment left at 0 (or that had no
// LSE segment) with the defaults of T.87 C.2.4.1.1 and checks the given ones
// against their ranges (C.2.4.1.1).
func jlsDefaults(p *jlsParams, precision int) error {
	top := 1<<precision - 1
	if p.maxval == 0 {
		p.maxval = top
	}
	if p.maxval < 1 || p.maxval > top {
		return fmt.Errorf("MAXVAL %d outside 1-%d for %d-bit samples", p.maxval, top, precision)
	}
	if p.near > min(255, p.maxval/2) {
		return fmt.Errorf("NEAR %d above min(255, MAXVAL/2) for MAXVAL %d", p.near, p.maxval)
	}
	clamp := func(i, j int) int {
		if i > p.maxval || i < j {
			return j
		}
		return i
	}
	var d1, d2, d3 int
	if p.maxval >= 128 {
		f := (min(p.maxval, 4095) + 128) >> 8
		d1 = clamp(f*(3-2)+2+3*p.near, p.near+1)
		d2 = clamp(f*(7-3)+3+5*p.near, d1)
		d3 = clamp(f*(21-4)+4+7*p.near, d2)
	} else {
		f := 256 / (p.maxval + 1)
		d1 = clamp(max(2, 3/f+3*p.near), p.near+1)
		d2 = clamp(max(3, 7/f+5*p.near), d1)
		d3 = clamp(max(4, 21/f+7*p.near), d2)
	}
	if p.t1 == 0 {
		p.t1 = d1
	}
	if p.t2 == 0 {
		p.t2 = d2
	}
	if p.t3 == 0 {
		p.t3 = d3
	}
	if p.reset == 0 {
		p.reset = 64
	}
	if p.t1 < p.near+1 || p.t1 > p.maxval || p.t2 < p.t1 || p.t2 > p.maxval || p.t3 < p.t2 || p.t3 > p.maxval {
		return fmt.Errorf("thresholds T1=%d T2=%d T3=%d invalid for MAXVAL %d, NEAR %d", p.t1, p.t2, p.t3, p.maxval, p.near)
	}
	if p.reset < 3 || p.reset > max(255, p.maxval) {
		return fmt.Errorf("RESET %d outside 3-%d", p.reset, max(255, p.maxval))
	}
	p.rng = (p.maxval+2*p.near)/(2*p.near+1) + 1
	p.qbpp = bits.Len(uint(p.rng - 1))
	bpp := max(2, bits.Len(uint(p.maxval)))
	p.limit = 2 * (bpp + max(8, bpp))
	return nil
}

// jpegLS is what sets a JPEG-LS header apart for walkJPEGHeader.
var jpegLS = jpegDialect{
	errs:     "JPEG-LS",
	sof:      mSOF55,
	otherSOF: "not JPEG-LS",
	// T.87 C.2.5: a 16, 24 or 32-bit interval, in lines for a
	// one-component scan.
	driBytes: 4,
	refuse: func(f jpegFrame) string {
		if f.sampling != 0x11 {
			return fmt.Sprintf("sampling factors %#02x", f.sampling)
		}
		return ""
	},
}

// decodeJPEGLSFrame decodes one JPEG-LS image (one component) whose frame
// header must say rows x cols: the size is checked before anything is
// allocated. It returns the reconstructed samples, row-major, and the sample
// precision P. Colour, interleaved, mapping-table and point-transform scans
// return an *UnsupportedError without its transfer syntax (the caller adds
// it); any malformed stream an error wrapping ErrBadPixelData.
func decodeJPEGLSFrame(data []byte, rows, cols int) (samples []uint16, precision int, err error) {
	e := jpegLS.errs
	var prm jlsParams
	h, err := walkJPEGHeader(data, rows, cols, &jpegLS, func(m byte, seg []byte) error {
		if m == mLSE {
			return prm.preset(seg, e)
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	seg := h.scan
	if ns := int(seg[0]); ns != 1 {
		return nil, 0, e.unsupported("scan of %d components (greyscale only)", ns)
	}
	if seg[1] != h.frame.compID {
		return nil, 0, e.bad("scan of component %d, frame has component %d", seg[1], h.frame.compID)
	}
	if seg[2] != 0 {
		return nil, 0, e.unsupported("mapping table %d", seg[2])
	}
	prm.near = int(seg[3])
	ilv, pt := seg[4], seg[5]&0x0F
	if ilv != 0 {
		return nil, 0, e.unsupported("interleave mode %d", ilv)
	}
	if pt != 0 || seg[5]>>4 != 0 {
		return nil, 0, e.unsupported("point transform %d", pt)
	}
	p := h.frame.precision
	if err := jlsDefaults(&prm, p); err != nil {
		return nil, 0, e.bad("%v", err)
	}
	out, err := decodeJLSScan(data[h.ecs:], cols, rows, h.restartInterval, &prm)
	if err != nil {
		return nil, 0, e.bad("%v", err)
	}
	return out, p, nil
}

// preset reads an LSE segment (T.87 C.2.4.1): only preset coding parameters
// (type 1) are supported; a 0 leaves a parameter to jlsDefaults.
func (p *jlsParams) preset(seg []byte, e jpegErrs) error {
	if len(seg) < 1 {
		return e.bad("empty LSE segment")
	}
	if seg[0] != 1 {
		// 2 and 3 are mapping tables, 4 oversize dimensions.
		return e.unsupported("LSE preset parameters of type %d", seg[0])
	}
	if len(seg) != 11 {
		return e.bad("LSE segment of %d bytes", len(seg))
	}
	u := func(i int) int { return int(seg[i])<<8 | int(seg[i+1]) }
	p.maxval, p.t1, p.t2, p.t3, p.reset = u(1), u(3), u(5), u(7), u(9)
	return nil
}

// jlsContext holds one context's variables (A.2): the accumulated error
// magnitude A, bias B, correction C and count N.
type jlsContext struct{ a, b, c, n int }

// jlsContexts holds the 365 regular contexts and, at 365 and 366, the two
// run-interruption contexts (which use A and N, and Nn in nn).
type jlsContexts struct {
	reg [367]jlsContext
	nn  [2]int
}

func (s *jlsContexts) init(rng int) {
	a := max(2, (rng+32)>>6)
	for i := range s.reg {
		s.reg[i] = jlsContext{a: a, n: 1}
	}
	s.nn = [2]int{}
}

// golombK is the smallest k with N<<k >= A (A.5): la-ln or one more,
// la and ln being the bit lengths of A and N.
func golombK(a, n int) int {
	k := max(0, bits.Len(uint(a))-bits.Len(uint(n)))
	if n<<k < a {
		k++
	}
	return k
}

// jlsQuant maps a local gradient to its region -4..4 (A.3) through a
// table over -T3..T3 (every gradient outside is -4 or 4).
type jlsQuant struct {
	t3  int
	tab []int8
}

func newJLSQuant(p *jlsParams) jlsQuant {
	q := jlsQuant{t3: p.t3, tab: make([]int8, 2*p.t3+1)}
	for d := -p.t3; d <= p.t3; d++ {
		var v int8
		switch {
		case d <= -p.t3:
			v = -4
		case d <= -p.t2:
			v = -3
		case d <= -p.t1:
			v = -2
		case d < -p.near:
			v = -1
		case d <= p.near:
			v = 0
		case d < p.t1:
			v = 1
		case d < p.t2:
			v = 2
		case d < p.t3:
			v = 3
		default:
			v = 4
		}
		q.tab[d+p.t3] = v
	}
	return q
}

func (q *jlsQuant) region(d int) int {
	switch {
	case d <= -q.t3:
		return -4
	case d >= q.t3:
		return 4
	}
	return int(q.tab[d+q.t3])
}

// reconstruct adds the dequantised error to the prediction, undoes the
// modulo reduction and clamps to 0..MAXVAL (Annex A).
func (p *jlsParams) reconstruct(px, errval int) int {
	step := 2*p.near + 1
	rx := px + errval*step
	if rx < -p.near {
		rx += p.rng * step
	} else if rx > p.maxval+p.near {
		rx -= p.rng * step
	}
	return min(max(rx, 0), p.maxval)
}

// decodeJLSScan decodes the entropy-coded data of a one-component scan
// (Annex A; ILV 0). Every restartLines lines (0: none) a restart marker
// follows and the next interval is coded independently: contexts, RUNindex
// and the line above start afresh, as at the top of the image. The output
// grows line by line: a run codes a whole line in one bit, so rows*cols is
// not bounded by the input size, but what is allocated is bounded by what
// the input actually codes.
func decodeJLSScan(ecs []byte, w, h, restartLines int, p *jlsParams) ([]uint16, error) {
	s := jlsScan{r: jlsBits{data: ecs}, p: p, quant: newJLSQuant(p), esc: p.limit - p.qbpp - 1}
	s.ctx.init(p.rng)
	// Every line takes at least one bit: pre-size for typical ratios only.
	out := make([]uint16, 0, min(w*h, 64*len(ecs)+w))
	// Lines with a border sample on each side: index 0 is the sample left
	// of the first (Ra of the first sample; Rc of the next line's first),
	// w+1 the one right of the last (Rd of the last sample).
	prev := make([]int, w+2)
	cur := make([]int, w+2)
	interval := 0
	for yy := 0; yy < h; yy++ {
		if restartLines > 0 && yy > 0 && yy%restartLines == 0 {
			if err := s.restart(interval); err != nil {
				return nil, fmt.Errorf("line %d: %v", yy, err)
			}
			interval++
			clear(prev)
		}
		if err := s.line(prev, cur); err != nil {
			return nil, fmt.Errorf("line %d: %v", yy, err)
		}
		for _, v := range cur[1 : w+1] {
			out = append(out, uint16(v))
		}
		prev, cur = cur, prev
	}
	return out, nil
}

// jlsScan is one scan's decoding state: the bits, the parameters, and what
// the coding adapts as it goes (the contexts and RUNindex).
type jlsScan struct {
	r        jlsBits
	p        *jlsParams
	ctx      jlsContexts
	quant    jlsQuant
	runIndex int
	// esc is the number of leading zeros that escapes a regular-mode code
	// (A.5.3): LIMIT - qbpp - 1.
	esc int
}

// restart consumes RSTn, n being the restart interval's number, and starts
// the contexts and RUNindex afresh (T.87 D.2.2).
func (s *jlsScan) restart(n int) error {
	if err := s.r.restart(n); err != nil {
		return err
	}
	s.ctx.init(s.p.rng)
	s.runIndex = 0
	return nil
}

// line decodes one line into cur[1:w+1] from the line above, prev; both are
// w+2 long with their border samples, prev's set and cur's set here (A.2.1).
func (s *jlsScan) line(prev, cur []int) error {
	w := len(cur) - 2
	prev[w+1] = prev[w]
	cur[0] = prev[1]
	near := s.p.near
	for x := 1; x <= w; {
		ra, rb, rc, rd := cur[x-1], prev[x], prev[x-1], prev[x+1]
		d1, d2, d3 := rd-rb, rb-rc, rc-ra
		if jlsAbs(d1) <= near && jlsAbs(d2) <= near && jlsAbs(d3) <= near {
			n, err := s.run(prev, cur, x)
			if err != nil {
				return err
			}
			x += n
			continue
		}
		v, err := s.regular(ra, rb, rc, d1, d2, d3)
		if err != nil {
			return err
		}
		cur[x] = v
		x++
	}
	return nil
}

// run decodes run mode from sample x (A.7): a run of Ra, and, when it stops
// before the end of the line, the sample that interrupts it. It returns how
// many samples of cur it filled.
func (s *jlsScan) run(prev, cur []int, x int) (int, error) {
	ra := cur[x-1]
	n, interrupted, err := jlsRun(&s.r, len(cur)-2-x+1, &s.runIndex)
	if err != nil {
		return 0, err
	}
	for i := 0; i < n; i++ {
		cur[x+i] = ra
	}
	if !interrupted {
		return n, nil
	}
	x += n
	v, err := jlsInterruption(&s.r, s.p, &s.ctx, ra, prev[x], s.runIndex)
	if err != nil {
		return 0, err
	}
	cur[x] = v
	if s.runIndex > 0 {
		s.runIndex--
	}
	return n + 1, nil
}

// regular decodes one sample in regular mode, from its neighbours Ra, Rb, Rc
// and local gradients D1-D3: context (A.3), prediction (A.4), prediction
// error (A.5), context update (A.6).
func (s *jlsScan) regular(ra, rb, rc, d1, d2, d3 int) (int, error) {
	p := s.p
	q1, q2, q3 := s.quant.region(d1), s.quant.region(d2), s.quant.region(d3)
	sign := 1
	if q1 < 0 || q1 == 0 && (q2 < 0 || q2 == 0 && q3 < 0) {
		q1, q2, q3, sign = -q1, -q2, -q3, -1
	}
	cx := &s.ctx.reg[(q1*9+q2)*9+q3]
	px := min(max(jlsPredict(ra, rb, rc)+sign*cx.c, 0), p.maxval)
	k := golombK(cx.a, cx.n)
	// The common short code is read here, without a call; the rest (long
	// codes, escapes, the end of the data, corrupt values) by golomb,
	// which says which.
	r := &s.r
	if r.n < 32 {
		r.fill()
	}
	m, short := 0, false
	if w := r.acc << (64 - r.n); w != 0 {
		if z := bits.LeadingZeros64(w); z < s.esc && uint(z+1+k) <= r.n {
			r.n -= uint(z + 1 + k)
			m, short = z<<k|int(r.acc>>r.n)&(1<<k-1), true
		}
	}
	if !short || m > jlsMaxMErrval {
		if short {
			return 0, fmt.Errorf("mapped error %d out of range", m)
		}
		var err error
		if m, err = r.golomb(k, p.limit, p.qbpp); err != nil {
			return 0, err
		}
	}
	errval := m >> 1
	if m&1 != 0 {
		errval = -(m + 1) >> 1
	}
	if p.near == 0 && k == 0 && 2*cx.b <= -cx.n {
		errval = -errval - 1
	}
	cx.update(errval, p)
	return p.reconstruct(px, sign*errval), nil
}

// jlsPredict is the median edge detector (A.4.1): the smaller of Ra and Rb
// above an edge, the larger below one, else the plane through Ra, Rb, Rc.
func jlsPredict(ra, rb, rc int) int {
	switch {
	case rc >= max(ra, rb):
		return min(ra, rb)
	case rc <= min(ra, rb):
		return max(ra, rb)
	}
	return ra + rb - rc
}

// update adapts a regular context to the prediction error errval (A.6): A,
// B and N, halved every RESET samples, and the bias correction C, which B
// keeps within (-N, 0].
func (cx *jlsContext) update(errval int, p *jlsParams) {
	cx.b += errval * (2*p.near + 1)
	cx.a += jlsAbs(errval)
	if cx.n == p.reset {
		cx.a >>= 1
		cx.b >>= 1
		cx.n >>= 1
	}
	cx.n++
	if cx.b <= -cx.n {
		cx.b += cx.n
		if cx.c > -128 {
			cx.c--
		}
		if cx.b <= -cx.n {
			cx.b = -cx.n + 1
		}
	} else if cx.b > 0 {
		cx.b -= cx.n
		if cx.c < 127 {
			cx.c++
		}
		if cx.b > 0 {
			cx.b = 0
		}
	}
}

// jlsRun decodes a run of at most left samples (A.7.1): each 1 bit is a
// full segment of 1<<J[RUNindex] samples (or the rest of the line), a 0 bit
// is followed by the length of the last, shorter, segment in J[RUNindex]
// bits, and then by a run-interruption sample.
func jlsRun(r *jlsBits, left int, runIndex *int) (n int, interrupted bool, err error) {
	for {
		b, err := r.bit()
		if err != nil {
			return 0, false, err
		}
		if b == 0 {
			break
		}
		rg := 1 << jlsJ[*runIndex]
		c := min(rg, left-n)
		n += c
		if c == rg && *runIndex < 31 {
			*runIndex++
		}
		if n == left {
			return n, false, nil
		}
	}
	v, err := r.read(uint(jlsJ[*runIndex]))
	if err != nil {
		return 0, false, err
	}
	n += v
	if n >= left {
		return 0, false, fmt.Errorf("run of %d samples where %d remain", n+1, left)
	}
	return n, true, nil
}

// jlsInterruption decodes the sample that ends a run before the end of the
// line (A.7.2), with one of the two run-interruption contexts.
func jlsInterruption(r *jlsBits, p *jlsParams, ctx *jlsContexts, ra, rb, runIndex int) (int, error) {
	ri := 0
	if jlsAbs(ra-rb) <= p.near {
		ri = 1
	}
	px := rb
	if ri == 1 {
		px = ra
	}
	cx := &ctx.reg[365+ri]
	temp := cx.a
	if ri == 1 {
		temp += cx.n >> 1
	}
	k := golombK(temp, cx.n)
	em, err := r.golomb(k, p.limit-jlsJ[runIndex]-1, p.qbpp)
	if err != nil {
		return 0, err
	}
	t := em + ri
	mapped := t & 1
	errval := (t + mapped) >> 1
	cond := k == 0 && 2*ctx.nn[ri] < cx.n
	if (mapped == 1) != cond {
		errval = -errval
	}
	if errval < 0 {
		ctx.nn[ri]++
	}
	cx.a += (em + 1 - ri) >> 1
	if cx.n == p.reset {
		cx.a >>= 1
		cx.n >>= 1
		ctx.nn[ri] >>= 1
	}
	cx.n++
	if ri == 0 && ra > rb {
		errval = -errval
	}
	return p.reconstruct(px, errval), nil
}

func jlsAbs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}
