package drills

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"anomalynode/internal/peers"
)

// TestArchiveDown: the destination archive (Orthanc) is down while a series
// is processed and comes back; every output is delivered exactly once and the
// retry metric moved. With a short max_attempts/max_age the jobs are
// dead-lettered instead, and `anomalynode exports replay` delivers them.
func TestArchiveDown(t *testing.T) {
	setup(t)
	o := peers.StartOrthanc(t, nil, nil)
	slices := 6 * scale()

	// outputsIn counts the instances of the SEG and SC series Orthanc holds
	// for the study of files.
	outputsIn := func(t *testing.T, files []string) (seg, sc int) {
		var series []struct {
			Instances     []string
			MainDicomTags map[string]string
		}
		var studies []string
		_ = o.GetJSON("/studies", &studies)
		study := studyUID(t, files[0])
		for _, id := range studies {
			var s struct{ MainDicomTags map[string]string }
			if o.GetJSON("/studies/"+id, &s) != nil || s.MainDicomTags["StudyInstanceUID"] != study {
				continue
			}
			if err := o.GetJSON("/studies/"+id+"/series?expand", &series); err != nil {
				return 0, 0
			}
		}
		for _, s := range series {
			switch s.MainDicomTags["Modality"] {
			case "SEG":
				seg += len(s.Instances)
			case "MR":
			default:
				sc += len(s.Instances)
			}
		}
		return seg, sc
	}

	t.Run("retry", func(t *testing.T) {
		c, _ := defaultConfig(t)
		c.dests = []dest{{name: "archive", address: fmt.Sprintf("127.0.0.1:%d", o.DicomPort), calledAE: o.AET}}
		c.maxAttempts, c.backoffInitial, c.backoffMx = 1000, "200ms", "1s"
		n := startNode(t, c)
		o.Stop()
		files := synthSeries(t, 1, slices, 64, 64)[0]
		if res := storeFiles(context.Background(), c.dimse, "MODALITY", files); res.err != nil || len(res.acked) != slices {
			t.Fatalf("send: %d of %d acknowledged: %v", len(res.acked), slices, res.err)
		}
		waitFor(t, 60*time.Second, func() string { return "no retries seen while the archive is down" }, func() bool {
			return n.metrics().Sum("anomalynode_export_retried_total", `destination="archive"`) >= float64(slices+1)
		})
		time.Sleep(2 * time.Second) // down for a while longer
		o.Start()
		var m peers.Metrics
		waitFor(t, 60*time.Second, func() string {
			return fmt.Sprintf("delivered %v, queue %v", m.Sum("anomalynode_export_delivered_total"), m.Sum("anomalynode_export_queue_depth"))
		}, func() bool {
			m = n.metrics()
			return m.Sum("anomalynode_export_delivered_total", `destination="archive"`) >= float64(slices+1) &&
				m.Sum("anomalynode_export_queue_depth") == 0
		})
		time.Sleep(500 * time.Millisecond) // a duplicate would show in the counter now
		m = n.metrics()
		if v := m.Sum("anomalynode_export_delivered_total", `destination="archive"`); v != float64(slices+1) {
			t.Errorf("delivered %v objects, want exactly %d (SEG + %d SC)", v, slices+1, slices)
		}
		if v := m.Sum("anomalynode_export_dead_lettered_total"); v != 0 {
			t.Errorf("dead-lettered %v, want 0", v)
		}
		seg, sc := outputsIn(t, files)
		if seg != 1 || sc != slices {
			t.Errorf("Orthanc holds %d SEG and %d SC, want 1 and %d", seg, sc, slices)
		}
		t.Logf("archive down: %v retries, %v delivered once each", m.Sum("anomalynode_export_retried_total"), m.Sum("anomalynode_export_delivered_total"))
	})

	t.Run("dead-letter-replay", func(t *testing.T) {
		c, _ := defaultConfig(t)
		c.dests = []dest{{name: "archive", address: fmt.Sprintf("127.0.0.1:%d", o.DicomPort), calledAE: o.AET}}
		c.maxAttempts, c.backoffInitial, c.backoffMx = 3, "200ms", "500ms" // max_age is at least 1m: too long for CI
		c.natsListen = fmt.Sprintf("127.0.0.1:%d", peers.FreePort(t))
		n := startNode(t, c)
		o.Stop()
		files := synthSeries(t, 1, slices, 64, 64)[0]
		if res := storeFiles(context.Background(), c.dimse, "MODALITY", files); res.err != nil || len(res.acked) != slices {
			t.Fatalf("send: %d of %d acknowledged: %v", len(res.acked), slices, res.err)
		}
		var m peers.Metrics
		waitFor(t, 60*time.Second, func() string {
			return fmt.Sprintf("dead-lettered %v, retried %v", m.Sum("anomalynode_export_dead_lettered_total"), m.Sum("anomalynode_export_retried_total"))
		}, func() bool {
			m = n.metrics()
			return m.Sum("anomalynode_export_dead_lettered_total", `destination="archive"`) == float64(slices+1)
		})
		if m.Sum("anomalynode_export_retried_total") == 0 {
			t.Errorf("no retries before dead-lettering")
		}
		out, err := runBin("exports", "list", "--config", n.cfgPath, "--json")
		if err != nil {
			t.Fatal(err)
		}
		if got := countJSONLines(out); got != slices+1 {
			t.Errorf("exports list: %d dead letters, want %d:\n%s", got, slices+1, out)
		}
		o.Start()
		out, err = runBin("exports", "replay", "--config", n.cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, fmt.Sprintf("replayed %d job(s)", slices+1)) {
			t.Errorf("exports replay said %q, want %d jobs replayed", out, slices+1)
		}
		waitFor(t, 60*time.Second, func() string {
			return fmt.Sprintf("delivered %v", m.Sum("anomalynode_export_delivered_total"))
		}, func() bool {
			m = n.metrics()
			return m.Sum("anomalynode_export_delivered_total", `destination="archive"`) >= float64(slices+1) &&
				m.Sum("anomalynode_export_queue_depth") == 0
		})
		seg, sc := outputsIn(t, files)
		if seg != 1 || sc != slices {
			t.Errorf("Orthanc holds %d SEG and %d SC after replay, want 1 and %d", seg, sc, slices)
		}
		out, err = runBin("exports", "list", "--config", n.cfgPath, "--json")
		if err != nil {
			t.Fatal(err)
		}
		if got := countJSONLines(out); got != 0 {
			t.Errorf("exports list after replay: %d dead letters, want 0:\n%s", got, out)
		}
	})
}

func countJSONLines(s string) int {
	c := 0
	for _, l := range strings.Split(s, "\n") {
		var j map[string]any
		if json.Unmarshal([]byte(l), &j) == nil && j["seq"] != nil {
			c++
		}
	}
	return c
}

// studyUID reads a file's StudyInstanceUID.
func studyUID(t testing.TB, path string) string {
	t.Helper()
	outs := readOutputs(t, path)
	if len(outs) != 1 {
		t.Fatalf("%s: not readable", path)
	}
	return outs[0].study
}
