package output

import (
	"bytes"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/suyashkumar/dicom"

	"anomalynode/internal/peers"
	"anomalynode/internal/synth"
)

// synthResult turns a series of the synth package (real anatomy from the
// Colin 27 volume, painted lesions with known masks, an oblique plane) into
// a scored result: the scores are the lesion masks blurred a little, so the
// mask (scores > 0.5) is the painted lesion.
func synthResult(t *testing.T, opts synth.Options) (*SeriesResult, []string) {
	t.Helper()
	r, err := synth.Generate(opts)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	m, err := r.Write(dir)
	if err != nil {
		t.Fatal(err)
	}
	res := &SeriesResult{Model: ModelIdentity{Name: "dinov2-dpmm", Version: "1", SHA256: "00ff"}, Version: 1, Threshold: 0.5,
		Created: time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC)}
	var files []string
	for k, s := range r.Slices {
		path := filepath.Join(dir, filepath.FromSlash(m.Slices[k].File))
		files = append(files, path)
		hdr, err := dicom.ParseFile(path, nil, dicom.SkipPixelData())
		if err != nil {
			t.Fatal(err)
		}
		n := r.Rows * r.Cols
		src := SourceSlice{Header: &hdr, Rows: r.Rows, Cols: r.Cols, Scores: make([]float32, n), Mask: make([]bool, n), Display: make([]uint8, n)}
		lo, hi := r.WindowCenter-r.WindowWidth/2, r.WindowCenter+r.WindowWidth/2
		for i := 0; i < n; i++ {
			v := (float64(s.Stored[i])*r.Slope + r.Intercept - lo) / (hi - lo)
			src.Display[i] = uint8(255 * math.Max(0, math.Min(1, v)))
			if s.Mask != nil && s.Mask[i] != 0 {
				src.Scores[i] = 0.9
				src.Mask[i] = true
			} else {
				src.Scores[i] = 0.05
			}
		}
		res.Sources = append(res.Sources, src)
	}
	// Arrival order is not slice order.
	rng := rand.New(rand.NewPCG(opts.Seed, 1))
	rng.Shuffle(len(res.Sources), func(i, j int) {
		res.Sources[i], res.Sources[j] = res.Sources[j], res.Sources[i]
		files[i], files[j] = files[j], files[i]
	})
	return res, files
}

// TestSynthSeriesOblique builds SEG and SC for an oblique synthetic MR series
// whose size is not a multiple of 8, validates both, checks patient/study
// consistency across source + SEG + SC, and compares every mask bit.
func TestSynthSeriesOblique(t *testing.T) {
	res, files := synthResult(t, synth.Options{Seed: 21, Slices: 10, Rows: 45, Cols: 38, Tilt: 17, Lesions: 2, Labels: true})
	seg, err := BuildSEG(res, SEGOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := expectedFrames(res, false)
	if len(want) == 0 {
		t.Fatal("synth painted no lesion pixels")
	}
	checkSEG(t, res, seg.Part10, want)
	dir := t.TempDir()
	segPath := filepath.Join(dir, "seg.dcm")
	if err := os.WriteFile(segPath, seg.Part10, 0o644); err != nil {
		t.Fatal(err)
	}
	dciodvfy(t, segPath)
	dcmdumpE(t, segPath)
	scs, err := BuildSC(res, SCOptions{OnlyFindings: true})
	if err != nil {
		t.Fatal(err)
	}
	all := append(append([]string{}, files...), segPath)
	for i, o := range scs {
		p := filepath.Join(dir, "sc"+string(rune('a'+i))+".dcm")
		if err := os.WriteFile(p, o.Part10, 0o644); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			dciodvfy(t, p)
		}
		all = append(all, p)
	}
	out, err := exec.Command(peers.Tool(t, "dcentvfy"), all...).CombinedOutput()
	if err != nil || bytes.Contains(out, []byte("Error")) {
		t.Fatalf("dcentvfy: %v\n%s", err, out)
	}
}
