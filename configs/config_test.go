package configs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGoodConfigs loads every testdata/*.good.yaml and every example config:
// each must load without error.
func TestGoodConfigs(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.good.yaml")
	examples, _ := filepath.Glob("*.yaml")
	files = append(files, examples...)
	if len(files) == 0 {
		t.Fatal("no good configs found")
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			if _, err := Load(f); err != nil {
				t.Fatalf("Load(%s): %v", f, err)
			}
		})
	}
}

// TestBadConfigs loads every testdata/*.bad.yaml; each must fail with an error
// containing every line of the matching .err file (file:line and message).
func TestBadConfigs(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.bad.yaml")
	if len(files) == 0 {
		t.Fatal("no bad configs found")
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			want, err := os.ReadFile(strings.TrimSuffix(f, ".yaml") + ".err")
			if err != nil {
				t.Fatalf("missing expected-error file: %v", err)
			}
			_, err = Load(f)
			if err == nil {
				t.Fatalf("Load(%s) succeeded, want error", f)
			}
			for _, line := range strings.Split(strings.TrimSpace(string(want)), "\n") {
				if !strings.Contains(err.Error(), strings.TrimSpace(line)) {
					t.Errorf("error %q\ndoes not contain %q", err, line)
				}
			}
		})
	}
}

func TestDefaultIsValid(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatalf("default config invalid: %v", err)
	}
}

func TestLineOf(t *testing.T) {
	src := "node:\n  name: x\nroutes:\n  - name: a\n  - name: b\n    model: m\n"
	c := &Config{}
	_, err := Parse([]byte(src), "t.yaml")
	_ = c
	if err == nil || !strings.Contains(err.Error(), "t.yaml:6: routes[1].model") {
		t.Fatalf("want error located at t.yaml:6 for routes[1].model, got %v", err)
	}
}
