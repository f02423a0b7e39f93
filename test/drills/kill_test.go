package drills

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"anomalynode/internal/peers"
)

// killPoint is a moment to SIGKILL the node at: when its metrics say the
// pipeline is in that stage.
type killPoint struct {
	stage string
	ready func(m peers.Metrics) bool
}

// TestKill9Torture: while several associations send several series, the node
// is SIGKILLed while receiving, inferring, finalising and exporting, and
// restarted on the same data folder; the senders re-send what was not
// acknowledged. Afterwards every acknowledged instance has been scored (its
// heat map is in the folder destination), every source series has exactly one
// SEG per version, and the work and export queues are empty.
func TestKill9Torture(t *testing.T) {
	setup(t)
	c, out := defaultConfig(t)
	// ingest.ack_wait stays at its default (30s): work the killed process
	// held must come back at the restart, not after ack_wait.
	n := startNode(t, c)

	// Each round sends nSeries new series and kills the node at the four
	// points; DRILLS_KILL_ROUNDS repeats it.
	rounds := envInt("DRILLS_KILL_ROUNDS", 1)
	perRound, nSlices := 4, 10*scale()
	nSeries := rounds * perRound
	series := synthSeries(t, nSeries, nSlices, 64, 64)
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seed), 7))
	t.Logf("seed %d", seed)

	var mu sync.Mutex
	acked := map[string]string{} // source SOP Instance UID -> file
	uid := map[string]string{}   // file -> SOP Instance UID
	seriesOf := map[string]int{} // SOP Instance UID -> series index
	for i, files := range series {
		for _, f := range files {
			u := fileMeta(t, f).MediaStorageSOPInstanceUID
			uid[f], seriesOf[u] = u, i
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(3*rounds)*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	sendErrs := make([]error, nSeries)
	send := func(i int, files []string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			left := files
			for attempt := 0; len(left) > 0; attempt++ {
				if ctx.Err() != nil {
					sendErrs[i] = fmt.Errorf("series %d: %d instances never acknowledged", i, len(left))
					return
				}
				// Paced so that the kills find instances still arriving.
				res := storePaced(ctx, c.dimse, fmt.Sprintf("MOD%d", i), left, 60*time.Millisecond)
				mu.Lock()
				done := map[string]bool{}
				for _, f := range res.acked {
					acked[uid[f]] = f
					done[f] = true
				}
				mu.Unlock()
				var rest []string
				for _, f := range left {
					if !done[f] {
						rest = append(rest, f)
					}
				}
				left = rest
				if len(left) > 0 {
					time.Sleep(150 * time.Millisecond)
				}
			}
		}()
	}

	points := []killPoint{
		{"receiving", func(m peers.Metrics) bool {
			return m.Sum("anomalynode_ingest_instances_stored_total") >= float64(2+rng.IntN(6))
		}},
		{"inferring", func(m peers.Metrics) bool { return m.Sum("anomalynode_slices_scored_total") >= 1 }},
		{"finalising", func(m peers.Metrics) bool { return m.Sum("anomalynode_ingest_series_completed_total") >= 1 }},
		{"exporting", func(m peers.Metrics) bool { return m.Sum("anomalynode_export_delivered_total") >= 1 }},
	}
	var killed []string
	for i := 0; i < rounds*len(points); i++ {
		p := points[i%len(points)]
		if i%len(points) == 0 {
			r := i / len(points)
			for j := r * perRound; j < (r+1)*perRound; j++ {
				send(j, series[j])
			}
		}
		deadline := time.Now().Add(40 * time.Second)
		hit := false
		for time.Now().Before(deadline) {
			m, err := peers.ScrapeMetrics("http://" + c.admin + "/metrics")
			if err == nil && p.ready(m) {
				hit = true
				break
			}
			time.Sleep(time.Duration(20+rng.IntN(40)) * time.Millisecond)
		}
		roundEnd := i%len(points) == len(points)-1
		if !hit {
			t.Logf("kill point %q not reached in 40s; not killed there", p.stage)
			if roundEnd {
				wg.Wait()
			}
			continue
		}
		time.Sleep(time.Duration(rng.IntN(150)) * time.Millisecond)
		m, _ := peers.ScrapeMetrics("http://" + c.admin + "/metrics")
		n.kill9()
		killed = append(killed, fmt.Sprintf("%s (stored %v, scored %v, series done %v, exported %v)", p.stage,
			m.Sum("anomalynode_ingest_instances_stored_total"), m.Sum("anomalynode_slices_scored_total"),
			m.Sum("anomalynode_ingest_series_completed_total"), m.Sum("anomalynode_export_delivered_total")))
		time.Sleep(time.Duration(100+rng.IntN(400)) * time.Millisecond)
		n.start()
		if roundEnd {
			wg.Wait() // the round's series are all acknowledged
		}
	}
	t.Logf("SIGKILLs: %d\n  %s", len(killed), strings.Join(killed, "\n  "))
	if len(killed) < 3*rounds {
		t.Errorf("only %d of %d kill points reached", len(killed), rounds*len(points))
	}
	wg.Wait()
	for _, err := range sendErrs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(acked) != nSeries*nSlices {
		t.Fatalf("%d instances acknowledged, want %d", len(acked), nSeries*nSlices)
	}

	// Every acknowledged instance gets its heat map and a frame in the
	// latest SEG of its series; the queues drain.
	var outs []output
	waitFor(t, 120*time.Second, func() string {
		missing := missingHeatMaps(outs, acked)
		m := n.metrics()
		return fmt.Sprintf("%d acknowledged instances without a heat map (e.g. %v); work queue %v, export queue %v, open series %v",
			len(missing), first(missing, 3), m.Sum("anomalynode_ingest_queue_depth"), m.Sum("anomalynode_export_queue_depth"),
			m.Sum("anomalynode_ingest_series_open"))
	}, func() bool {
		outs = readOutputs(t, out)
		if len(missingHeatMaps(outs, acked)) > 0 {
			return false
		}
		m := n.metrics()
		return m.Sum("anomalynode_ingest_queue_depth") == 0 && m.Sum("anomalynode_export_queue_depth") == 0 &&
			m.Sum("anomalynode_inference_queue_depth") == 0 && m.Sum("anomalynode_ingest_series_open") == 0
	})
	checkSEGs(t, outs, acked, seriesOf, nSeries)
	n.stop()

	// Nothing dead-lettered: exports list on the stopped node's store.
	b, err := runBin("exports", "list", "--config", n.cfgPath, "--json")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(b), "\n") {
		var j map[string]any
		if json.Unmarshal([]byte(l), &j) == nil && j["seq"] != nil {
			t.Errorf("dead-lettered export after the torture: %s", l)
		}
	}
	if st, err := os.Stat(out); err != nil || !st.IsDir() {
		t.Fatalf("no output folder: %v", err)
	}
}

