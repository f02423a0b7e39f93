package ingest

import (
	"context"
	"fmt"
	"math"
	"math/rand"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"anomalynode/configs"
)

// refs makes single-frame instance records at the given positions.
func refs(pos ...[3]float64) []instanceRef {
	out := make([]instanceRef, len(pos))
	for i, p := range pos {
		out[i] = instanceRef{SOP: fmt.Sprint(i), Frames: 1, Pos: []float64{p[0], p[1], p[2]}}
	}
	return out
}

// line returns n positions origin + k*spacing*dir (dir normalised) for the
// indices k of keep (all of 0..n-1 when keep is nil).
func line(origin, dir [3]float64, spacing float64, n int, keep []int) [][3]float64 {
	l := math.Sqrt(dot(dir, dir))
	if keep == nil {
		for k := range n {
			keep = append(keep, k)
		}
	}
	var out [][3]float64
	for _, k := range keep {
		d := float64(k) * spacing / l
		out = append(out, [3]float64{origin[0] + d*dir[0], origin[1] + d*dir[1], origin[2] + d*dir[2]})
	}
	return out
}

func without(n int, drop ...int) []int {
	var keep []int
	for k := range n {
		skip := false
		for _, d := range drop {
			skip = skip || k == d
		}
		if !skip {
			keep = append(keep, k)
		}
	}
	return keep
}

