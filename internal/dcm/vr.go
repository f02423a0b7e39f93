package dcm

import "encoding/binary"

// LongVR reports whether an explicit VR has a 2-byte reserved field and a
// 4-byte value length (PS3.5 7.1.2); every other VR has a 2-byte length. A
// switch, not a map: the ingest header reader calls it for every element.
func LongVR(vr string) bool {
	switch vr {
	case "OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV":
		return true
	}
	return false
}

// ExplicitHeader returns the header size and value length of the
// explicit-VR element at b: 12 for a long VR, 8 otherwise, and 0 when b is
// too short or its VR is not two capital letters (the caller decides whether
// that is an error).
func ExplicitHeader(b []byte, order binary.ByteOrder) (int, uint32) {
	if len(b) < 8 {
		return 0, 0
	}
	vr := string(b[4:6])
	if vr[0] < 'A' || vr[0] > 'Z' || vr[1] < 'A' || vr[1] > 'Z' {
		return 0, 0
	}
	if LongVR(vr) {
		if len(b) < 12 {
			return 0, 0
		}
		return 12, order.Uint32(b[8:])
	}
	return 8, uint32(order.Uint16(b[6:]))
}
