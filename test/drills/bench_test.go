package drills

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// BenchmarkNode sends one 16-slice 64x64 series per iteration to a running
// node (one association, the dimse client) and waits for its SEG in the folder
// destination. It reports the time from the last slice acknowledged to the
// SEG file being there, slices/s through the whole node (C-STORE to every
// output delivered) and the node's peak RSS while serving (/proc VmRSS).
func BenchmarkNode(b *testing.B) {
	setup(b)
	c, out := defaultConfig(b)
	benchNode(b, c, out)
}

// BenchmarkNodeCluster is BenchmarkNode against a three-server JetStream
// cluster on loopback (nats.url listing all three, replicas 3), the
// scale-out setup: every write is replicated to a quorum before it is
// acknowledged. One node; its last-slice-to-SEG sits next to the embedded
// mode's in make bench.
func BenchmarkNodeCluster(b *testing.B) {
	setup(b)
	nc := startNATSCluster(b)
	c, out := defaultConfig(b)
	c.natsURL, c.replicas = nc.url(), 3
	benchNode(b, c, out)
}

// benchNode runs BenchmarkNode's measurement on a node configured by c,
// whose folder destination is out.
func benchNode(b *testing.B, c nodeConfig, out string) {
	const slices = 16
	n := startNode(b, c)
	series := synthSeries(b, max(b.N, 2), slices, 64, 64)
	rss := sampleRSS(n.pid(), 50*time.Millisecond)

	var latency time.Duration
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		files := series[i]
		seriesUID := readOutputs(b, files[0])[0].series
		study := readOutputs(b, files[0])[0].study
		res := storeFiles(context.Background(), c.dimse, "BENCH", files)
		last := time.Now()
		if res.err != nil || len(res.acked) != slices {
			b.Fatalf("send: %d of %d acknowledged: %v", len(res.acked), slices, res.err)
		}
		var seg string
		deadline := time.Now().Add(2 * time.Minute)
		for {
			if seg == "" {
				seg = segOfSeries(n.logPath, seriesUID)
			}
			if seg != "" {
				if m, _ := filepath.Glob(filepath.Join(out, study, "*", seg+".dcm")); len(m) == 1 {
					break
				}
			}
			if time.Now().After(deadline) {
				b.Fatalf("no SEG for series %s after 2 minutes", seriesUID)
			}
			time.Sleep(5 * time.Millisecond)
		}
		latency += time.Since(last)
	}
	// Wait for every output (the SCs follow the SEG) before the rate.
	waitFor(b, 2*time.Minute, func() string { return "outputs not all delivered" }, func() bool {
		m := n.metrics()
		return m.Sum("anomalynode_export_delivered_total") >= float64(b.N*(slices+1)) && m.Sum("anomalynode_export_queue_depth") == 0
	})
	elapsed := time.Since(start)
	b.StopTimer()
	peak := rss.Stop()
	b.ReportMetric(float64(latency.Milliseconds())/float64(b.N), "last-slice-to-SEG-ms")
	b.ReportMetric(float64(b.N*slices)/elapsed.Seconds(), "slices/s")
	b.ReportMetric(float64(peak)/(1<<20), "serving-RSS-MB")
}

// segOfSeries finds the SEG SOP Instance UID the node logged for a series.
func segOfSeries(logPath, seriesUID string) string {
	f, err := os.Open(logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if !strings.Contains(l, "output: series finalised") || !strings.Contains(l, seriesUID) {
			continue
		}
		var v struct{ Seg string }
		if json.Unmarshal([]byte(l), &v) == nil && v.Seg != "" {
			return v.Seg
		}
	}
	return ""
}