func first(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// missingHeatMaps lists acknowledged source instances no SC refers to.
func missingHeatMaps(outs []output, acked map[string]string) []string {
	have := map[string]bool{}
	for _, o := range outs {
		if o.sopClass == segClass {
			continue
		}
		for _, r := range o.refs {
			have[r] = true
		}
	}
	var missing []string
	for u := range acked {
		if !have[u] {
			missing = append(missing, u)
		}
	}
	sort.Strings(missing)
	return missing
}

// checkSEGs: per source series one SEG series, exactly one SEG per version,
// and the latest version has a frame for every acknowledged instance.
func checkSEGs(t *testing.T, outs []output, acked map[string]string, seriesOf map[string]int, nSeries int) {
	t.Helper()
	type segv struct {
		segSeries string
		version   int
	}
	perVersion := map[segv][]string{}
	segSeriesOf := map[int]map[string]bool{}
	latest := map[int]output{}
	for _, o := range outs {
		if o.sopClass != segClass {
			continue
		}
		src := -1
		for _, r := range o.refs {
			if i, ok := seriesOf[r]; ok {
				src = i
				break
			}
		}
		if src < 0 {
			t.Errorf("SEG %s refers to no source instance", o.path)
			continue
		}
		k := segv{o.series, o.instanceNumber}
		perVersion[k] = append(perVersion[k], o.sopInstance)
		if segSeriesOf[src] == nil {
			segSeriesOf[src] = map[string]bool{}
		}
		segSeriesOf[src][o.series] = true
		if l, ok := latest[src]; !ok || o.instanceNumber > l.instanceNumber {
			latest[src] = o
		}
	}
	for k, sops := range perVersion {
		if len(sops) != 1 {
			t.Errorf("SEG series %s version %d: %d SEG instances %v, want exactly one", k.segSeries, k.version, len(sops), sops)
		}
	}
	versions := map[int]int{}
	for k := range perVersion {
		for src, ss := range segSeriesOf {
			if ss[k.segSeries] {
				versions[src]++
			}
		}
	}
	for i := 0; i < nSeries; i++ {
		if len(segSeriesOf[i]) != 1 {
			t.Errorf("source series %d: %d SEG series, want 1", i, len(segSeriesOf[i]))
			continue
		}
		refs := map[string]bool{}
		for _, r := range latest[i].refs {
			refs[r] = true
		}
		for u := range acked {
			if seriesOf[u] == i && !refs[u] {
				t.Errorf("source series %d: latest SEG (version %d) has no frame for acknowledged instance %s", i, latest[i].instanceNumber, u)
			}
		}
	}
	t.Logf("SEG versions per source series: %v", versions)
}

// TestStopDuringExport: a graceful stop (SIGTERM) or a crash (SIGKILL) while
// outputs are being exported to an archive, then a restart: every output
// reaches the archive within a minute and nothing is dead-lettered (a
// delivery finished during the shutdown grace must not lose its job or its
// object; jobs a dead process held must not block the destination for long).
func TestStopDuringExport(t *testing.T) {
	for _, sig := range []string{"SIGTERM", "SIGKILL"} {
		t.Run(sig, func(t *testing.T) { stopDuringExport(t, sig) })
	}
}

func stopDuringExport(t *testing.T, sig string) {
	setup(t)
	o := peers.StartOrthanc(t, nil, nil)
	c, _ := defaultConfig(t)
	// A slow link in front of the archive, so that the stop finds
	// deliveries in flight.
	proxy := slowProxy(t, fmt.Sprintf("127.0.0.1:%d", o.DicomPort), 30*time.Millisecond)
	c.dests = []dest{{name: "archive", address: proxy, calledAE: o.AET}}
	n := startNode(t, c)
	slices := 24 * scale()
	files := synthSeries(t, 1, slices, 64, 64)[0]
	if res := storeFiles(context.Background(), c.dimse, "MODALITY", files); res.err != nil || len(res.acked) != slices {
		t.Fatalf("send: %d of %d acknowledged: %v", len(res.acked), slices, res.err)
	}
	var m peers.Metrics
	waitFor(t, 60*time.Second, func() string { return "no export started" }, func() bool {
		m = n.metrics()
		return m.Sum("anomalynode_export_delivered_total") >= 1
	})
	if sig == "SIGTERM" {
		n.stop()
	} else {
		n.kill9()
	}
	t.Logf("%s after %v of %d objects delivered", sig, m.Sum("anomalynode_export_delivered_total"), slices+1)
	n.start()
	restarted := time.Now()
	// Wait for the archive to hold everything and the queues to be empty. The
	// depth gauges alone are not enough: right after a start they have no
	// sample yet and read as 0.
	var ids []string
	waitFor(t, 60*time.Second, func() string {
		return fmt.Sprintf("Orthanc holds %d objects, want %d (SEG + %d SC); export queue %v, dead-lettered %v; node log:\n%s",
			len(ids), slices+1, slices, m.Sum("anomalynode_export_queue_depth"),
			m.Sum("anomalynode_export_dead_lettered_total"), grepLog(n, "drill", "export: d", "ack failed", "error"))
	}, func() bool {
		m = n.metrics()
		if err := o.GetJSON("/instances", &ids); err != nil {
			return false
		}
		return len(ids) == slices+1 && m.Sum("anomalynode_export_queue_depth") == 0 && m.Sum("anomalynode_ingest_queue_depth") == 0
	})
	t.Logf("all %d objects delivered and the queues drained %s after the restart", len(ids), time.Since(restarted).Round(100*time.Millisecond))
	if v := m.Sum("anomalynode_export_dead_lettered_total"); v != 0 {
		t.Errorf("%v outputs dead-lettered after the restart; node log:\n%s", v, grepLog(n, "dead-lettered", "ack failed"))
	}
}

// grepLog returns the node's log lines containing any of subs.
func grepLog(n *node, subs ...string) string {
	b, _ := os.ReadFile(n.logPath)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		for _, s := range subs {
			if strings.Contains(l, s) {
				out = append(out, l)
				break
			}
		}
	}
	return tailStr(strings.Join(out, "\n"), 4000)
}

