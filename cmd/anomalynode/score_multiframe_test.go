package main

import (
	"bytes"
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"anomalynode/internal/synth"
)

// TestScoreMultiFrame scores an Enhanced MR source whose frames are not in
// position order: the SEG has a frame per source frame referencing its frame
// number on that frame's position, and each frame gets its own heat map.
func TestScoreMultiFrame(t *testing.T) {
	cfgPath, modelPath := scoreFixture(t)
	f, err := os.OpenFile(cfgPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(f, "output:\n  seg_all_slices: true\n")
	f.Close()
	r, err := synth.Generate(synth.Options{Seed: 31, Slices: 4, Rows: 48, Cols: 40, Source: synth.SourcePhantom})
	if err != nil {
		t.Fatal(err)
	}
	in, out := t.TempDir(), t.TempDir()
	order := []int{2, 0, 3, 1}
	enh, err := synth.WriteEnhanced(filepath.Join(in, "enhanced.dcm"), r, order)
	if err != nil {
		t.Fatal(err)
	}
	sop := enh.SOPInstanceUID

	var stdout bytes.Buffer
	e := &env{log: zerolog.Nop(), stdout: &stdout, stderr: &stdout}
	if err := runScore(t.Context(), e, []string{"--config", cfgPath, "--model", modelPath, "--in", in, "--out", out}); err != nil {
		t.Fatalf("%v\n%s", err, stdout.String())
	}
	dir := filepath.Join(out, r.SeriesInstanceUID)
	segs, _ := filepath.Glob(filepath.Join(dir, "SEG_*.dcm"))
	scs, _ := filepath.Glob(filepath.Join(dir, "SC_*.dcm"))
	if len(segs) != 1 || len(scs) != 4 {
		t.Fatalf("%d SEG and %d SC files, want 1 and one per frame (4)", len(segs), len(scs))
	}
	seg := readSEGFile(t, segs[0])
	if len(seg.Frames) != 4 {
		t.Fatalf("SEG has %d frames, want one per source frame (4)", len(seg.Frames))
	}
	var got []int
	for i, fr := range seg.Frames {
		if fr.SourceSOPInstanceUID != sop || len(fr.SourceFrameNumbers) != 1 {
			t.Fatalf("SEG frame %d references %s frames %v", i+1, fr.SourceSOPInstanceUID, fr.SourceFrameNumbers)
		}
		n := fr.SourceFrameNumbers[0]
		got = append(got, n)
		if n < 1 || n > len(enh.Positions) {
			t.Fatalf("SEG frame %d references source frame %d of %d", i+1, n, len(enh.Positions))
		}
		if !slices.Equal(fr.ImagePositionPatient, enh.Positions[n-1]) {
			t.Errorf("SEG frame %d (source frame %d) at %q, the source frame at %q", i+1, n, fr.ImagePositionPatient, enh.Positions[n-1])
		}
	}
	// Frames in position order along the normal (row x column direction).
	o := r.Orientation
	normal := [3]float64{o[1]*o[5] - o[2]*o[4], o[2]*o[3] - o[0]*o[5], o[0]*o[4] - o[1]*o[3]}
	along := func(n int) float64 {
		p := r.Slices[order[n-1]].Position
		return p[0]*normal[0] + p[1]*normal[1] + p[2]*normal[2]
	}
	want := []int{1, 2, 3, 4}
	slices.SortFunc(want, func(a, b int) int { return cmp.Compare(along(a), along(b)) })
	if slices.Equal(want, []int{1, 2, 3, 4}) {
		t.Fatal("the frames are in position order already; the test needs them shuffled")
	}
	if !slices.Equal(got, want) {
		t.Errorf("SEG frames reference source frames %v, want %v (position order)", got, want)
	}
	frames := map[string]bool{}
	for _, p := range scs {
		ds, err := dicom.ParseFile(p, nil, dicom.SkipPixelData())
		if err != nil {
			t.Fatal(err)
		}
		el, err := ds.FindElementByTag(tag.SourceImageSequence)
		if err != nil {
			t.Fatalf("%s: no Source Image Sequence", filepath.Base(p))
		}
		item := dicom.Dataset{Elements: el.Value.GetValue().([]*dicom.SequenceItemValue)[0].GetValue().([]*dicom.Element)}
		fn, err := item.FindElementByTag(tag.ReferencedFrameNumber)
		if err != nil {
			t.Fatalf("%s: no ReferencedFrameNumber", filepath.Base(p))
		}
		frames[strings.Join(dicom.MustGetStrings(fn.Value), `\`)] = true
	}
	if len(frames) != 4 {
		t.Errorf("heat maps reference frames %v, want each of 1..4 once", frames)
	}
}
