package ingest

import (
	"context"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"anomalynode/dimse"
)

// benchStore sends n C-STOREs of dataSets (round robin, each with a fresh SOP
// Instance UID) over one association to a server running handler and returns
// the elapsed time.
func benchStore(b *testing.B, handler dimse.StoreHandler, n int, size int, tag string) time.Duration {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := dimse.NewServer(dimse.ServerConfig{AETitle: "NODE", MaxPDU: 1 << 20}, handler, zerolog.Nop(), nil)
	done := make(chan struct{})
	go func() { srv.Serve(ctx, l); close(done) }()
	defer func() { cancel(); <-done }()
	cl, err := dimse.Dial(ctx, l.Addr().String(), dimse.ClientConfig{CalledAE: "NODE", CallingAE: "CT1", MaxPDU: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Release(ctx)
	items := make([]dimse.StoreItem, n)
	for i := range items {
		in := inst{series: fmt.Sprintf("9.%s.%d", tag, i/100), sop: fmt.Sprintf("9.%s.%d.%d", tag, i/100, i), number: i%100 + 1, z: float64(i % 100), pixels: size}
		items[i] = dimse.StoreItem{SOPClassUID: ctImage, SOPInstanceUID: in.sop, TransferSyntaxUID: ExplicitVRLittleEndian, DataSet: in.dataSet()}
	}
	start := time.Now()
	for i := range items {
		st, err := cl.Store(ctx, items[i])
		if err != nil || st != dimse.StatusSuccess {
			b.Fatalf("store %d: %v %v", i, st, err)
		}
	}
	return time.Since(start)
}

// BenchmarkCStoreIngest measures instances/s from C-STORE received to durable
// and routed (the success response), with 512x512 16-bit slices, against the
// raw SCP throughput of a handler that only reads and discards the data set,
// in the same run.
func BenchmarkCStoreIngest(b *testing.B) {
	const size = 512 * 512 * 2
	n := b.N
	raw := benchStore(b, dimse.StoreHandlerFunc(func(ctx context.Context, req *dimse.StoreRequest) (dimse.Status, error) {
		_, err := io.Copy(io.Discard, req.DataSet)
		return dimse.StatusSuccess, err
	}), n, size, "raw")
	cfg := testConfig(b, b.TempDir())
	svc, _ := newTestService(b, cfg)
	b.ResetTimer()
	stored := benchStore(b, svc, n, size, "store")
	b.StopTimer()
	rawRate := float64(n) / raw.Seconds()
	storeRate := float64(n) / stored.Seconds()
	b.ReportMetric(storeRate, "inst/s")
	b.ReportMetric(rawRate, "raw-inst/s")
	b.ReportMetric(storeRate/rawRate, "ratio")
	b.ReportMetric(storeRate*size/1e6, "MB/s")
}
