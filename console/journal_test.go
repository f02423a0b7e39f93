package console

import (
	"fmt"
	"testing"
	"time"
)

func TestJournalSeriesLife(t *testing.T) {
	now := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	j := NewJournal(JournalOptions{Now: func() time.Time { return now }})
	w := func(s string) { j.Write([]byte(s + "\n")) }
	const series, seg = "1.2.3", "1.2.3.99"
	for i := 0; i < 4; i++ {
		w(fmt.Sprintf(`{"level":"debug","sop":"1.2.3.%d","series":"1.2.3","outcome":"stored","rule":"mr","calling_ae":"MR1","message":"ingest: c-store"}`, i))
		now = now.Add(100 * time.Millisecond)
	}
	w(`{"level":"debug","sop":"1.2.3.0","series":"1.2.3","outcome":"duplicate","message":"ingest: c-store"}`)
	w(`{"level":"debug","sop":"1.2.3.0","series":"1.2.3","model":"mr","frames":3,"message":"inference: slice scored"}`)
	s, ok := j.Series(series)
	if !ok || s.Received != 4 || s.Scored != 3 || s.State() != "receiving" || s.CallingAE != "MR1" || s.Rule != "mr" || s.FirstSOP != "1.2.3.0" {
		t.Fatalf("after receiving: %+v", s)
	}
	lastSlice := s.LastSlice
	w(`{"level":"info","series":"1.2.3","version":1,"reason":"timeout","message":"ingest: series complete"}`)
	w(`{"level":"info","series":"1.2.3","version":1,"model":"mr","slices":4,"anomalous_slices":2,"objects":5,"destinations":["a","b"],"seg":"1.2.3.99","message":"output: series finalised"}`)
	if s, _ = j.Series(series); s.State() != "delivering" || s.Anomalous != 2 || s.Objects != 5 || len(s.Pending()) != 2 {
		t.Fatalf("after finalising: state %s %+v", s.State(), s)
	}
	now = now.Add(2 * time.Second)
	w(`{"level":"info","destination":"a","sop_instance_uid":"1.2.3.99","message":"export: delivered"}`)
	w(`{"level":"warn","destination":"b","sop_instance_uid":"1.2.3.99","error":"refused","message":"export: delivery failed, will retry"}`)
	w(`{"level":"info","destination":"a","sop_instance_uid":"9.9.9","message":"export: delivered"}`)
	if s, _ = j.Series(series); s.Retries != 1 || s.DeliveredIn() != 0 || len(s.Pending()) != 1 || s.Pending()[0] != "b" {
		t.Fatalf("one destination delivered: %+v", s)
	}
	w(`{"level":"error","destination":"b","sop_instance_uid":"1.2.3.99","error":"refused","message":"export: gave up, job dead-lettered"}`)
	if s, _ = j.Series(series); s.State() != "failed" || s.Dead["b"] != "refused" {
		t.Fatalf("dead-lettered: %s %+v", s.State(), s.Dead)
	}
	now = now.Add(time.Second)
	w(`{"level":"info","destination":"b","sop_instance_uid":"1.2.3.99","message":"export: delivered"}`)
	s, _ = j.Series(series)
	if s.State() != "delivered" || s.DeliveredIn() != now.Sub(lastSlice) {
		t.Fatalf("replayed and delivered: %s in %v, want %v", s.State(), s.DeliveredIn(), now.Sub(lastSlice))
	}
	// A late instance reopens the series.
	w(`{"level":"debug","sop":"1.2.3.9","series":"1.2.3","outcome":"stored","message":"ingest: c-store"}`)
	if s, _ = j.Series(series); s.State() != "receiving" || s.Received != 5 {
		t.Fatalf("reopened: %s %+v", s.State(), s)
	}
	w(`not json`)
	w(`{"level":"info","calling_ae":"MR1","message":"association ended"}`)
	w(`{"level":"info","calling_ae":"MR1","message":"association ended"}`)
	if n := j.CallingAEs()["MR1"]; n != 2 {
		t.Fatalf("associations today from MR1: %d", n)
	}
	now = now.Add(24 * time.Hour)
	if n := len(j.CallingAEs()); n != 0 {
		t.Fatalf("yesterday's associations still counted: %d", n)
	}
}

