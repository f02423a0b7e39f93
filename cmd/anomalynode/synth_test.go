package main

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"anomalynode/internal/synth"
)

func TestSynthCommand(t *testing.T) {
	dir := t.TempDir()
	e, out := combinedEnv()
	args := []string{"--out", dir, "--lesions", "--slices", "4", "--rows", "40", "--cols", "52", "--series", "2", "--seed", "9", "--modality", "CT"}
	if err := runSynth(t.Context(), e, args); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for i, sub := range []string{"S001", "S002"} {
		raw, err := os.ReadFile(filepath.Join(dir, sub, synth.ManifestFile))
		if err != nil {
			t.Fatal(err)
		}
		var m synth.Manifest
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		if m.Seed != uint64(9+i) || m.Modality != "CT" || m.Rows != 40 || m.Cols != 52 || len(m.Slices) != 4 || len(m.Lesions) != 3 {
			t.Errorf("%s manifest: %+v", sub, m)
		}
		for _, s := range m.Slices {
			for _, f := range []string{s.File, s.LabelPNG, s.LabelNPY} {
				if _, err := os.Stat(filepath.Join(dir, sub, f)); err != nil {
					t.Error(err)
				}
			}
		}
	}
	if n := strings.Count(out.String(), "\n"); n != 2 {
		t.Errorf("summary has %d lines: %q", n, out)
	}

	// A healthy series has no labels folder.
	healthy := filepath.Join(t.TempDir(), "h")
	if err := runSynth(t.Context(), e, []string{"--out", healthy, "--slices", "2", "--rows", "16", "--cols", "16"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(healthy, synth.LabelsDir)); !os.IsNotExist(err) {
		t.Errorf("healthy series has labels: %v", err)
	}
}

func TestSynthCommandErrors(t *testing.T) {
	e, out := combinedEnv()
	if err := runSynth(t.Context(), e, []string{"--help"}); !errors.Is(err, flag.ErrHelp) || !strings.Contains(out.String(), "--out DIR") {
		t.Errorf("--help: %v %q", err, out)
	}
	for _, args := range [][]string{
		{},
		{"--out", t.TempDir(), "--modality", "XA"},
		{"--out", t.TempDir(), "--rows", "3"},
		{"--out", t.TempDir(), "--series", "0"},
		{"--out", t.TempDir(), "extra"},
		{"--out", t.TempDir(), "--lesions", "--polarity", "bright"},
	} {
		e, _ := combinedEnv()
		if err := runSynth(t.Context(), e, args); err == nil {
			t.Errorf("%v: accepted", args)
		}
	}
}

// TestSynthPolarity: --polarity reaches the generator (hypo: every manifest
// amplitude negative; hyper: every one positive, same magnitudes).
func TestSynthPolarity(t *testing.T) {
	amps := map[string][]float64{}
	for _, pol := range []string{"hyper", "hypo"} {
		dir := t.TempDir()
		e, out := combinedEnv()
		if err := runSynth(t.Context(), e, []string{"--out", dir, "--lesions", "--polarity", pol, "--slices", "4", "--rows", "48", "--cols", "48", "--seed", "5"}); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		raw, err := os.ReadFile(filepath.Join(dir, synth.ManifestFile))
		if err != nil {
			t.Fatal(err)
		}
		var m synth.Manifest
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		for _, l := range m.Lesions {
			amps[pol] = append(amps[pol], l.Amplitude)
		}
	}
	if len(amps["hyper"]) != 3 || len(amps["hypo"]) != 3 {
		t.Fatalf("amplitudes %v", amps)
	}
	for i, a := range amps["hyper"] {
		if !(a > 0) || amps["hypo"][i] != -a {
			t.Errorf("lesion %d: hyper amplitude %v, hypo %v", i, a, amps["hypo"][i])
		}
	}
}