func shuffled(p [][3]float64, seed int64) [][3]float64 {
	out := append([][3]float64(nil), p...)
	rand.New(rand.NewSource(seed)).Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// round2 rounds every coordinate to 0.01 mm, as scanners writing two
// decimals in ImagePositionPatient do.
func round2(p [][3]float64) [][3]float64 {
	out := make([][3]float64, len(p))
	for i, v := range p {
		for k := range 3 {
			out[i][k] = math.Round(v[k]*100) / 100
		}
	}
	return out
}

// TestStackOf is the rule itself: which sets of positions are a complete,
// gap-free regular stack, and why the others are not.
func TestStackOf(t *testing.T) {
	axial := [3]float64{0, 0, 1}
	tilt := [3]float64{0, math.Sin(20 * math.Pi / 180), math.Cos(20 * math.Pi / 180)} // gantry tilt
	oblique := [3]float64{0.3, -0.5, 0.81}
	o := [3]float64{-125.3, -97.8, -40.25}
	twice := func(p [][3]float64) [][3]float64 { return append(append([][3]float64(nil), p...), p...) }
	multiFrame := refs(line(o, axial, 1, 5, nil)...)
	multiFrame[2].Frames = 3
	noPos := refs(line(o, axial, 1, 5, nil)...)
	noPos[4].Pos = nil
	nan := refs(line(o, axial, 1, 5, nil)...)
	nan[1].Pos[2] = math.NaN()
	cases := []struct {
		name      string
		ins       []instanceRef
		why       string // "" = complete; else a substring of Why
		positions int
		implied   int
		per       int
	}{
		{"axial, in order", refs(line(o, axial, 1.25, 12, nil)...), "", 12, 12, 1},
		{"axial, shuffled", refs(shuffled(line(o, axial, 1.25, 12, nil), 1)...), "", 12, 12, 1},
		{"axial, descending", refs(line(o, [3]float64{0, 0, -1}, 5, 6, nil)...), "", 6, 6, 1},
		{"sagittal", refs(shuffled(line(o, [3]float64{1, 0, 0}, 0.9, 20, nil), 2)...), "", 20, 20, 1},
		{"coronal", refs(line(o, [3]float64{0, 1, 0}, 3, 7, nil)...), "", 7, 7, 1},
		{"tilted stack", refs(shuffled(line(o, tilt, 0.625, 40, nil), 3)...), "", 40, 40, 1},
		{"oblique stack", refs(shuffled(line(o, oblique, 2, 15, nil), 4)...), "", 15, 15, 1},
		{"oblique, positions rounded to 0.01 mm", refs(round2(line(o, oblique, 0.5, 30, nil))...), "", 30, 30, 1},
		{"3 slices, the minimum", refs(line(o, axial, 1, 3, nil)...), "", 3, 3, 1},
		{"two echoes at every position", refs(shuffled(twice(line(o, axial, 2, 8, nil)), 5)...), "", 8, 8, 2},
		{"gap in the middle", refs(shuffled(line(o, axial, 1.25, 12, without(12, 5)), 6)...), "gaps: 11 of 12", 11, 12, 0},
		{"two gaps, tilted", refs(line(o, tilt, 1, 10, without(10, 2, 7))...), "gaps: 8 of 10", 8, 10, 0},
		// Odd slices first (interleaved sending): indistinguishable from a
		// complete stack at twice the spacing; only the settle time protects.
		{"every other slice so far", refs(line(o, axial, 1, 11, []int{0, 2, 4, 6, 8})...), "", 5, 5, 1},
		{"irregular spacing", refs(line(o, axial, 1, 1, nil)[0], [3]float64{o[0], o[1], o[2] + 1}, [3]float64{o[0], o[1], o[2] + 2.5}, [3]float64{o[0], o[1], o[2] + 3.2}), "irregular", 4, 0, 0},
		{"spacing off by 5 %", refs(line(o, axial, 1, 1, nil)[0], [3]float64{o[0], o[1], o[2] + 2}, [3]float64{o[0], o[1], o[2] + 4.1}), "irregular", 3, 0, 0},
		{"duplicate position", refs(append(line(o, axial, 1, 6, nil), line(o, axial, 1, 6, nil)[3])...), "unequal instance counts", 6, 6, 0},
		{"two stacks of different orientation", refs(append(line(o, axial, 1, 5, nil), line(o, [3]float64{1, 0, 0}, 1, 5, nil)[1:]...)...), "not on one line", 0, 0, 0},
		{"zigzag", refs([3]float64{0, 0, 0}, [3]float64{1, 0, 1}, [3]float64{0, 0, 2}, [3]float64{1, 0, 3}), "not on one line", 0, 0, 0},
		{"2 slices", refs(line(o, axial, 1, 2, nil)...), "fewer than 3", 0, 0, 0},
		{"3 instances at 2 positions", refs(append(line(o, axial, 1, 2, nil), o)...), "2 distinct positions", 2, 2, 0},
		{"one position", refs(o, o, o), "one position", 0, 0, 0},
		{"multi-frame instance", multiFrame, "multi-frame", 0, 0, 0},
		{"missing position", noPos, "without ImagePositionPatient", 0, 0, 0},
		{"NaN position", nan, "non-finite", 0, 0, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := stackOf(tc.ins)
			if tc.why == "" && st.Why != "" {
				t.Fatalf("not complete: %s (%+v)", st.Why, st)
			}
			if tc.why != "" && !strings.Contains(st.Why, tc.why) {
				t.Fatalf("why %q, want it to contain %q (%+v)", st.Why, tc.why, st)
			}
			if tc.positions != 0 && st.Positions != tc.positions {
				t.Errorf("positions %d, want %d", st.Positions, tc.positions)
			}
			if tc.implied != 0 && st.Implied != tc.implied {
				t.Errorf("implied %d, want %d", st.Implied, tc.implied)
			}
			if tc.why == "" && st.PerPosition != tc.per {
				t.Errorf("per position %d, want %d", st.PerPosition, tc.per)
			}
		})
	}
}