func TestJournalBounded(t *testing.T) {
	j := NewJournal(JournalOptions{MaxSeries: 3, MaxEvents: 4})
	for i := 0; i < 5; i++ {
		for k := 0; k < 10; k++ {
			j.Write([]byte(fmt.Sprintf(`{"level":"warn","series":"s%d","message":"m%d"}`+"\n", i, k)))
		}
	}
	all := j.All()
	if len(all) != 3 {
		t.Fatalf("%d series kept, want 3", len(all))
	}
	if _, ok := j.Series("s0"); ok {
		t.Error("the oldest series was not forgotten")
	}
	s, _ := j.Series("s4")
	if len(s.Events) != 4 || s.Events[3].Message != "m9" || s.Problem != "m9" {
		t.Errorf("events %d, last %+v", len(s.Events), s.Events[len(s.Events)-1])
	}
}

// TestJournalEarlyExport: the export queue may deliver (or fail) before the
// finaliser logs the SEG's UID; those lines still count for the series.
func TestJournalEarlyExport(t *testing.T) {
	j := NewJournal(JournalOptions{})
	w := func(s string) { j.Write([]byte(s + "\n")) }
	w(`{"level":"debug","sop":"1.1","series":"S","outcome":"stored","message":"ingest: c-store"}`)
	w(`{"level":"info","series":"S","version":1,"reason":"timeout","message":"ingest: series complete"}`)
	w(`{"level":"info","destination":"a","sop_instance_uid":"SEG1","message":"export: delivered"}`)
	w(`{"level":"warn","destination":"b","sop_instance_uid":"SEG1","error":"refused","message":"export: delivery failed, will retry"}`)
	w(`{"level":"info","destination":"a","sop_instance_uid":"SC1","message":"export: delivered"}`)
	w(`{"level":"info","series":"S","version":1,"slices":1,"destinations":["a","b"],"seg":"SEG1","message":"output: series finalised"}`)
	s, _ := j.Series("S")
	if _, ok := s.Delivered["a"]; !ok || s.Retries != 1 || s.State() != "delivering" {
		t.Fatalf("early export lines lost: delivered %v, retries %d, state %s", s.Delivered, s.Retries, s.State())
	}
	w(`{"level":"error","destination":"b","sop_instance_uid":"SEG1","error":"refused","message":"export: gave up, job dead-lettered"}`)
	if s, _ = j.Series("S"); len(s.Pending()) != 0 || s.State() != "failed" {
		t.Fatalf("dead destination still pending: %v %s", s.Pending(), s.State())
	}
}

// TestJournalFindings: a finding-level finalised line (lists of SEG and SR
// UIDs, a findings count) tracks the SEG's delivery, and the report's when a
// series has no finding and so no SEG.
func TestJournalFindings(t *testing.T) {
	j := NewJournal(JournalOptions{Now: time.Now})
	w := func(s string) { j.Write([]byte(s + "\n")) }
	w(`{"level":"info","series":"1.1","version":1,"model":"mr","slices":8,"stacks":1,"objects":10,"destinations":["a"],"seg":["1.1.9"],"sr":["1.1.8"],"findings":2,"message":"output: series finalised"}`)
	w(`{"level":"info","series":"2.2","version":1,"model":"mr","slices":8,"stacks":1,"objects":2,"destinations":["a"],"seg":[],"sr":["2.2.8"],"findings":0,"message":"output: series finalised"}`)
	w(`{"level":"info","destination":"a","sop_instance_uid":"2.2.8","message":"export: delivered"}`)
	s, _ := j.Series("1.1")
	if !s.HasFindings || s.Findings != 2 || s.SEG != "1.1.9" || len(s.Pending()) != 1 {
		t.Errorf("series with findings: %+v", s)
	}
	s, _ = j.Series("2.2")
	if !s.HasFindings || s.Findings != 0 || s.SEG != "2.2.8" || len(s.Pending()) != 0 {
		t.Errorf("series without a finding: %+v", s)
	}
}
