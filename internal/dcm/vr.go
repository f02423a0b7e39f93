package dcm

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
