package stage

import (
	"bytes"
	"context"
	"encoding/binary"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"anomalynode/configs"
	"anomalynode/inference"
	"anomalynode/ingest"
)

// dataSet encodes a bare explicit VR little endian data set of one 16 x 16
// CT slice that announces a series of one, so the series completes as soon
// as the slice is done. The test never decodes it.
func dataSet(series, sop string) []byte {
	var b bytes.Buffer
	put := func(group, elem uint16, vr, v string) {
		if len(v)%2 == 1 {
			v += "\x00"
		}
		binary.Write(&b, binary.LittleEndian, [2]uint16{group, elem})
		b.WriteString(vr)
		binary.Write(&b, binary.LittleEndian, uint16(len(v)))
		b.WriteString(v)
	}
	put(0x0008, 0x0016, "UI", "1.2.840.10008.5.1.4.1.1.2")
	put(0x0008, 0x0018, "UI", sop)
	put(0x0008, 0x0060, "CS", "CT")
	put(0x0020, 0x000D, "UI", "1.2.3.4")
	put(0x0020, 0x000E, "UI", series)
	put(0x0020, 0x1002, "IS", "1")
	binary.Write(&b, binary.LittleEndian, []uint16{0x0028, 0x0010})
	b.WriteString("US")
	binary.Write(&b, binary.LittleEndian, []uint16{2, 16, 0x0028, 0x0011})
	b.WriteString("US")
	binary.Write(&b, binary.LittleEndian, []uint16{2, 16, 0x7FE0, 0x0010})
	b.WriteString("OW\x00\x00")
	binary.Write(&b, binary.LittleEndian, uint32(512))
	b.Write(make([]byte, 512))
	return b.Bytes()
}

// TestFailedAckHandsSliceBack: when the acknowledgement of a scored slice
// fails (its series update went unanswered while a NATS server of the
// cluster restarted), the worker hands the slice back at once, so it is
// re-scored and its series completes within seconds, not after ack_wait;
// the failure counts as a store failure. The worker used to log the failure
// and leave the slice to a redelivery that the node's own heartbeat then
// held off for ten minutes.
func TestFailedAckHandsSliceBack(t *testing.T) {
	dir := t.TempDir()
	cfg, err := configs.Parse([]byte(`
node:
  data_dir: `+dir+`
ingest:
  series_timeout: 1s
  ack_wait: 30s
models:
  m:
    path: m.dpmm
    embedder: e.onnx
routes:
  - name: ct
    match:
      modality: [CT]
    model: m
`), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	js, err := ingest.OpenJetStream(ctx, cfg.NATS, dir, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { js.Close() })
	svc, err := ingest.NewService(ctx, js, cfg, zerolog.Nop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	res, err := svc.Accept(ctx, &ingest.Incoming{Source: ingest.Source{Kind: ingest.SourceNetwork},
		TransferSyntaxUID: "1.2.840.10008.1.2.1", DataSet: bytes.NewReader(dataSet("7.1", "7.1.1"))})
	if err != nil || res.Outcome != ingest.Stored {
		t.Fatalf("Accept: %v, %v (want stored)", res.Outcome, err)
	}
	reg := prometheus.NewRegistry()
	w, err := NewWorker(WorkerOptions{Engines: map[string]*inference.Engine{"m": {}}, Results: &ResultStore{}, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var deliveries []int
	completed := make(chan int, 4)
	go svc.Run(ctx, ingest.Consumers{
		Slices: ingest.SliceConsumerFunc(func(ctx context.Context, sl *ingest.Slice) error {
			mu.Lock()
			deliveries = append(deliveries, sl.Delivery)
			first := len(deliveries) == 1
			mu.Unlock()
			if !first {
				return sl.Ack(ctx)
			}
			// Scored (no frames: nothing to store), then the Ack cannot
			// reach the cluster: a context already done stands in for an
			// answer that never came.
			sl.Hold()
			dead, stop := context.WithCancel(ctx)
			stop()
			w.finish(dead, sl, "m", nil, nil)
			return nil
		}),
		Completions: ingest.CompletionConsumerFunc(func(ctx context.Context, c *ingest.SeriesCompletion) error {
			completed <- c.Version
			return c.Ack(ctx)
		}),
	})
	select {
	case <-completed:
	case <-time.After(10 * time.Second):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("series not complete 10 s after the failed Ack (deliveries %v; ack_wait is 30 s)", deliveries)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(deliveries) != 2 || deliveries[1] != 2 {
		t.Errorf("deliveries %v, want [1 2]", deliveries)
	}
	if n := counterValue(t, reg, "anomalynode_slices_failed_total", map[string]string{"model": "m", "reason": "store"}); n != 1 {
		t.Errorf("store failures %v, want 1", n)
	}
}

// counterValue reads one series of a registry's metric.
func counterValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if v, ok := labels[l.GetName()]; ok && v != l.GetValue() {
					continue metric
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}
