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
	cv := converter{implicitIn: from == dcm.ImplicitVRLittleEndian}
	w := dcm.NewWalker(data, 0, !cv.implicitIn, binary.LittleEndian)
	out := make([]byte, 0, len(data)+len(data)/16)
	out, err := cv.elements(out, w, false)
	if err != nil {
		return nil, fmt.Errorf("dimse: convert data set %w", err)
	}
	return out, nil
}

type converter struct {
	implicitIn bool
	depth      int
}

// convertErr is a conversion error at w's position.
func convertErr(w *dcm.Walker, format string, args ...any) error {
	return fmt.Errorf("at byte %d: %s", w.Pos, fmt.Sprintf(format, args...))
}

// elements converts the elements w walks until its end or, when untilDelim,
// until an item delimiter (which it consumes).
func (c *converter) elements(out []byte, w *dcm.Walker, untilDelim bool) ([]byte, error) {
	for w.More() {
		group, elem, ok := w.Peek()
		if !ok {
			return nil, convertErr(w, "truncated element header")
		}
		if group == dcm.ItemGroup && elem == dcm.ItemDelimitationItem {
			w.Item() // cannot fail: Peek saw its 8 bytes
			if untilDelim {
				return out, nil
			}
			continue
		}
		h, err := w.Element()
		if err != nil {
			return nil, convertErr(w, "%v", err)
		}
		vr, length := h.VR, h.Length
		if c.implicitIn {
			vr = dictVR(group, elem, length)
		}
		isSeq := vr == "SQ" || (length == dcm.UndefinedLength && !(group == 0x7FE0 && elem == 0x0010))
		if isSeq {
			out = c.header(out, group, elem, "SQ", dcm.UndefinedLength)
			if out, err = c.items(out, w, length); err != nil {
				return nil, err
			}
			continue
		}
		if length == dcm.UndefinedLength {
			return nil, convertErr(w, "encapsulated pixel data cannot be converted")
		}
		v, err := w.Value(length)
		if err != nil {
			return nil, convertErr(w, "element (%04X,%04X): %v", group, elem, err)
		}
		out = c.header(out, group, elem, vr, length)
		out = append(out, v...)
	}
	if untilDelim {
		return nil, convertErr(w, "item without delimiter")
	}
	return out, nil
}

// items converts the items of a sequence of the given length (or undefined)
// at w's position.
func (c *converter) items(out []byte, w *dcm.Walker, length uint32) ([]byte, error) {
	c.depth++
	defer func() { c.depth-- }()
	if c.depth > 64 {
		return nil, convertErr(w, "sequences nested deeper than 64")
	}
	s := w
	if length != dcm.UndefinedLength {
		var err error
		if s, err = w.Within(length); err != nil {
			return nil, convertErr(w, "sequence: %v", err)
		}
	}
	for s.More() {
		h, err := s.Item()
		if err != nil {
			return nil, convertErr(s, "truncated item header")
		}
		if h.Group != dcm.ItemGroup {
			return nil, convertErr(s, "(%04X,%04X) where an item was expected", h.Group, h.Element)
		}
		switch h.Element {
		case dcm.SequenceDelimitationItem:
			if length != dcm.UndefinedLength {
				return nil, convertErr(s, "sequence delimiter in a defined-length sequence")
			}
			out = binary.LittleEndian.AppendUint32(out, 0xE0DDFFFE)
			return binary.LittleEndian.AppendUint32(out, 0), nil
		case dcm.Item:
			out = binary.LittleEndian.AppendUint32(out, 0xE000FFFE)
			out = binary.LittleEndian.AppendUint32(out, dcm.UndefinedLength)
			if h.Length == dcm.UndefinedLength {
				out, err = c.elements(out, s, true)
			} else {
				var iw *dcm.Walker
				if iw, err = s.Within(h.Length); err != nil {
					return nil, convertErr(s, "item: %v", err)
				}
				out, err = c.elements(out, iw, false)
			}
			if err != nil {
				return nil, err
			}
			out = binary.LittleEndian.AppendUint32(out, 0xE00DFFFE)
			out = binary.LittleEndian.AppendUint32(out, 0)
		default:
			return nil, convertErr(s, "(FFFE,%04X) inside a sequence", h.Element)
		}
	}
	if length == dcm.UndefinedLength {
		return nil, convertErr(s, "sequence without delimiter")
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
		} else if length == dcm.UndefinedLength {
			vr = "SQ"
		}
	}
	if !dcm.LongVR(vr) && length > 0xFFFF {
		vr = "UN"
	}
	return vr
}
