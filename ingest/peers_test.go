package ingest

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"anomalynode/dimse"
	"anomalynode/internal/peers"
	"anomalynode/internal/synth"
)

// serveDIMSE runs a dimse.Server with the service as its C-STORE handler.
func serveDIMSE(t *testing.T, svc *Service) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	srv := dimse.NewServer(dimse.ServerConfig{AETitle: "NODE"}, svc, testLogger(t), nil)
	go func() { srv.Serve(ctx, l); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return l.Addr().String()
}

// TestStorescuIntoStore: dcmtk's storescu sends two synthetic series (one
// converted to implicit VR on the wire); every instance reaches the consumer,
// a re-send is recognised as duplicates, and below the free-space floor
// storescu is told A700 (out of resources).
func TestStorescuIntoStore(t *testing.T) {
	storescu := peers.Tool(t, "storescu")
	dir := t.TempDir()
	var files []string
	for s := 0; s < 2; s++ {
		m, err := synth.WriteSeries(filepath.Join(dir, fmt.Sprint(s)), synth.Options{Seed: uint64(s + 1), Slices: 5, Rows: 64, Cols: 64, Source: synth.SourcePhantom})
		if err != nil {
			t.Fatal(err)
		}
		for _, sl := range m.Slices {
			files = append(files, filepath.Join(dir, fmt.Sprint(s), sl.File))
		}
	}
	cfg := testConfig(t, filepath.Join(dir, "data"))
	cfg.Routes[0].Match.Modality = []string{"MR"}
	svc, _ := newTestService(t, cfg)
	addr := serveDIMSE(t, svc)
	host, port, _ := net.SplitHostPort(addr)
	send := func(args ...string) string {
		cmd := exec.Command(storescu, append(append([]string{"-v", "-aet", "MRI1", "-aec", "NODE"}, args...), host, port)...)
		cmd.Args = append(cmd.Args, files...)
		out, _ := cmd.CombinedOutput()
		return string(out)
	}
	out := send("-xi")
	if n := strings.Count(out, "Received Store Response (Success)"); n != len(files) {
		t.Fatalf("storescu: %d successes, want %d:\n%s", n, len(files), out)
	}
	rec := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go svc.Run(ctx, Consumers{Slices: rec, Completions: rec})
	waitFor(t, 20*time.Second, "all slices acknowledged and two series complete", func() bool {
		_, c := rec.counts()
		return rec.ackedCount() == len(files) && c == 2
	})
	out = send()
	if n := strings.Count(out, "Received Store Response (Success)"); n != len(files) {
		t.Fatalf("re-send: %d successes:\n%s", n, out)
	}
	if d := counterValue(svc.m.duplicate); d != float64(len(files)) {
		t.Fatalf("duplicates counted %v, want %d", d, len(files))
	}
	// A second node on the same store whose free-space floor no disk meets.
	low := testConfig(t, cfg.Node.DataDir)
	low.Routes = cfg.Routes
	low.Ingest.MinFreeBytes = 1 << 62
	lowSvc, err := NewService(context.Background(), svc.js, low, testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ = net.SplitHostPort(serveDIMSE(t, lowSvc))
	out = send()
	if !strings.Contains(out, "Refused: OutOfResources") {
		t.Fatalf("low disk: storescu did not see A700:\n%s", out)
	}
	if r := counterValue(lowSvc.m.refused.WithLabelValues("disk")); r < 1 {
		t.Fatalf("refused{disk} = %v", r)
	}
	time.Sleep(200 * time.Millisecond)
	if s, _ := rec.counts(); s != len(files) {
		t.Fatalf("%d slices delivered after duplicates and refusals, want %d", s, len(files))
	}
}

// TestExternalNATS runs the same code against a NATS server reached by URL
// (the nats.url mode), here a separate JetStream server listening on loopback.
func TestExternalNATS(t *testing.T) {
	_, url := startNATS(t)
	cfg := testConfig(t, t.TempDir())
	cfg.NATS.URL = url
	cfg.NATS.Prefix = "EXT"
	svc, js := newTestService(t, cfg)
	if js.Embedded {
		t.Fatal("embedded server started although nats.url is set")
	}
	// 3 MiB: several chunks, each within the external server's max payload.
	if r := accept(t, svc, inst{series: "4.1", sop: "4.1.1", pixels: 3 << 20}); r.Size < 3<<20 {
		t.Fatalf("stored %d bytes", r.Size)
	}
	rec := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go svc.Run(ctx, Consumers{Slices: rec, Completions: rec})
	waitFor(t, 10*time.Second, "completion via external NATS", func() bool { _, c := rec.counts(); return c == 1 })
	if _, err := js.JetStream.Stream(ctx, "EXT_WORK"); err != nil {
		t.Fatalf("work stream not on the external server: %v", err)
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

// startNATS starts a JetStream server of its own on a free loopback port (the
// nats.url mode) and returns it and its URL; it is shut down with the test.
func startNATS(t *testing.T) (*server.Server, string) {
	t.Helper()
	port := peers.FreePort(t)
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	return ns, fmt.Sprintf("nats://127.0.0.1:%d", port)
}
