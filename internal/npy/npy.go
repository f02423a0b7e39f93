// Package npy reads and writes NumPy .npy arrays (format 1.0-3.0, C order):
// the embedding banks and label masks of fit and eval, the anomaly maps of
// offline scoring and the ground-truth masks of internal/synth. It is the one
// .npy codec in the module; it knows nothing of DICOM or of any stage, so
// every stage and internal/synth can import it.
package npy

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"anomalynode/internal/atomicfile"
)

// NumPy dtype descriptors handled by the .npy reader and writer.
const (
	// DtypeFloat32 is little-endian float32 ("<f4").
	DtypeFloat32 = "<f4"
	// DtypeFloat16 is little-endian IEEE half precision ("<f2"), read only.
	DtypeFloat16 = "<f2"
	// DtypeUint8 is unsigned bytes ("|u1"), e.g. masks.
	DtypeUint8 = "|u1"
)

// ErrFormat is wrapped by every .npy format error.
var ErrFormat = errors.New("bad .npy data")

// maxHeader bounds the header a reader accepts (NumPy itself caps it at 10 KB).
const maxHeader = 1 << 16

// Array is an n-dimensional NumPy array in C (row-major) order. Floating-point
// data (float32, float16, float64) is held in F32; uint8 and bool data in U8.
type Array struct {
	// Shape is the array's shape, e.g. [N, D]; an empty shape is a scalar.
	Shape []int
	// Dtype is the descriptor read from the file, or the one to write
	// (DtypeFloat32 or DtypeUint8; empty picks from which slice is set).
	Dtype string
	// F32 holds the values of a floating-point array.
	F32 []float32
	// U8 holds the values of a uint8 or bool array.
	U8 []uint8
}

// Len is the number of elements the shape implies.
func (a *Array) Len() int {
	n := 1
	for _, s := range a.Shape {
		n *= s
	}
	return n
}

// Read reads a .npy file (format versions 1-3; float32, float16, float64,
// uint8, bool; either byte order; C order only).
func Read(path string) (*Array, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("npy: %w", err)
	}
	defer f.Close()
	a, err := Decode(bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("npy: %s: %w", filepath.Base(path), err)
	}
	return a, nil
}

// Decode reads one .npy array from r.
func Decode(r io.Reader) (*Array, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrFormat, fmt.Sprintf(format, args...))
	}
	var pre [8]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil {
		return nil, bad("magic: %v", err)
	}
	if string(pre[:6]) != "\x93NUMPY" {
		return nil, bad("no \\x93NUMPY magic")
	}
	var hlen int
	switch pre[6] {
	case 1:
		var b [2]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, bad("header length: %v", err)
		}
		hlen = int(binary.LittleEndian.Uint16(b[:]))
	case 2, 3:
		var b [4]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, bad("header length: %v", err)
		}
		hlen = int(binary.LittleEndian.Uint32(b[:]))
	default:
		return nil, bad("format version %d.%d not supported", pre[6], pre[7])
	}
	if hlen > maxHeader {
		return nil, bad("header of %d bytes is too long", hlen)
	}
	hb := make([]byte, hlen)
	if _, err := io.ReadFull(r, hb); err != nil {
		return nil, bad("header: %v", err)
	}
	descr, fortran, shape, err := parseHeader(string(hb))
	if err != nil {
		return nil, bad("header %q: %v", strings.TrimSpace(string(hb)), err)
	}
	if fortran {
		return nil, bad("fortran_order arrays are not supported (save with np.ascontiguousarray)")
	}
	a := &Array{Shape: shape, Dtype: descr}
	n := 1
	for _, s := range shape {
		if s < 0 || (s > 0 && n > math.MaxInt32/s) {
			return nil, bad("shape %v too large", shape)
		}
		n *= s
	}
	var order binary.ByteOrder = binary.LittleEndian
	if descr[0] == '>' {
		order = binary.BigEndian
	}
	kind := descr[1:]
	size := map[string]int{"f4": 4, "f2": 2, "f8": 8, "u1": 1, "b1": 1}[kind]
	if size == 0 || (size > 1 && descr[0] == '|') || (size == 1 && descr[0] != '|') {
		return nil, bad("dtype %q not supported (want <f4, <f2, <f8, |u1 or |b1)", descr)
	}
	// Read in bounded chunks so a lying shape on a short stream fails on EOF
	// instead of allocating the whole claimed size up front.
	raw, err := readAtMost(r, int64(n)*int64(size))
	if err != nil {
		return nil, bad("data: %v", err)
	}
	switch kind {
	case "u1", "b1":
		a.U8 = raw
	case "f4":
		a.F32 = make([]float32, n)
		for i := range a.F32 {
			a.F32[i] = math.Float32frombits(order.Uint32(raw[4*i:]))
		}
	case "f2":
		a.F32 = make([]float32, n)
		for i := range a.F32 {
			a.F32[i] = Float16ToFloat32(order.Uint16(raw[2*i:]))
		}
	case "f8":
		a.F32 = make([]float32, n)
		for i := range a.F32 {
			a.F32[i] = float32(math.Float64frombits(order.Uint64(raw[8*i:])))
		}
	}
	return a, nil
}

