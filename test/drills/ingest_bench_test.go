package drills

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"anomalynode/internal/peers"
)

// BenchmarkStandardSender is what a standard sender sees (issue 15): dcmtk
// storescu (one association per process, waiting for each response,
// TCP_NODELAY=1) sends the same DRILLS_BENCH_SLICES (default 300) synthetic
// 512x512 16-bit MR slices, in one run, to dcmtk storescp (files, no flush),
// to Orthanc (default storage + SQLite index) and to the real node
// (`anomalynode serve`, embedded JetStream synced, the series routed to a
// model that scores it while it arrives). Every phase sends a copy with fresh
// UIDs. Reported: each receiver's instances/s and the node's ratios to them
// (one association: x storescp, x Orthanc; four concurrent associations:
// x storescp with four), and busy-x-idle: the node's rate while the model
// scores the backlog of the round's earlier phases, as a ratio to its idle
// rate. Each receiver gets the machine to itself: a round starts when the
// node has scored everything, and the node's one- and four-association
// phases (its idle rates) run with its slice consumer paused (nothing scores
// or tracks series; the embedded JetStream listens on loopback for the
// pause). Each receiver's count of stored instances is checked.
func BenchmarkStandardSender(b *testing.B) {
	setup(b)
	slices := envInt("DRILLS_BENCH_SLICES", 300)
	master := synthSeries(b, 1, slices, 512, 512)[0]
	originals := make([][]byte, len(master))
	for i, f := range master {
		data, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		originals[i] = data
	}
	phase := 0
	// fresh writes a copy of the series with new UIDs.
	fresh := func() []string {
		phase++
		dir := b.TempDir()
		files := make([]string, len(originals))
		for i, data := range originals {
			files[i] = filepath.Join(dir, fmt.Sprintf("IM%04d.dcm", i))
			if err := os.WriteFile(files[i], renameUIDs(data, phase), 0o644); err != nil {
				b.Fatal(err)
			}
		}
		return files
	}

	scp := peers.StartStoreSCP(b, "STORESCP")
	orthanc := peers.StartOrthanc(b, nil, nil)
	c, _ := defaultConfig(b)
	c.natsListen = fmt.Sprintf("127.0.0.1:%d", peers.FreePort(b))
	n := startNode(b, c)
	stored := func() float64 { return n.metrics().Sum("anomalynode_ingest_instances_stored_total") }
	nc, err := nats.Connect("nats://" + c.natsListen)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	// hold holds (or resumes) the node's slice consumer, the model's queue;
	// quiet waits until the node holds no slice (and, with all, until the
	// queue is empty too): nothing is scored any more.
	const workStream, sliceConsumer = "ANOMALYNODE_WORK", "slices"
	ctx := context.Background()
	hold := func(on bool) {
		var err error
		if on {
			_, err = js.PauseConsumer(ctx, workStream, sliceConsumer, time.Now().Add(time.Hour))
		} else {
			_, err = js.ResumeConsumer(ctx, workStream, sliceConsumer)
		}
		if err != nil {
			b.Fatalf("hold %v: %v", on, err)
		}
	}
	quiet := func(all bool) {
		var state string
		waitFor(b, 5*time.Minute, func() string { return "the node still scores: " + state }, func() bool {
			cons, err := js.Consumer(ctx, workStream, sliceConsumer)
			if err != nil {
				state = err.Error()
				return false
			}
			ci := cons.CachedInfo()
			state = fmt.Sprintf("%d slices held, %d queued", ci.NumAckPending, ci.NumPending)
			return ci.NumAckPending == 0 && (!all || ci.NumPending == 0)
		})
	}

	var r struct{ scp1, orthanc1, node1, accept, scp4, node4, busy []float64 }
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		one, four, busy := fresh(), fresh(), fresh()
		// Every receiver alone on the machine: the node has scored what
		// it had, and its queue is held while it receives (its idle rate).
		// Before each phase the disk is synced: the copies' 450 MB, and
		// what the receiver before wrote without flushing (storescp,
		// Orthanc), would otherwise be written back during the next
		// receiver's phase and charged to it.
		quiet(true)
		before := stored()
		send := func(addr, ae string, assoc int, files []string) float64 {
			syscall.Sync()
			return storescu(b, addr, ae, assoc, files)
		}
		r.scp1 = append(r.scp1, send(scp.Addr(), "STORESCP", 1, one))
		r.orthanc1 = append(r.orthanc1, send(fmt.Sprintf("127.0.0.1:%d", orthanc.DicomPort), orthanc.AET, 1, one))
		hold(true)
		quiet(false)
		m0 := n.metrics()
		r.node1 = append(r.node1, send(c.dimse, nodeAE, 1, one))
		m1 := n.metrics()
		// The node's own time per instance (receive to durable and
		// queued, inside the C-STORE handler) against what storescu sees.
		inside := (m1.Sum("anomalynode_ingest_store_seconds_sum") - m0.Sum("anomalynode_ingest_store_seconds_sum")) /
			(m1.Sum("anomalynode_ingest_store_seconds_count") - m0.Sum("anomalynode_ingest_store_seconds_count"))
		r.accept = append(r.accept, 1000*inside)
		r.scp4 = append(r.scp4, send(scp.Addr(), "STORESCP", 4, four))
		r.node4 = append(r.node4, send(c.dimse, nodeAE, 4, four))
		// Then the model has 2*slices to score: what a sender sees while
		// it does.
		hold(false)
		m := n.metrics()
		backlog := m.Sum("anomalynode_ingest_instances_stored_total") - m.Sum("anomalynode_slices_scored_total") - m.Sum("anomalynode_slices_failed_total")
		r.busy = append(r.busy, send(c.dimse, nodeAE, 1, busy))
		if backlog < float64(slices) {
			b.Logf("round %d: the model had only %v slices queued during the busy phase", i, backlog)
		}
		if got := stored() - before; got != float64(3*slices) {
			b.Fatalf("round %d: node stored %v instances, want %d", i, got, 3*slices)
		}
	}
	b.StopTimer()
	if ids, err := orthanc.Instances(); err != nil || len(ids) != b.N*slices {
		b.Fatalf("Orthanc holds %d instances (%v), want %d", len(ids), err, b.N*slices)
	}
	if files, _ := filepath.Glob(filepath.Join(scp.Dir, "*")); len(files) != 2*b.N*slices {
		b.Fatalf("storescp wrote %d files, want %d", len(files), 2*b.N*slices)
	}
	med := median
	b.ReportMetric(med(r.node1), "node-inst/s")
	b.ReportMetric(med(r.scp1), "storescp-inst/s")
	b.ReportMetric(med(r.orthanc1), "orthanc-inst/s")
	b.ReportMetric(med(ratios(r.node1, r.scp1)), "x-storescp")
	b.ReportMetric(med(ratios(r.node1, r.orthanc1)), "x-orthanc")
	b.ReportMetric(med(r.accept), "node-store-ms")
	b.ReportMetric(med(r.node4), "node-4assoc-inst/s")
	b.ReportMetric(med(r.scp4), "storescp-4assoc-inst/s")
	b.ReportMetric(med(ratios(r.node4, r.scp4)), "x-storescp-4assoc")
	b.ReportMetric(med(r.busy), "node-busy-inst/s")
	b.ReportMetric(med(ratios(r.busy, r.node1)), "busy-x-idle")
	b.Logf("per round (inst/s): node %v storescp %v orthanc %v | 4 assoc: node %v storescp %v | busy %v | node store ms %v",
		round1(r.node1), round1(r.scp1), round1(r.orthanc1), round1(r.node4), round1(r.scp4), round1(r.busy), round1(r.accept))
}

