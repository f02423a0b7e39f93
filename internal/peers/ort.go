package peers

import (
	"os"
	"path/filepath"
)

// RepoRoot is the module root (the folder holding go.mod) above the working
// directory of the test.
func RepoRoot() string {
	dir, _ := os.Getwd()
	for d := dir; d != "/"; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
	}
	return dir
}

// ORTLibrary is the ONNX Runtime library the tests load: $ONNXRUNTIME_LIB,
// else the one 'make deps' installs under the repository's .deps/. It is not
// checked here: loading a missing library fails the test that needs it.
func ORTLibrary() string {
	if p := os.Getenv("ONNXRUNTIME_LIB"); p != "" {
		return p
	}
	return filepath.Join(RepoRoot(), ".deps", "onnxruntime", "libonnxruntime.so.1")
}
