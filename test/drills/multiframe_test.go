package drills

import (
	"cmp"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"anomalynode/internal/peers"
	"anomalynode/internal/synth"
	nodeoutput "anomalynode/output"
)

const scClass = "1.2.840.10008.5.1.4.1.1.7"

// scInfo is what a heat map says about its source.
type scInfo struct {
	sop, refSOP string
	refFrames   []string
	position    []string
}

// readSC reads a Secondary Capture's Source Image Sequence and position.
func readSC(t *testing.T, path string) scInfo {
	t.Helper()
	ds, err := dicom.ParseFile(path, nil, dicom.SkipPixelData())
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	strs := func(ds dicom.Dataset, tg tag.Tag) []string {
		e, err := ds.FindElementByTag(tg)
		if err != nil {
			return nil
		}
		v, _ := e.Value.GetValue().([]string)
		out := make([]string, len(v))
		for i, s := range v {
			out[i] = strings.TrimRight(s, " \x00")
		}
		return out
	}
	info := scInfo{position: strs(ds, tag.ImagePositionPatient)}
	if v := strs(ds, tag.SOPInstanceUID); len(v) == 1 {
		info.sop = v[0]
	}
	el, err := ds.FindElementByTag(tag.SourceImageSequence)
	if err != nil {
		t.Fatalf("%s: no Source Image Sequence", path)
	}
	its := el.Value.GetValue().([]*dicom.SequenceItemValue)
	if len(its) != 1 {
		t.Fatalf("%s: %d Source Image items, want 1", path, len(its))
	}
	item := dicom.Dataset{Elements: its[0].GetValue().([]*dicom.Element)}
	if v := strs(item, tag.ReferencedSOPInstanceUID); len(v) == 1 {
		info.refSOP = v[0]
	}
	info.refFrames = strs(item, tag.ReferencedFrameNumber)
	return info
}