// TestCompletionReasonImplied checks the order of the rules on a fixed clock:
// not before the settle time, "quiet" at the timeout, nothing while an
// announced count is not reached or a slice is unprocessed, and never with
// settle 0.
func TestCompletionReasonImplied(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	settle := 300 * time.Millisecond
	svc := &Service{cfg: configs.Ingest{SeriesTimeout: time.Minute, ImpliedSettle: &settle}}
	regular := func() *seriesState {
		ins := refs(line([3]float64{}, [3]float64{0, 0, 1}, 1, 6, nil)...)
		for i := range ins {
			ins[i].Done = true
		}
		return &seriesState{Instances: ins, LastSeen: t0}
	}
	st := regular()
	for _, tc := range []struct {
		after time.Duration
		want  string
	}{{0, ""}, {299 * time.Millisecond, ""}, {settle, "implied"}, {59 * time.Second, "implied"}, {time.Minute, "quiet"}} {
		if got := svc.completionReason(st, t0.Add(tc.after)); got != tc.want {
			t.Errorf("%v after the last slice: %q, want %q", tc.after, got, tc.want)
		}
	}
	st = regular()
	st.Instances[3].Done = false
	if got := svc.completionReason(st, t0.Add(time.Second)); got != "" {
		t.Errorf("with an unprocessed slice: %q", got)
	}
	st = regular()
	st.Expected = 10
	if got := svc.completionReason(st, t0.Add(time.Second)); got != "" {
		t.Errorf("with 6 of 10 announced: %q", got)
	}
	// A rule's shorter series_timeout caps the settle time: quiet wins.
	st = regular()
	st.Decision.SeriesTimeout = 200 * time.Millisecond
	if got := svc.completionReason(st, t0.Add(200*time.Millisecond)); got != "quiet" {
		t.Errorf("rule timeout below the settle time: %q, want quiet", got)
	}
	zero := time.Duration(0)
	svc.cfg.ImpliedSettle = &zero
	if got := svc.completionReason(regular(), t0.Add(59*time.Second)); got != "" {
		t.Errorf("settle 0: %q, want nothing before the timeout", got)
	}
	// A rule's own settle time replaces the node's, 0s included.
	st = regular()
	ruleSettle := 2 * time.Second
	st.Decision.ImpliedSettle = &ruleSettle
	if got := svc.completionReason(st, t0.Add(time.Second)); got != "" {
		t.Errorf("rule settle 2s, 1s quiet (node's settle 0): %q, want nothing", got)
	}
	if got := svc.completionReason(st, t0.Add(ruleSettle)); got != "implied" {
		t.Errorf("rule settle 2s, 2s quiet: %q, want implied", got)
	}
	svc.cfg.ImpliedSettle = &settle
	st.Decision.ImpliedSettle = &zero
	if got := svc.completionReason(st, t0.Add(59*time.Second)); got != "" {
		t.Errorf("rule settle 0s under a node settle of %v: %q, want nothing before the timeout", settle, got)
	}
	svc.cfg.ImpliedSettle = nil // a hand-built config: the default applies
	if got := svc.completionReason(regular(), t0.Add(configs.DefaultImpliedSettle)); got != "implied" {
		t.Errorf("default settle: %q, want implied", got)
	}
}

// impliedService is newTestService with the given series timeout and settle
// time, and its metrics registry.
func impliedService(t *testing.T, dir string, timeout, settle time.Duration) (*Service, *JS, *prometheus.Registry) {
	t.Helper()
	cfg := testConfig(t, dir)
	cfg.Ingest.SeriesTimeout = timeout
	cfg.Ingest.ImpliedSettle = &settle
	ctx := context.Background()
	js, err := OpenJetStream(ctx, cfg.NATS, cfg.Node.DataDir, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { js.Close() })
	reg := prometheus.NewRegistry()
	svc, err := NewService(ctx, js, cfg, testLogger(t), reg)
	if err != nil {
		t.Fatal(err)
	}
	svc.tickEvery = 20 * time.Millisecond
	return svc, js, reg
}

func run(t *testing.T, svc *Service, c Consumers) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { svc.Run(ctx, c); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func completions(rec *recorder) []*SeriesCompletion {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]*SeriesCompletion(nil), rec.completions...)
}