func readAtMost(r io.Reader, n int64) ([]byte, error) {
	var buf bytes.Buffer
	got, err := io.CopyN(&buf, r, n)
	if err != nil {
		return nil, fmt.Errorf("got %d of %d bytes: %w", got, n, err)
	}
	return buf.Bytes(), nil
}

// parseHeader parses the Python dict literal of a .npy header, e.g.
// {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }.
func parseHeader(h string) (descr string, fortran bool, shape []int, err error) {
	h = strings.TrimSpace(h)
	if !strings.HasPrefix(h, "{") || !strings.HasSuffix(h, "}") {
		return "", false, nil, errors.New("not a dict")
	}
	body := h[1 : len(h)-1]
	seen := map[string]bool{}
	for {
		body = strings.TrimLeft(body, " ,\t\n")
		if body == "" {
			break
		}
		key, rest, ok := cutQuoted(body)
		if !ok {
			return "", false, nil, fmt.Errorf("bad key near %q", body)
		}
		rest = strings.TrimLeft(rest, " ")
		if !strings.HasPrefix(rest, ":") {
			return "", false, nil, fmt.Errorf("no ':' after %q", key)
		}
		rest = strings.TrimLeft(rest[1:], " ")
		seen[key] = true
		switch key {
		case "descr":
			var v string
			v, rest, ok = cutQuoted(rest)
			if !ok || len(v) < 3 {
				return "", false, nil, errors.New("bad descr")
			}
			descr = v
		case "fortran_order":
			switch {
			case strings.HasPrefix(rest, "False"):
				rest = rest[5:]
			case strings.HasPrefix(rest, "True"):
				fortran, rest = true, rest[4:]
			default:
				return "", false, nil, errors.New("bad fortran_order")
			}
		case "shape":
			if !strings.HasPrefix(rest, "(") {
				return "", false, nil, errors.New("shape is not a tuple")
			}
			end := strings.IndexByte(rest, ')')
			if end < 0 {
				return "", false, nil, errors.New("unterminated shape")
			}
			shape = []int{}
			for _, f := range strings.Split(rest[1:end], ",") {
				f = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(f), "L"))
				if f == "" {
					continue
				}
				v, err := strconv.Atoi(f)
				if err != nil || v < 0 {
					return "", false, nil, fmt.Errorf("bad dimension %q", f)
				}
				shape = append(shape, v)
			}
			rest = rest[end+1:]
		default:
			return "", false, nil, fmt.Errorf("unknown key %q", key)
		}
		body = rest
	}
	if !seen["descr"] || !seen["fortran_order"] || !seen["shape"] {
		return "", false, nil, errors.New("needs descr, fortran_order and shape")
	}
	return descr, fortran, shape, nil
}