// slowProxy forwards TCP connections to target, sleeping before forwarding
// each chunk the client sends; it returns its address.
func slowProxy(t testing.TB, target string, delay time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer in.Close()
				out, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer out.Close()
				go func() { _, _ = io.Copy(in, out); in.Close() }()
				buf := make([]byte, 32<<10)
				for {
					k, err := in.Read(buf)
					if k > 0 {
						time.Sleep(delay)
						if _, werr := out.Write(buf[:k]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// TestSIGTERMDuringInference: a graceful stop while slices are being scored
// hands the unfinished work back (no waiting for ingest.ack_wait, left at its
// default here): after a restart every acknowledged instance gets its heat
// map within a minute and the queues drain.
func TestSIGTERMDuringInference(t *testing.T) {
	setup(t)
	c, out := defaultConfig(t)
	n := startNode(t, c)
	series := synthSeries(t, 2, 12*scale(), 64, 64)
	acked := map[string]string{}
	for i, files := range series {
		res := storeFiles(context.Background(), c.dimse, fmt.Sprintf("MOD%d", i), files)
		if res.err != nil || len(res.acked) != len(files) {
			t.Fatalf("send: %d of %d acknowledged: %v", len(res.acked), len(files), res.err)
		}
		for _, f := range files {
			acked[fileMeta(t, f).MediaStorageSOPInstanceUID] = f
		}
	}
	var m peers.Metrics
	waitFor(t, 60*time.Second, func() string { return "nothing scored" }, func() bool {
		m = n.metrics()
		return m.Sum("anomalynode_slices_scored_total") >= 1
	})
	n.stop()
	t.Logf("SIGTERM after %v of %d slices scored", m.Sum("anomalynode_slices_scored_total"), len(acked))
	n.start()
	restarted := time.Now()
	var outs []output
	waitFor(t, 60*time.Second, func() string {
		return fmt.Sprintf("%d acknowledged instances without a heat map; work queue %v, open series %v",
			len(missingHeatMaps(outs, acked)), m.Sum("anomalynode_ingest_queue_depth"), m.Sum("anomalynode_ingest_series_open"))
	}, func() bool {
		outs = readOutputs(t, out)
		m = n.metrics()
		return len(missingHeatMaps(outs, acked)) == 0 && m.Sum("anomalynode_ingest_queue_depth") == 0 &&
			m.Sum("anomalynode_export_queue_depth") == 0
	})
	t.Logf("all processed %s after the restart", time.Since(restarted).Round(100*time.Millisecond))
}