// storescu sends files to addr with assoc concurrent storescu processes (the
// files dealt round-robin) and returns instances/s over the wall time.
func storescu(b *testing.B, addr, calledAE string, assoc int, files []string) float64 {
	b.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		b.Fatal(err)
	}
	bin := peers.Tool(b, "storescu")
	var wg sync.WaitGroup
	errs := make([]error, assoc)
	start := time.Now()
	for k := 0; k < assoc; k++ {
		var part []string
		for i := k; i < len(files); i += assoc {
			part = append(part, files[i])
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(bin, append([]string{"-aet", "BENCH", "-aec", calledAE, host, port}, part...)...)
			cmd.Env = peers.DcmtkEnv()
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Run(); err != nil || bytes.Contains(out.Bytes(), []byte("E: ")) {
				errs[k] = fmt.Errorf("storescu to %s: %v\n%s", calledAE, err, tailStr(out.String(), 2000))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	for _, err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	return float64(len(files)) / elapsed.Seconds()
}

// renameUIDs returns a copy of a synthetic Part-10 file whose 2.25 UIDs (SOP
// instance, series, study, frame of reference) are changed in place at their
// 11th and 12th digits, the same length, so every phase sends new instances.
func renameUIDs(data []byte, phase int) []byte {
	out := bytes.Clone(data)
	root := []byte("2.25.")
	for i := 0; ; {
		j := bytes.Index(out[i:], root)
		if j < 0 {
			return out
		}
		p := i + j + len(root) + 10
		if p+1 < len(out) && isDigits(out[i+j+len(root):p+2]) {
			out[p], out[p+1] = '0'+byte(phase/10%10), '0'+byte(phase%10)
		}
		i = p
	}
}

func isDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func ratios(a, b []float64) []float64 {
	r := make([]float64, len(a))
	for i := range a {
		r[i] = a[i] / b[i]
	}
	return r
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func round1(v []float64) []string {
	r := make([]string, len(v))
	for i, x := range v {
		r[i] = strconv.FormatFloat(x, 'f', 0, 64)
	}
	return r
}