// cutQuoted reads a '...' or "..." string at the start of s.
func cutQuoted(s string) (val, rest string, ok bool) {
	if len(s) < 2 || (s[0] != '\'' && s[0] != '"') {
		return "", s, false
	}
	end := strings.IndexByte(s[1:], s[0])
	if end < 0 {
		return "", s, false
	}
	return s[1 : 1+end], s[2+end:], true
}

// Write writes a to path as a version 1.0 .npy file (float32 or uint8),
// via a temporary file and a rename.
func Write(path string, a *Array) error {
	var buf bytes.Buffer
	if err := Encode(&buf, a); err != nil {
		return err
	}
	if err := atomicfile.Write(path, buf.Bytes(), false); err != nil {
		return fmt.Errorf("npy: write: %w", err)
	}
	return nil
}

// Encode writes a as .npy (format 1.0, or 2.0 if the header needs it).
func Encode(w io.Writer, a *Array) error {
	dtype := a.Dtype
	if dtype == "" {
		dtype = DtypeFloat32
		if a.U8 != nil && a.F32 == nil {
			dtype = DtypeUint8
		}
	}
	n := a.Len()
	var data []byte
	switch dtype {
	case DtypeFloat32:
		if len(a.F32) != n {
			return fmt.Errorf("npy: write: %d float32 values for shape %v", len(a.F32), a.Shape)
		}
		data = float32Bytes(a.F32)
	case DtypeUint8:
		if len(a.U8) != n {
			return fmt.Errorf("npy: write: %d uint8 values for shape %v", len(a.U8), a.Shape)
		}
		data = a.U8
	default:
		return fmt.Errorf("npy: write: dtype %q not writable (use %s or %s)", dtype, DtypeFloat32, DtypeUint8)
	}
	dims := make([]string, len(a.Shape))
	for i, s := range a.Shape {
		dims[i] = strconv.Itoa(s)
	}
	shape := "(" + strings.Join(dims, ", ")
	if len(dims) == 1 {
		shape += ","
	}
	shape += ")"
	header := fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': %s, }", dtype, shape)
	// Pad with spaces and end with '\n' so magic + length + header is a multiple of
	// 64 bytes, as NumPy writes it.
	prefix := 10
	version := byte(1)
	if len(header)+1+prefix > 65535 {
		prefix, version = 12, 2
	}
	total := prefix + len(header) + 1
	pad := (64 - total%64) % 64
	header += strings.Repeat(" ", pad) + "\n"
	var out bytes.Buffer
	out.WriteString("\x93NUMPY")
	out.WriteByte(version)
	out.WriteByte(0)
	if version == 1 {
		binary.Write(&out, binary.LittleEndian, uint16(len(header)))
	} else {
		binary.Write(&out, binary.LittleEndian, uint32(len(header)))
	}
	out.WriteString(header)
	if _, err := w.Write(out.Bytes()); err != nil {
		return fmt.Errorf("npy: write: %w", err)
	}
	if _, err := w.Write(data); err != nil {
		return fmt.Errorf("npy: write: %w", err)
	}
	return nil
}

// littleEndian is whether this machine stores a float32 as .npy's '<f4' does.
var littleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

// float32Bytes returns v as little-endian bytes: v's own memory on a
// little-endian machine (a score map is a megabyte; no copy), else a copy.
func float32Bytes(v []float32) []byte {
	if len(v) == 0 {
		return nil
	}
	if littleEndian {
		return unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), 4*len(v))
	}
	data := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(f))
	}
	return data
}

// Float16ToFloat32 converts an IEEE 754 half-precision value to float32.
func Float16ToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	frac := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // Inf or NaN
		return math.Float32frombits(sign | 0x7f800000 | frac<<13)
	case exp == 0:
		if frac == 0 {
			return math.Float32frombits(sign)
		}
		// Subnormal: normalise it.
		e := uint32(127 - 15 + 1)
		for frac&0x400 == 0 {
			frac <<= 1
			e--
		}
		frac &= 0x3ff
		return math.Float32frombits(sign | e<<23 | frac<<13)
	default:
		return math.Float32frombits(sign | (exp+127-15)<<23 | frac<<13)
	}
}
