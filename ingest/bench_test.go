package ingest

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"anomalynode/dimse"
	"anomalynode/internal/dcm"
)

// benchStore sends n C-STOREs (each with a fresh SOP Instance UID) over assoc
// parallel associations to a server running handler and returns the elapsed
// time.
func benchStore(b *testing.B, handler dimse.StoreHandler, n, size, assoc int, tag string) time.Duration {
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
	items := make([]dimse.StoreItem, n)
	for i := range items {
		in := inst{series: fmt.Sprintf("9.%s.%d", tag, i/100), sop: fmt.Sprintf("9.%s.%d.%d", tag, i/100, i), number: i%100 + 1, z: float64(i % 100), pixels: size}
		items[i] = dimse.StoreItem{SOPClassUID: ctImage, SOPInstanceUID: in.sop, TransferSyntaxUID: dcm.ExplicitVRLittleEndian, DataSet: in.dataSet()}
	}
	clients := make([]*dimse.Client, assoc)
	for k := range clients {
		cl, err := dimse.Dial(ctx, l.Addr().String(), dimse.ClientConfig{CalledAE: "NODE", CallingAE: "CT1", MaxPDU: 1 << 20})
		if err != nil {
			b.Fatal(err)
		}
		defer cl.Release(ctx)
		clients[k] = cl
	}
	var wg sync.WaitGroup
	errs := make(chan error, assoc)
	start := time.Now()
	for k, cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := k; i < n; i += assoc {
				st, err := cl.Store(ctx, items[i])
				if err != nil || st != dimse.StatusSuccess {
					errs <- fmt.Errorf("store %d: %v %v", i, st, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	return elapsed
}

// BenchmarkCStoreIngest measures instances/s from C-STORE received to durable
// and routed (the success response) with 512x512 16-bit slices, and its ratio
// to the raw SCP throughput (a handler that only reads and discards the data
// set) measured in the same run with the same associations. Sub-benchmarks:
// one or four associations, every write synced (the default) or synced every
// second (nats.sync_interval).
func BenchmarkCStoreIngest(b *testing.B) {
	const size = 512 * 512 * 2
	for _, bc := range []struct {
		name  string
		assoc int
		sync  time.Duration
	}{{"assoc=1/sync=always", 1, 0}, {"assoc=4/sync=always", 4, 0}, {"assoc=1/sync=1s", 1, time.Second}, {"assoc=4/sync=1s", 4, time.Second}} {
		b.Run(bc.name, func(b *testing.B) {
			// At least 100 instances per phase, so short -benchtime runs
			// (scripts/bench.sh uses 3x) still give a meaningful rate.
			n := max(b.N, 100)
			raw := benchStore(b, dimse.StoreHandlerFunc(func(ctx context.Context, req *dimse.StoreRequest) (dimse.Status, error) {
				_, err := io.Copy(io.Discard, req.DataSet)
				return dimse.StatusSuccess, err
			}), n, size, bc.assoc, "raw")
			cfg := testConfig(b, b.TempDir())
			cfg.NATS.SyncInterval = bc.sync
			svc, _ := newTestService(b, cfg)
			b.ResetTimer()
			stored := benchStore(b, svc, n, size, bc.assoc, "store")
			b.StopTimer()
			rawRate := float64(n) / raw.Seconds()
			storeRate := float64(n) / stored.Seconds()
			b.ReportMetric(storeRate, "inst/s")
			b.ReportMetric(rawRate, "raw-inst/s")
			b.ReportMetric(storeRate/rawRate, "ratio")
			b.ReportMetric(storeRate*size/1e6, "MB/s")
		})
	}
}
