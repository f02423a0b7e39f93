package ingest

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"anomalynode/dimse"
	"anomalynode/internal/dcm"
	"anomalynode/internal/peers"
)

// BenchmarkStorescuSteps is where the time of one instance goes on the
// C-STORE path (docs/ingest.md, "Where the time goes"): dcmtk storescu
// (TCP_NODELAY=1, one association, waiting for each response) sends 300
// 512x512 16-bit slices to the in-process dimse.Server twice, once with a
// handler that only reads the data set (the wire and DIMSE cost) and once with
// the Service (received -> durable -> response), and once more with a
// consumer taking the work at the same time. Then the durable steps are
// timed alone on the same store: the lookups (series record, object store),
// the data set's synced write, the work item's synced write. Between them,
// four storescu processes send a quarter of a series each, at once
// (four-assoc-inst/s). files-inst/s is the Service with a file per data set
// instead of segment records (another series, same run). Run it with
// -cpuprofile for the profile.
func BenchmarkStorescuSteps(b *testing.B) {
	const n, size = 300, 512 * 512 * 2
	storescu := peers.Tool(b, "storescu")
	dir := b.TempDir()
	write := func(tag string) []string {
		files := make([]string, n)
		for i := range files {
			in := inst{series: "9." + tag, sop: fmt.Sprintf("9.%s.%d", tag, i), number: i + 1, z: float64(i), pixels: size}
			files[i] = filepath.Join(dir, fmt.Sprintf("%s%04d.dcm", tag, i))
			writeFile(b, files[i], in.part10())
		}
		return files
	}
	storescuRun := func(addr string, files []string) error {
		host, port, _ := net.SplitHostPort(addr)
		cmd := exec.Command(storescu, append([]string{"-aet", "CT1", "-aec", "NODE", host, port}, files...)...)
		cmd.Env = peers.DcmtkEnv()
		out, err := cmd.CombinedOutput()
		if err != nil || strings.Contains(string(out), "E: ") {
			return fmt.Errorf("storescu: %v\n%s", err, out)
		}
		return nil
	}
	send := func(addr string, files []string) time.Duration {
		// The inputs just written would otherwise be written back while
		// the receiver flushes, and charged to it.
		syscall.Sync()
		start := time.Now()
		if err := storescuRun(addr, files); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	var handled atomic.Int64 // ns inside the handler
	serve := func(h dimse.StoreHandler) string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		srv := dimse.NewServer(dimse.ServerConfig{AETitle: "NODE"}, dimse.StoreHandlerFunc(func(ctx context.Context, req *dimse.StoreRequest) (dimse.Status, error) {
			start := time.Now()
			defer func() { handled.Add(int64(time.Since(start))) }()
			return h.ServeStore(ctx, req)
		}), zerolog.Nop(), nil)
		done := make(chan struct{})
		go func() { srv.Serve(ctx, l); close(done) }()
		b.Cleanup(func() { cancel(); <-done })
		return l.Addr().String()
	}
	defer func(size int64) { segmentSize = size }(segmentSize)
	segmentSize = defaultSegmentSize
	cfg := testConfig(b, filepath.Join(dir, "data"))
	svc, js := newTestService(b, cfg)
	// The segment upkeep runs as in the node (spares made while it receives).
	upkeep, stopUpkeep := context.WithCancel(context.Background())
	defer stopUpkeep()
	go svc.sweepFiles(upkeep)
	segs := svc.files.segs
	raw := serve(dimse.StoreHandlerFunc(func(ctx context.Context, req *dimse.StoreRequest) (dimse.Status, error) {
		_, err := io.Copy(io.Discard, req.DataSet)
		return dimse.StatusSuccess, err
	}))
	node := serve(svc)
	per := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / n }

	var rawT, nodeT, nodeH, filesT time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		files := write(fmt.Sprint(i))
		rawT += send(raw, files)
		handled.Store(0)
		nodeT += send(node, files)
		nodeH += time.Duration(handled.Load())
		// The same series again under other UIDs, each data set in a file
		// of its own (no segments): what the segments save.
		other := write(fmt.Sprint("f", i))
		svc.files.segs = nil
		filesT += send(node, other)
		svc.files.segs = segs
		for _, f := range append(files, other...) {
			os.Remove(f)
		}
	}
	b.StopTimer()
	// Four associations at once (four storescu processes, a quarter each).
	four := write("four")
	start := time.Now()
	errs := make(chan error, 4)
	for k := range 4 {
		go func() { errs <- storescuRun(node, four[k*n/4:(k+1)*n/4]) }()
	}
	for range 4 {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	fourT := time.Since(start)
	// The same again while a consumer takes the work (series record update,
	// acknowledgement: the synced writes of the next stage) on the same disk.
	rctx, rcancel := context.WithCancel(context.Background())
	defer rcancel()
	go svc.Run(rctx, Consumers{Slices: &recorder{}, Completions: &recorder{}})
	consuming := send(node, write("consumed"))
	rounds := time.Duration(b.N)
	b.ReportMetric(float64(n)/(nodeT/rounds).Seconds(), "inst/s")
	b.ReportMetric(float64(n)/(rawT/rounds).Seconds(), "raw-inst/s")
	b.ReportMetric(per(nodeT/rounds), "ms/inst")
	b.ReportMetric(per(rawT/rounds), "wire-ms/inst")
	b.ReportMetric(per(nodeH/rounds), "accept-ms/inst")
	b.ReportMetric(float64(n)/(filesT/rounds).Seconds(), "files-inst/s")
	b.ReportMetric(float64(n)/consuming.Seconds(), "consuming-inst/s")
	b.ReportMetric(float64(n)/fourT.Seconds(), "four-assoc-inst/s")
	rcancel()

	// The durable steps alone, n times each, on the same store.
	ctx := context.Background()
	data := inst{series: "9.steps", sop: "9.steps.0", pixels: size}.dataSet()
	var look, put, work time.Duration
	for i := 0; i < n; i++ {
		sop := fmt.Sprintf("9.steps.%d", i)
		t0 := time.Now()
		if lk := svc.lookup(ctx, "9.steps", sop); lk.err != nil {
			b.Fatal(lk.err)
		}
		t1 := time.Now()
		if _, _, err := svc.putInline(ctx, sop, dcm.ExplicitVRLittleEndian, ctImage, "9.steps", data); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		if _, err := js.JetStream.Publish(ctx, svc.workSubj, []byte(`{"sop_instance_uid":"`+sop+`"}`), jetstream.WithMsgID(sop)); err != nil {
			b.Fatal(err)
		}
		t3 := time.Now()
		look, put, work = look+t1.Sub(t0), put+t2.Sub(t1), work+t3.Sub(t2)
	}
	b.ReportMetric(per(look), "lookups-ms")
	b.ReportMetric(per(put), "dataset-write-ms")
	b.ReportMetric(per(work), "work-write-ms")
}