// TestMultiFrame sends the running node one Enhanced MR instance whose frames
// are out of position order (dcmtk's storescu) and a classic series (the Go
// client) and checks the outputs in the folder destination: one SEG whose
// frames are in position order, each naming its source frame
// (ReferencedFrameNumber) at that frame's position; one heat map per frame;
// dciodvfy clean; the series complete by its announced frame count; nothing
// refused, failed or dead-lettered.
func TestMultiFrame(t *testing.T) {
	setup(t)
	c, out := defaultConfig(t)
	n := startNode(t, c)

	const frames = 6
	r, err := synth.Generate(synth.Options{Seed: 7001, Slices: frames, Rows: fx.rows, Cols: fx.cols, Lesions: 2})
	if err != nil {
		t.Fatal(err)
	}
	order := []int{3, 0, 5, 2, 4, 1} // frame f+1 holds slice order[f]
	enhPath := filepath.Join(t.TempDir(), "enhanced.dcm")
	enh, err := synth.WriteEnhanced(enhPath, r, order)
	if err != nil {
		t.Fatal(err)
	}
	// The SEG's frames must follow the slices along the normal: the frame
	// numbers in that order, from the positions written.
	byPosition := make([]int, frames)
	for k := range byPosition {
		byPosition[k] = k
	}
	along := func(k int) float64 {
		p := r.Slices[k].Position
		return p[0]*r.Normal[0] + p[1]*r.Normal[1] + p[2]*r.Normal[2]
	}
	slices.SortFunc(byPosition, func(a, b int) int { return cmp.Compare(along(a), along(b)) })
	var wantFrames []int
	for _, k := range byPosition {
		wantFrames = append(wantFrames, enh.Frame(k))
	}
	if slices.IsSorted(wantFrames) {
		t.Fatalf("frames %v are in position order already; the drill needs them shuffled", wantFrames)
	}
	const classicSlices = 4
	classic := synthSeries(t, 1, classicSlices, fx.rows, fx.cols)[0]

	start := time.Now()
	host, port, _ := strings.Cut(c.dimse, ":")
	cmd := exec.Command(peers.Tool(t, "storescu"), "-aet", "MODALITY", "-aec", nodeAE, host, port, enhPath)
	cmd.Env = peers.DcmtkEnv()
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("storescu: %v\n%s", err, b)
	}
	if res := storeFiles(t.Context(), c.dimse, "MODALITY", classic); res.err != nil || len(res.acked) != classicSlices {
		t.Fatalf("classic series: %d of %d acknowledged, %v", len(res.acked), classicSlices, res.err)
	}

	// 1 SEG + one SC per frame, and 1 SEG + one SC per classic slice.
	want := 1 + frames + 1 + classicSlices
	var outs []output
	waitFor(t, 60*time.Second, func() string {
		m := n.metrics()
		var state []string
		for k, v := range m {
			if strings.Contains(k, "_total") && !strings.Contains(k, "_bucket") && v != 0 && (strings.Contains(k, "ingest") || strings.Contains(k, "slices") || strings.Contains(k, "series")) {
				state = append(state, fmt.Sprintf("%s=%v", k, v))
			}
		}
		slices.Sort(state)
		return fmt.Sprintf("%d objects in the folder destination, want %d; metrics: %s", len(outs), want, strings.Join(state, " "))
	}, func() bool {
		outs = readOutputs(t, out)
		return len(outs) >= want
	})
	t.Logf("stored -> %d objects in the folder destination: %s", want, time.Since(start).Round(time.Millisecond))
	time.Sleep(300 * time.Millisecond) // a duplicate would show now
	outs = readOutputs(t, out)
	if len(outs) != want {
		t.Errorf("%d objects in the folder destination, want %d", len(outs), want)
	}

	var segs, scs, classicSEGs []output
	classicOut := 0
	for _, o := range outs {
		switch {
		case o.study != r.StudyInstanceUID:
			classicOut++
			if o.sopClass == segClass {
				classicSEGs = append(classicSEGs, o)
			}
		case o.sopClass == segClass:
			segs = append(segs, o)
		case o.sopClass == scClass:
			scs = append(scs, o)
		default:
			t.Errorf("unexpected object %s (class %s)", o.path, o.sopClass)
		}
	}
	if classicOut != 1+classicSlices {
		t.Errorf("%d objects for the classic series, want %d", classicOut, 1+classicSlices)
	}
	if len(segs) != 1 {
		t.Fatalf("%d SEGs for the enhanced instance, want 1", len(segs))
	}
	// A single-frame source is referenced by instance alone.
	if len(classicSEGs) != 1 {
		t.Errorf("%d SEGs for the classic series, want 1", len(classicSEGs))
	}
	for _, o := range classicSEGs {
		data, err := os.ReadFile(o.path)
		if err != nil {
			t.Fatal(err)
		}
		seg, err := nodeoutput.ReadSEG(data)
		if err != nil {
			t.Fatal(err)
		}
		for i, fr := range seg.Frames {
			if fr.SourceFrameNumbers != nil {
				t.Errorf("classic series' SEG frame %d references frames %v of %s", i+1, fr.SourceFrameNumbers, fr.SourceSOPInstanceUID)
			}
		}
	}

	data, err := os.ReadFile(segs[0].path)
	if err != nil {
		t.Fatal(err)
	}
	seg, err := nodeoutput.ReadSEG(data)
	if err != nil {
		t.Fatal(err)
	}
	var gotFrames []int
	for i, fr := range seg.Frames {
		if fr.SourceSOPInstanceUID != enh.SOPInstanceUID || fr.SourceSOPClassUID != synth.EnhancedMRImageStorage || len(fr.SourceFrameNumbers) != 1 {
			t.Fatalf("SEG frame %d references %s (%s) frames %v, want one frame of %s", i+1, fr.SourceSOPInstanceUID, fr.SourceSOPClassUID, fr.SourceFrameNumbers, enh.SOPInstanceUID)
		}
		f := fr.SourceFrameNumbers[0]
		gotFrames = append(gotFrames, f)
		if f < 1 || f > frames {
			t.Fatalf("SEG frame %d references source frame %d of %d", i+1, f, frames)
		}
		if !slices.Equal(fr.ImagePositionPatient, enh.Positions[f-1]) {
			t.Errorf("SEG frame %d (source frame %d) at %q, the source frame at %q", i+1, f, fr.ImagePositionPatient, enh.Positions[f-1])
		}
	}
	if !slices.Equal(gotFrames, wantFrames) {
		t.Errorf("SEG frames reference source frames %v, want %v (position order)", gotFrames, wantFrames)
	}

	seen := map[string]bool{}
	sopSeen := map[string]bool{}
	for _, o := range scs {
		sc := readSC(t, o.path)
		if sopSeen[sc.sop] {
			t.Errorf("SC SOP Instance UID %s twice", sc.sop)
		}
		sopSeen[sc.sop] = true
		if sc.refSOP != enh.SOPInstanceUID || len(sc.refFrames) != 1 {
			t.Errorf("%s references %s frames %v, want one frame of %s", filepath.Base(o.path), sc.refSOP, sc.refFrames, enh.SOPInstanceUID)
			continue
		}
		var f int
		if _, err := fmt.Sscan(sc.refFrames[0], &f); err != nil || f < 1 || f > frames {
			t.Errorf("%s references frame %q", filepath.Base(o.path), sc.refFrames[0])
			continue
		}
		if seen[sc.refFrames[0]] {
			t.Errorf("frame %d has more than one heat map", f)
		}
		seen[sc.refFrames[0]] = true
		if !slices.Equal(sc.position, enh.Positions[f-1]) {
			t.Errorf("heat map of frame %d at %q, the frame at %q", f, sc.position, enh.Positions[f-1])
		}
	}
	if len(scs) != frames || len(seen) != frames {
		t.Errorf("%d heat maps referencing %d distinct frames, want one per frame (%d)", len(scs), len(seen), frames)
	}

	for _, o := range append(segs, scs...) {
		if errs := dciodvfyErrors(t, o.path); len(errs) > 0 {
			t.Errorf("dciodvfy -new %s:\n%s", filepath.Base(o.path), strings.Join(errs, "\n"))
		}
	}

	if got := n.logCount(`"ingest: series complete"`, `"series":"`+r.SeriesInstanceUID+`"`, `"reason":"expected"`); got != 1 {
		t.Errorf("%d `ingest: series complete` lines with reason expected for the enhanced series, want 1", got)
	}
	// A file lands before its delivery is counted.
	var m peers.Metrics
	waitFor(t, 10*time.Second, func() string {
		return fmt.Sprintf("export_delivered_total{folder} = %v, want %d", m.Sum("anomalynode_export_delivered_total"), want)
	}, func() bool {
		m = n.metrics()
		return m.Sum("anomalynode_export_delivered_total") >= float64(want)
	})
	for _, c := range []struct {
		name, label string
		want        float64
	}{
		{"anomalynode_ingest_instances_stored_total", "", 1 + classicSlices},
		{"anomalynode_ingest_series_completed_total", `reason="expected"`, 2},
		{"anomalynode_slices_scored_total", "", frames + classicSlices},
		{"anomalynode_series_completed_total", `result="ok"`, 2},
		{"anomalynode_export_delivered_total", `destination="folder"`, float64(want)},
		{"anomalynode_ingest_instances_refused_total", "", 0},
		{"anomalynode_ingest_files_quarantined_total", "", 0},
		{"anomalynode_slices_failed_total", "", 0},
		{"anomalynode_export_dead_lettered_total", "", 0},
	} {
		var labels []string
		if c.label != "" {
			labels = append(labels, c.label)
		}
		if got := m.Sum(c.name, labels...); got != c.want {
			t.Errorf("%s{%s} = %v, want %v", c.name, c.label, got, c.want)
		}
	}
}
