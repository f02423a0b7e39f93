package output

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"anomalynode/dimse"
	"anomalynode/internal/peers"
)

// TestOrthancDelivery delivers a SEG and the SC heat maps of a synthetic
// series to a real Orthanc holding the source study, kills Orthanc after the
// first object arrived, restarts it, and checks that every object is there
// exactly once, in the source study.
func TestOrthancDelivery(t *testing.T) {
	s := makeSeries(t, 6, 64, 48, true, 11)
	seg, err := BuildSEG(s.res, SEGOptions{})
	if err != nil {
		t.Fatal(err)
	}
	scs, err := BuildSC(s.res, SCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	objs := append([]*Object{seg}, scs...)

	o := orthancWithSources(t, s.files)

	js := openJS(t)
	q, err := NewQueue(context.Background(), js, QueueConfig{Prefix: "T", MaxAttempts: 1000, BackoffInitial: 100 * time.Millisecond, BackoffMax: 400 * time.Millisecond},
		[]Destination{{
			Name:        "archive",
			Sender:      &CStore{Addr: fmt.Sprintf("127.0.0.1:%d", o.DicomPort), Config: dimse.ClientConfig{CallingAE: "ANOMALYNODE", CalledAE: o.AET, DialTimeout: 2 * time.Second, DIMSETimeout: 5 * time.Second}},
			Concurrency: 1,
			Timeout:     10 * time.Second,
		}}, testLogger(t), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range objs {
		if err := q.Enqueue(context.Background(), obj, "archive"); err != nil {
			t.Fatal(err)
		}
	}
	runQueue(t, q)
	delivered := func() float64 { return value(q.m.delivered.WithLabelValues("archive")) }
	waitFor(t, "the first delivery", 30*time.Second, func() bool { return delivered() >= 1 })
	o.Stop()
	t.Logf("Orthanc stopped after %v deliveries", delivered())
	time.Sleep(1500 * time.Millisecond)
	o.Start()
	waitFor(t, "every object delivered after the restart", 60*time.Second, func() bool { return delivered() >= float64(len(objs)) })
	time.Sleep(500 * time.Millisecond)
	if got := delivered(); got != float64(len(objs)) {
		t.Fatalf("delivered %v times, want exactly %d", got, len(objs))
	}
	if value(q.m.retried.WithLabelValues("archive")) < 1 {
		t.Error("no retry was counted: the outage did not hit a delivery")
	}

	// Orthanc's view: one study with the source, SEG and SC series.
	study := getString(s.res.Sources[0].Header, "StudyInstanceUID")
	var found []struct{ ID, Type string }
	b, err := o.Post("/tools/lookup", study)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &found); err != nil || len(found) != 1 || found[0].Type != "Study" {
		t.Fatalf("lookup of the source study: %s", b)
	}
	var st struct{ Series []string }
	if err := o.GetJSON("/studies/"+found[0].ID, &st); err != nil {
		t.Fatal(err)
	}
	bySeries := map[string][]string{}
	for _, id := range st.Series {
		var se struct {
			MainDicomTags map[string]string
			Instances     []string
		}
		if err := o.GetJSON("/series/"+id, &se); err != nil {
			t.Fatal(err)
		}
		for _, inst := range se.Instances {
			var tags map[string]any
			if err := o.GetJSON("/instances/"+inst+"/simplified-tags", &tags); err != nil {
				t.Fatal(err)
			}
			bySeries[se.MainDicomTags["SeriesInstanceUID"]] = append(bySeries[se.MainDicomTags["SeriesInstanceUID"]], fmt.Sprint(tags["SOPInstanceUID"]))
		}
	}
	if len(bySeries) != 3 {
		t.Fatalf("study has %d series, want source + SEG + SC", len(bySeries))
	}
	if got := bySeries[seg.SeriesInstanceUID]; len(got) != 1 || got[0] != seg.SOPInstanceUID {
		t.Errorf("SEG series holds %v", got)
	}
	want := map[string]bool{}
	for _, sc := range scs {
		want[sc.SOPInstanceUID] = true
	}
	got := bySeries[scs[0].SeriesInstanceUID]
	if len(got) != len(scs) {
		t.Errorf("SC series holds %d instances, want %d", len(got), len(scs))
	}
	for _, u := range got {
		if !want[u] {
			t.Errorf("unexpected SC instance %s", u)
		}
		delete(want, u)
	}
	ids, err := o.Instances()
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != len(s.files)+len(objs) {
		t.Errorf("Orthanc holds %d instances, want %d", len(ids), len(s.files)+len(objs))
	}
}

// orthancWithSources starts an Orthanc archive holding the source files.
func orthancWithSources(t *testing.T, files []string) *peers.Orthanc {
	t.Helper()
	o := peers.StartOrthanc(t, nil, nil)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := o.Post("/instances", string(b)); err != nil {
			t.Fatalf("upload source: %v", err)
		}
	}
	return o
}