// TestImpliedOutOfOrder: a full regular volume arriving shuffled completes
// once, as "implied", after the settle time and long before series_timeout;
// the reason is counted in the metric.
func TestImpliedOutOfOrder(t *testing.T) {
	const settle = 300 * time.Millisecond
	svc, _, reg := impliedService(t, t.TempDir(), time.Minute, settle)
	rec := &recorder{}
	run(t, svc, Consumers{Slices: rec, Completions: rec})
	// Shuffled, but the two extremes first: then no set of slices seen before
	// the last is gap-free, so a premature completion cannot come from a slow
	// machine (each prefix is checked below), only from a wrong rule.
	order := append([]int{11, 0}, rand.New(rand.NewSource(7)).Perm(10)...)
	for i := 2; i < len(order); i++ {
		order[i]++
	}
	for n := 3; n < len(order); n++ {
		var pos [][3]float64
		for _, k := range order[:n] {
			pos = append(pos, [3]float64{0, 0, 1.5 * float64(k)})
		}
		if stackOf(refs(pos...)).Why == "" {
			t.Fatalf("test order %v: its first %d slices are a complete stack", order, n)
		}
	}
	for _, k := range order {
		accept(t, svc, inst{series: "7.1", sop: fmt.Sprintf("7.1.%d", k), number: k + 1, z: 1.5 * float64(k)})
	}
	sent := time.Now()
	waitFor(t, 20*time.Second, "the implied completion", func() bool { return len(completions(rec)) == 1 })
	took := time.Since(sent)
	time.Sleep(3 * settle)
	cs := completions(rec)
	if len(cs) != 1 {
		t.Fatalf("%d completions, want 1", len(cs))
	}
	c := cs[0]
	if c.Reason != "implied" || c.Version != 1 || len(c.Instances) != 12 || c.ImpliedCount != 12 {
		t.Fatalf("completion: reason %q version %d, %d instances, implied %d", c.Reason, c.Version, len(c.Instances), c.ImpliedCount)
	}
	if took < settle {
		t.Fatalf("completed %v after the last slice, before the settle time %v", took, settle)
	}
	t.Logf("completed %v after the last slice was stored (settle %v, series_timeout 1m)", took, settle)
	if v := counterValue(svc.m.completed.WithLabelValues("implied")); v != 1 {
		t.Fatalf("series_completed_total{reason=implied} = %v, want 1", v)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				found = found || mf.GetName() == "anomalynode_ingest_series_completed_total" && l.GetValue() == "implied" && m.GetCounter().GetValue() == 1
			}
		}
	}
	if !found {
		t.Fatal("registry lacks anomalynode_ingest_series_completed_total{reason=\"implied\"} 1")
	}
}

