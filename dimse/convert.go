package dimse

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/suyashkumar/dicom/pkg/tag"

	"anomalynode/internal/dcm"
)

// canConvert reports whether ConvertDataSet handles from -> to.
func canConvert(from, to string) bool {
	ok := func(ts string) bool {
		return ts == dcm.ImplicitVRLittleEndian || ts == dcm.ExplicitVRLittleEndian || ts == dcm.DeflatedExplicitVRLittleEndian
	}
	return ok(from) && ok(to) && from != to
}

// ConvertDataSet re-encodes a bare data set between Implicit VR LE, Explicit VR
// LE and Deflated Explicit VR LE. Values are copied byte for byte; only element
// headers change. Sequences and items are rewritten with undefined lengths so
// that no length has to be recomputed. VRs for Implicit -> Explicit come from
// suyashkumar/dicom's data dictionary (UN when unknown).
func ConvertDataSet(data []byte, from, to string) ([]byte, error) {
	if !canConvert(from, to) {
		return nil, fmt.Errorf("dimse: cannot convert a data set from %s to %s", from, to)
	}
	if from == dcm.DeflatedExplicitVRLittleEndian {
		raw, err := io.ReadAll(flate.NewReader(bytes.NewReader(data)))
		if err != nil {
			return nil, fmt.Errorf("dimse: inflate data set: %w", err)
		}
		data, from = raw, dcm.ExplicitVRLittleEndian
	}
	if to == dcm.DeflatedExplicitVRLittleEndian {
		plain := data
		if from == dcm.ImplicitVRLittleEndian {
			var err error
			if plain, err = ConvertDataSet(data, from, dcm.ExplicitVRLittleEndian); err != nil {
				return nil, err
			}
		}
		var buf bytes.Buffer
		w, _ := flate.NewWriter(&buf, flate.DefaultCompression)
		_, _ = w.Write(plain)
		_ = w.Close()
		return buf.Bytes(), nil
	}
	if from == to {
		return data, nil
	}
	cv := converter{in: data, implicitIn: from == dcm.ImplicitVRLittleEndian}
	out := make([]byte, 0, len(data)+len(data)/16)
	out, err := cv.elements(out, len(data), false)
	if err != nil {
		return nil, fmt.Errorf("dimse: convert data set at byte %d: %w", cv.pos, err)
	}
	return out, nil
}

type converter struct {
	in         []byte
	pos        int
	implicitIn bool
	depth      int
}

const undefinedLength = 0xFFFFFFFF

// elements converts elements until end (a byte offset) or, when inItem with
// undefined length, until an item delimiter (which it consumes).
func (c *converter) elements(out []byte, end int, untilDelim bool) ([]byte, error) {
	for c.pos < end {
		if end-c.pos < 8 {
			return nil, fmt.Errorf("truncated element header")
		}
		group := binary.LittleEndian.Uint16(c.in[c.pos:])
		elem := binary.LittleEndian.Uint16(c.in[c.pos+2:])
		if group == 0xFFFE && elem == 0xE00D { // item delimiter
			c.pos += 8
			if untilDelim {
				return out, nil
			}
			continue
		}
		var vr string
		var length uint32
		if c.implicitIn {
			length = binary.LittleEndian.Uint32(c.in[c.pos+4:])
			c.pos += 8
			vr = dictVR(group, elem, length)
		} else {
			vr = string(c.in[c.pos+4 : c.pos+6])
			if dcm.LongVR(vr) {
				if end-c.pos < 12 {
					return nil, fmt.Errorf("truncated element header")
				}
				length = binary.LittleEndian.Uint32(c.in[c.pos+8:])
				c.pos += 12
			} else {
				length = uint32(binary.LittleEndian.Uint16(c.in[c.pos+6:]))
				c.pos += 8
			}
		}
		isSeq := vr == "SQ" || (length == undefinedLength && !(group == 0x7FE0 && elem == 0x0010))
		if isSeq {
			var err error
			out = c.header(out, group, elem, "SQ", undefinedLength)
			if out, err = c.items(out, length, end); err != nil {
				return nil, err
			}
			continue
		}
		if length == undefinedLength {
			return nil, fmt.Errorf("encapsulated pixel data cannot be converted")
		}
		if uint64(length) > uint64(end-c.pos) {
			return nil, fmt.Errorf("element (%04X,%04X) of %d bytes, %d left", group, elem, length, end-c.pos)
		}
		out = c.header(out, group, elem, vr, length)
		out = append(out, c.in[c.pos:c.pos+int(length)]...)
		c.pos += int(length)
	}
	if untilDelim {
		return nil, fmt.Errorf("item without delimiter")
	}
	return out, nil
}

