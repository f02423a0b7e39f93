package main

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMkvit(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.onnx"), filepath.Join(dir, "b.onnx")
	for _, path := range []string{a, b} {
		e, out := combinedEnv()
		if err := runMkvit(t.Context(), e, []string{"--out", path, "--preset", "tiny", "--registers", "4", "--seed", "3", "--pos-resize", "separable"}); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), "4 registers") || !strings.Contains(out.String(), "sha256 ") {
			t.Errorf("summary = %q", out.String())
		}
	}
	da, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	db, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(da) < 100_000 || !bytes.Equal(da, db) {
		t.Errorf("two runs with one seed: %d and %d bytes, equal %v", len(da), len(db), bytes.Equal(da, db))
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("%d files in the output folder, want 2 (no temporary files left)", len(entries))
	}
}

func TestMkvitErrors(t *testing.T) {
	out := filepath.Join(t.TempDir(), "m.onnx")
	cases := [][]string{
		{"--preset", "tiny"},
		{"--out", out, "--preset", "vitg14"},
		{"--out", out, "--preset", "tiny", "--registers", "-1"},
		{"--out", out, "--preset", "tiny", "--pos-size", "100"},
		{"--out", out, "--preset", "tiny", "extra"},
		{"--out", out, "--preset", "tiny", "--pos-resize", "linear"},
		{"--out", filepath.Join(t.TempDir(), "missing", "m.onnx"), "--preset", "tiny"},
	}
	for _, args := range cases {
		e, _ := combinedEnv()
		if err := runMkvit(t.Context(), e, args); err == nil {
			t.Errorf("mkvit %v: no error", args)
		}
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed run left %s behind", out)
	}
	e, help := combinedEnv()
	if err := runMkvit(t.Context(), e, []string{"--help"}); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("--help: err = %v, want flag.ErrHelp (exit 0)", err)
	}
	if !strings.Contains(help.String(), "--preset") {
		t.Errorf("--help output lacks the usage line: %q", help.String())
	}
}
