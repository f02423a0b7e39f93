package output

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"anomalynode/internal/peers"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

func TestPackBits(t *testing.T) {
	tests := []struct {
		name   string
		frames [][]bool
		want   []byte
	}{
		{"first pixel is the LSB", [][]bool{{true, false, false, false, false, false, false, false}}, []byte{0x01, 0x00}},
		{"last of 8 is the MSB", [][]bool{{false, false, false, false, false, false, false, true}}, []byte{0x80, 0x00}},
		{"frames are not byte aligned", [][]bool{{true, true, true}, {true, false, false}, {false, false, true}}, []byte{0x0f, 0x01}},
		{"odd length padded once", [][]bool{make([]bool, 17)}, []byte{0, 0, 0, 0}},
		{"even length not padded", [][]bool{make([]bool, 16)}, []byte{0, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := PackBits(tc.frames)
			if !bytes.Equal(got, tc.want) {
				t.Fatalf("PackBits = % x, want % x", got, tc.want)
			}
			n := len(tc.frames[0])
			back, err := UnpackBits(got, len(tc.frames), 1, n)
			if err != nil {
				t.Fatal(err)
			}
			for f := range tc.frames {
				for i := range tc.frames[f] {
					if back[f][i] != tc.frames[f][i] {
						t.Fatalf("frame %d pixel %d: got %v", f, i, back[f][i])
					}
				}
			}
		})
	}
}

// dciodvfy runs dciodvfy -new and fails on any Error line; warnings are logged.
func dciodvfy(t *testing.T, path string) {
	t.Helper()
	out, err := exec.Command(peers.Tool(t, "dciodvfy"), "-new", path).CombinedOutput()
	var errs []string
	for _, l := range strings.Split(string(out), "\n") {
		switch {
		case strings.HasPrefix(l, "Error"):
			errs = append(errs, l)
		case strings.HasPrefix(l, "Warning"):
			t.Logf("dciodvfy %s: %s", filepath.Base(path), l)
		}
	}
	if err != nil || len(errs) > 0 {
		t.Fatalf("dciodvfy %s: %v\n%s", filepath.Base(path), err, strings.Join(errs, "\n"))
	}
}

// dcmdumpE runs dcmdump -E (errors to stderr, exit non-zero on a parse
// problem) and returns the dump.
func dcmdumpE(t *testing.T, path string) string {
	t.Helper()
	cmd := exec.Command(peers.Tool(t, "dcmdump"), "-E", path)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 {
		t.Fatalf("dcmdump -E %s: %v\n%s", filepath.Base(path), err, stderr.String())
	}
	return stdout.String()
}

func writeTemp(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
