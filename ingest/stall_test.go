package ingest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"anomalynode/dimse"
	"anomalynode/internal/dcm"
)

// TestStoreStallAnswersA700: with the NATS server gone (the client keeps
// reconnecting, so nothing fails fast), a C-STORE is answered A700 within
// ingest.store_timeout, logged and counted as refused (store); before the
// fix it waited for the DIMSE timeout (2 min), which the sender gave up on.
func TestStoreStallAnswersA700(t *testing.T) {
	ns, url := startNATS(t)
	cfg := testConfig(t, t.TempDir())
	cfg.NATS.URL = url
	cfg.Ingest.StoreTimeout = 500 * time.Millisecond
	svc, _ := newTestService(t, cfg)
	accept(t, svc, inst{series: "7.1", sop: "7.1.1"})
	ns.Shutdown()
	ns.WaitForShutdown()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // the DIMSE timeout
	defer cancel()
	start := time.Now()
	st, err := svc.ServeStore(ctx, &dimse.StoreRequest{SOPClassUID: ctImage, SOPInstanceUID: "7.1.2",
		TransferSyntaxUID: dcm.ExplicitVRLittleEndian, DataSet: bytes.NewReader(inst{series: "7.1", sop: "7.1.2"}.dataSet())})
	took := time.Since(start)
	if st != dimse.StatusOutOfResources || !errors.Is(err, ErrStoreTimeout) {
		t.Fatalf("status %v, err %v; want A700 and ErrStoreTimeout", st, err)
	}
	if took < cfg.Ingest.StoreTimeout || took > cfg.Ingest.StoreTimeout+3*time.Second {
		t.Errorf("answered after %v, want about %v", took, cfg.Ingest.StoreTimeout)
	}
	if got := counterValue(svc.m.refused.WithLabelValues("store")); got != 1 {
		t.Errorf("refused{store} = %v, want 1", got)
	}
	t.Logf("answered A700 after %v: %v", took.Round(time.Millisecond), err)
}

// slowReader yields its bytes in n pieces, gap apart (a read never crosses
// a piece's end).
type slowReader struct {
	data        []byte
	n           int
	gap         time.Duration
	piece, left int
}

func (s *slowReader) Read(p []byte) (int, error) {
	if len(s.data) == 0 {
		return 0, io.EOF
	}
	if s.left == 0 {
		if s.piece > 0 {
			time.Sleep(s.gap)
		}
		s.piece++
		s.left = len(s.data)/max(1, s.n-s.piece+1) + 1
	}
	k := min(len(p), s.left, len(s.data))
	copy(p, s.data[:k])
	s.data, s.left = s.data[k:], s.left-k
	return k, nil
}

// TestSlowSenderNotCutOff: the bound is on the store making no progress, not
// on the whole transfer: a sender that takes 4 times store_timeout but keeps
// sending is stored.
func TestSlowSenderNotCutOff(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.Ingest.StoreTimeout = 300 * time.Millisecond
	svc, _ := newTestService(t, cfg)
	ds := inst{series: "7.2", sop: "7.2.1", pixels: 64 << 10}.dataSet()
	res, err := svc.Accept(context.Background(), &Incoming{Source: Source{Kind: SourceNetwork}, TransferSyntaxUID: dcm.ExplicitVRLittleEndian,
		DataSet: &slowReader{data: ds, n: 12, gap: 100 * time.Millisecond}})
	if err != nil || res.Outcome != Stored {
		t.Fatalf("slow sender: %v, %v", res.Outcome, err)
	}
}
