package dcm

import (
	"path/filepath"
	"testing"
)

func TestFileName(t *testing.T) {
	for in, want := range map[string]string{
		"1.2.840.10008.5.1.4": "1.2.840.10008.5.1.4",
		"":                    "_",
		".":                   "_.",
		"..":                  "_..",
		"../../etc/passwd":    "_.._..___________",
		"1.2/3":               "1.2_3",
		"1.2\x003":            "1.2_3",
		".123":                "_.123",
	} {
		got := FileName(in)
		if got != want {
			t.Errorf("FileName(%q) = %q, want %q", in, got, want)
		}
		if filepath.Base(got) != got || got == "." || got == ".." {
			t.Errorf("FileName(%q) = %q is not one safe path element", in, got)
		}
	}
}