// TestImpliedInOrderStreaming: slices sent in spatial order, each a regular
// stack with what came before, a little apart (less than the settle time):
// exactly one completion at the end, version 1, no re-opened series.
func TestImpliedInOrderStreaming(t *testing.T) {
	const settle = 600 * time.Millisecond
	svc, _, _ := impliedService(t, t.TempDir(), time.Minute, settle)
	rec := &recorder{}
	run(t, svc, Consumers{Slices: rec, Completions: rec})
	const n = 8
	for k := range n {
		accept(t, svc, inst{series: "7.2", sop: fmt.Sprintf("7.2.%d", k), number: k + 1, z: -20 + 2.5*float64(k)})
		waitFor(t, 10*time.Second, "slice acknowledged", func() bool { return rec.ackedCount() == k+1 })
		if c := len(completions(rec)); c != 0 {
			t.Fatalf("completed after %d of %d slices sent in order", k+1, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	waitFor(t, 20*time.Second, "the completion", func() bool { return len(completions(rec)) >= 1 })
	time.Sleep(2 * settle)
	cs := completions(rec)
	if len(cs) != 1 {
		t.Fatalf("%d completions, want 1", len(cs))
	}
	if c := cs[0]; c.Reason != "implied" || c.Version != 1 || len(c.Instances) != n {
		t.Fatalf("completion: reason %q version %d, %d instances", c.Reason, c.Version, len(c.Instances))
	}
	for _, sl := range rec.slices {
		if sl.SeriesVersion != 1 {
			t.Fatalf("slice %s in version %d: the series was re-opened", sl.SOPInstanceUID, sl.SeriesVersion)
		}
	}
}

// TestImpliedNotForGapsOrIrregular: a volume with one slice missing and one
// with irregular spacing do not complete by their positions; they wait for
// series_timeout ("quiet"), although the settle time passed long before.
func TestImpliedNotForGapsOrIrregular(t *testing.T) {
	const timeout = 1500 * time.Millisecond
	svc, _, _ := impliedService(t, t.TempDir(), timeout, 100*time.Millisecond)
	rec := &recorder{}
	run(t, svc, Consumers{Slices: rec, Completions: rec})
	for _, k := range without(10, 4) {
		accept(t, svc, inst{series: "7.3", sop: fmt.Sprintf("7.3.%d", k), number: k + 1, z: float64(k)})
	}
	for k, z := range []float64{0, 1, 2, 3.5, 4.5, 5.5} {
		accept(t, svc, inst{series: "7.4", sop: fmt.Sprintf("7.4.%d", k), number: k + 1, z: z})
	}
	sent := time.Now()
	waitFor(t, 20*time.Second, "two completions", func() bool { return len(completions(rec)) == 2 })
	took := time.Since(sent)
	for _, c := range completions(rec) {
		if c.Reason != "quiet" {
			t.Errorf("series %s completed as %q, want quiet", c.SeriesInstanceUID, c.Reason)
		}
		if c.SeriesInstanceUID == "7.3" && (len(c.Instances) != 9 || c.ImpliedCount != 10) {
			t.Errorf("gap series: %d instances, implied %d, want 9 and 10", len(c.Instances), c.ImpliedCount)
		}
	}
	if took < timeout {
		t.Fatalf("completed %v after the last slice, before series_timeout %v", took, timeout)
	}
}

// TestImpliedSettleZeroDisables: implied_settle 0 leaves a complete regular
// volume to series_timeout.
func TestImpliedSettleZeroDisables(t *testing.T) {
	const timeout = time.Second
	svc, _, _ := impliedService(t, t.TempDir(), timeout, 0)
	rec := &recorder{}
	run(t, svc, Consumers{Slices: rec, Completions: rec})
	for k := range 6 {
		accept(t, svc, inst{series: "7.5", sop: fmt.Sprintf("7.5.%d", k), number: k + 1, z: float64(k)})
	}
	sent := time.Now()
	waitFor(t, 20*time.Second, "the completion", func() bool { return len(completions(rec)) == 1 })
	if c := completions(rec)[0]; c.Reason != "quiet" || time.Since(sent) < timeout {
		t.Fatalf("reason %q after %v, want quiet after at least %v", c.Reason, time.Since(sent), timeout)
	}
}

// TestImpliedAfterRestart: the positions live in the series record, so a
// node restarted after every slice was processed completes the series by its
// implied count without seeing any slice again.
func TestImpliedAfterRestart(t *testing.T) {
	dir := t.TempDir()
	// First run: settle as long as the timeout, so nothing completes here.
	svc, js, _ := impliedService(t, dir, time.Minute, time.Minute)
	rec := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { svc.Run(ctx, Consumers{Slices: rec, Completions: rec}); close(done) }()
	for k := range 5 {
		accept(t, svc, inst{series: "7.6", sop: fmt.Sprintf("7.6.%d", 4-k), number: 5 - k, z: 3 * float64(4-k)})
	}
	waitFor(t, 10*time.Second, "5 slices acknowledged", func() bool { return rec.ackedCount() == 5 })
	cancel()
	<-done
	js.Close()
	if c := len(completions(rec)); c != 0 {
		t.Fatalf("%d completions before the restart", c)
	}

	svc2, _, _ := impliedService(t, dir, time.Minute, 200*time.Millisecond)
	rec2 := &recorder{}
	run(t, svc2, Consumers{Slices: rec2, Completions: rec2})
	waitFor(t, 10*time.Second, "completion after restart", func() bool { return len(completions(rec2)) == 1 })
	if c := completions(rec2)[0]; c.Reason != "implied" || len(c.Instances) != 5 || c.Version != 1 {
		t.Fatalf("after restart: reason %q, %d instances, version %d", c.Reason, len(c.Instances), c.Version)
	}
	if s, _ := rec2.counts(); s != 0 {
		t.Fatalf("%d slices redelivered after the restart", s)
	}
}
