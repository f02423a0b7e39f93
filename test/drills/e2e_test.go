package drills

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"anomalynode/internal/peers"
)

// TestEndToEndOrthanc: Orthanc holds a synthetic series (stored into it by
// dcmtk's storescu), sends it to the node by C-STORE (REST
// /modalities/node/store), and the node returns a SEG and the SC heat maps to
// Orthanc's DICOM port; both land in the source study and dciodvfy accepts
// them.
func TestEndToEndOrthanc(t *testing.T) {
	setup(t)
	c, _ := defaultConfig(t)
	nodePort, _ := strconv.Atoi(strings.Split(c.dimse, ":")[1])
	o := peers.StartOrthanc(t, []peers.Modality{{Name: "node", AET: nodeAE, Host: "127.0.0.1", Port: nodePort}}, nil)
	c.dests = []dest{{name: "archive", address: fmt.Sprintf("127.0.0.1:%d", o.DicomPort), calledAE: o.AET}}
	n := startNode(t, c)

	slices := 8 * scale()
	files := synthSeries(t, 1, slices, 64, 64)[0]
	args := append([]string{"-aet", "MODALITY", "-aec", o.AET, "127.0.0.1", strconv.Itoa(o.DicomPort)}, files...)
	cmd := exec.Command(peers.Tool(t, "storescu"), args...)
	cmd.Env = peers.DcmtkEnv()
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("storescu into Orthanc: %v\n%s", err, b)
	}
	var studies []string
	if err := o.GetJSON("/studies", &studies); err != nil || len(studies) != 1 {
		t.Fatalf("Orthanc studies after upload: %v %v", studies, err)
	}
	var series []string
	if err := o.GetJSON("/series", &series); err != nil || len(series) != 1 {
		t.Fatalf("Orthanc series after upload: %v %v", series, err)
	}
	start := time.Now()
	if b, err := o.Post("/modalities/node/store", series[0]); err != nil {
		t.Fatalf("Orthanc -> node C-STORE: %v\n%s\n%s", err, b, o.Log())
	}

	// The node finalises after series_timeout (or at once when the slice
	// count is known) and sends SEG + one SC per slice back.
	type seriesInfo struct {
		ID            string
		Instances     []string
		MainDicomTags map[string]string
	}
	var got []seriesInfo
	waitFor(t, 120*time.Second, func() string { return fmt.Sprintf("Orthanc series in the study: %+v", got) }, func() bool {
		got = nil
		if err := o.GetJSON("/studies/"+studies[0]+"/series?expand", &got); err != nil {
			return false
		}
		var segOK, scOK bool
		for _, s := range got {
			switch s.MainDicomTags["Modality"] {
			case "SEG":
				segOK = len(s.Instances) == 1
			case "OT", "SC":
				scOK = len(s.Instances) == slices
			}
		}
		return len(got) == 3 && segOK && scOK
	})
	t.Logf("series sent by Orthanc -> SEG + %d SC back in Orthanc: %s", slices, time.Since(start).Round(time.Millisecond))

	var all []string
	if err := o.GetJSON("/studies", &all); err != nil || len(all) != 1 {
		t.Errorf("outputs must land in the source study; Orthanc studies: %v %v", all, err)
	}
	dir := t.TempDir()
	for _, s := range got {
		mod := s.MainDicomTags["Modality"]
		if mod == "MR" {
			continue
		}
		b, err := o.Get("/instances/" + s.Instances[0] + "/file")
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, mod+".dcm")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if errs := dciodvfyErrors(t, p); len(errs) > 0 {
			t.Errorf("dciodvfy -new %s (%s):\n%s", mod, s.MainDicomTags["SeriesDescription"], strings.Join(errs, "\n"))
		}
	}
	// Orthanc stores an object before the node has its response and counts
	// the delivery: wait for the counter, then check it is exact.
	var m peers.Metrics
	waitFor(t, 10*time.Second, func() string {
		return fmt.Sprintf("export_delivered_total{archive} = %v, want %d", m.Sum("anomalynode_export_delivered_total", `destination="archive"`), slices+1)
	}, func() bool {
		m = n.metrics()
		return m.Sum("anomalynode_export_delivered_total", `destination="archive"`) >= float64(slices+1)
	})
	time.Sleep(300 * time.Millisecond) // a duplicate delivery would show now
	m = n.metrics()
	if v := m.Sum("anomalynode_export_delivered_total", `destination="archive"`); v != float64(slices+1) {
		t.Errorf("export_delivered_total{archive} = %v, want %d", v, slices+1)
	}
	if v := m.Sum("anomalynode_slices_scored_total"); v != float64(slices) {
		t.Errorf("slices_scored_total = %v, want %d", v, slices)
	}
}
