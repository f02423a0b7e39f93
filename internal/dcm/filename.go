package dcm

// FileName turns a UID into a name that is safe as one path element: the UID
// alphabet (digits and dots, PS3.5 9.1) is kept, anything else becomes '_',
// and a name that is empty or starts with a dot ("", ".", "..", a hidden
// file) gets a leading '_'. A UID from a hostile sender cannot climb out of
// the folder it is written under, and a well-formed UID is its own name.
func FileName(uid string) string {
	b := []byte(uid)
	for i, c := range b {
		if !(c >= '0' && c <= '9' || c == '.') {
			b[i] = '_'
		}
	}
	if len(b) == 0 || b[0] == '.' {
		return "_" + string(b)
	}
	return string(b)
}