// items converts the items of a sequence of the given length (or undefined).
func (c *converter) items(out []byte, length uint32, end int) ([]byte, error) {
	c.depth++
	defer func() { c.depth-- }()
	if c.depth > 64 {
		return nil, fmt.Errorf("sequences nested deeper than 64")
	}
	seqEnd := end
	if length != undefinedLength {
		if uint64(length) > uint64(end-c.pos) {
			return nil, fmt.Errorf("sequence of %d bytes, %d left", length, end-c.pos)
		}
		seqEnd = c.pos + int(length)
	}
	for c.pos < seqEnd {
		if seqEnd-c.pos < 8 {
			return nil, fmt.Errorf("truncated item header")
		}
		group := binary.LittleEndian.Uint16(c.in[c.pos:])
		elem := binary.LittleEndian.Uint16(c.in[c.pos+2:])
		il := binary.LittleEndian.Uint32(c.in[c.pos+4:])
		c.pos += 8
		if group != 0xFFFE {
			return nil, fmt.Errorf("(%04X,%04X) where an item was expected", group, elem)
		}
		switch elem {
		case 0xE0DD: // sequence delimiter
			if length != undefinedLength {
				return nil, fmt.Errorf("sequence delimiter in a defined-length sequence")
			}
			out = binary.LittleEndian.AppendUint32(out, 0xE0DDFFFE)
			return binary.LittleEndian.AppendUint32(out, 0), nil
		case 0xE000:
			out = binary.LittleEndian.AppendUint32(out, 0xE000FFFE)
			out = binary.LittleEndian.AppendUint32(out, undefinedLength)
			var err error
			if il == undefinedLength {
				out, err = c.elements(out, seqEnd, true)
			} else {
				if uint64(il) > uint64(seqEnd-c.pos) {
					return nil, fmt.Errorf("item of %d bytes, %d left", il, seqEnd-c.pos)
				}
				out, err = c.elements(out, c.pos+int(il), false)
			}
			if err != nil {
				return nil, err
			}
			out = binary.LittleEndian.AppendUint32(out, 0xE00DFFFE)
			out = binary.LittleEndian.AppendUint32(out, 0)
		default:
			return nil, fmt.Errorf("(FFFE,%04X) inside a sequence", elem)
		}
	}
	if length == undefinedLength {
		return nil, fmt.Errorf("sequence without delimiter")
	}
	// Defined length on input: close our undefined-length sequence.
	out = binary.LittleEndian.AppendUint32(out, 0xE0DDFFFE)
	return binary.LittleEndian.AppendUint32(out, 0), nil
}

// header writes an element header in the output syntax (the opposite of input).
func (c *converter) header(out []byte, group, elem uint16, vr string, length uint32) []byte {
	out = binary.LittleEndian.AppendUint16(out, group)
	out = binary.LittleEndian.AppendUint16(out, elem)
	if !c.implicitIn { // output is implicit
		return binary.LittleEndian.AppendUint32(out, length)
	}
	out = append(out, vr...)
	if dcm.LongVR(vr) {
		out = append(out, 0, 0)
		return binary.LittleEndian.AppendUint32(out, length)
	}
	return binary.LittleEndian.AppendUint16(out, uint16(length))
}

// dictVR chooses the Explicit VR for an Implicit element: the dictionary's,
// resolving "OB or OW"-style choices the way Implicit VR LE defines them (PS3.5
// A.1), UL for group lengths, LO for private creators, UN otherwise and
// whenever a short-length VR could not hold the value.
func dictVR(group, elem uint16, length uint32) string {
	vr := "UN"
	switch {
	case elem == 0x0000:
		vr = "UL"
	case group%2 == 1 && elem >= 0x0010 && elem <= 0x00FF:
		vr = "LO"
	case group%2 == 1:
		vr = "UN"
	default:
		if info, err := tag.Find(tag.Tag{Group: group, Element: elem}); err == nil && len(info.VRs) > 0 {
			vr = info.VRs[0]
			for _, v := range info.VRs {
				if v == "OW" || v == "US" {
					vr = v // Implicit VR LE encodes pixel data and LUT data as OW/US
				}
			}
			if len(vr) != 2 {
				vr = "UN"
			}
		} else if length == undefinedLength {
			vr = "SQ"
		}
	}
	if !dcm.LongVR(vr) && length > 0xFFFF {
		vr = "UN"
	}
	return vr
}
