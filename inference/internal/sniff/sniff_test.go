package sniff

import (
	"os"
	"path/filepath"
	"testing"
)

func TestIsDICOM(t *testing.T) {
	dir := t.TempDir()
	part10 := append(make([]byte, 128), "DICM\x02\x00"...)
	cases := []struct {
		name string
		data []byte
		want bool
	}{
		{"part10", part10, true},
		{"exactly the magic", part10[:132], true},
		{"npy", []byte("\x93NUMPY\x01\x00"), false},
		{"wrong magic", append(make([]byte, 128), "DICX"...), false},
		{"short", make([]byte, 131), false},
		{"empty", nil, false},
	}
	for _, tc := range cases {
		path := filepath.Join(dir, tc.name)
		if err := os.WriteFile(path, tc.data, 0o644); err != nil {
			t.Fatal(err)
		}
		if got := IsDICOM(path); got != tc.want {
			t.Errorf("%s: IsDICOM = %v, want %v", tc.name, got, tc.want)
		}
	}
	if IsDICOM(filepath.Join(dir, "missing")) {
		t.Error("a missing file is DICOM")
	}
}
