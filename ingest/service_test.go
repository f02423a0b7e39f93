package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"anomalynode/internal/dcm"
)

func accept(t testing.TB, svc *Service, in inst) Result {
	t.Helper()
	res, err := svc.Accept(context.Background(), &Incoming{
		Source: Source{Kind: SourceNetwork, CallingAE: "CT1", CalledAE: "NODE"}, TransferSyntaxUID: in.ts(),
		DataSet: bytes.NewReader(in.dataSet()),
	})
	if err != nil {
		t.Fatalf("Accept(%s): %v", in.sop, err)
	}
	return res
}

// TestAcceptStoreDispatchComplete stores two series, checks each slice reaches
// the consumer with the stored bytes intact, and that each series completes
// once (by expected count and by quiet time).
func TestAcceptStoreDispatchComplete(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	svc, _ := newTestService(t, cfg)
	var sent = map[string][]byte{}
	for i := 1; i <= 4; i++ {
		in := inst{series: "1.2.3.100", sop: fmt.Sprintf("1.2.3.100.%d", i), number: i, z: float64(i), images: 4}
		sent[in.sop] = in.dataSet()
		if r := accept(t, svc, in); r.Outcome != Stored || r.Decision.Rule != "ct" {
			t.Fatalf("outcome %v rule %q", r.Outcome, r.Decision.Rule)
		}
	}
	for i := 1; i <= 3; i++ {
		in := inst{series: "1.2.3.200", sop: fmt.Sprintf("1.2.3.200.%d", i), number: i, z: 2 * float64(i), implicit: true}
		sent[in.sop] = in.dataSet()
		accept(t, svc, in)
	}
	// Duplicates and ignored instances never reach the consumer.
	if r := accept(t, svc, inst{series: "1.2.3.100", sop: "1.2.3.100.1", number: 1, images: 4}); r.Outcome != Duplicate {
		t.Fatalf("re-sent instance: outcome %v, want duplicate", r.Outcome)
	}
	if r := accept(t, svc, inst{series: "1.2.3.300", sop: "1.2.3.300.1", modality: "MR"}); r.Outcome != Ignored {
		t.Fatalf("MR instance: outcome %v, want ignored", r.Outcome)
	}
	rec := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- svc.Run(ctx, Consumers{Slices: rec, Completions: rec}) }()
	waitFor(t, 10*time.Second, "7 slices and 2 completions", func() bool { s, c := rec.counts(); return s == 7 && c == 2 })
	time.Sleep(300 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if s, c := rec.counts(); s != 7 || c != 2 {
		t.Fatalf("got %d slices %d completions after settling, want 7 and 2", s, c)
	}
	for _, sl := range rec.slices {
		r, err := sl.Open(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil || !bytes.Equal(got, sent[sl.SOPInstanceUID]) {
			t.Fatalf("stored %s differs (%d vs %d bytes, %v)", sl.SOPInstanceUID, len(got), len(sent[sl.SOPInstanceUID]), err)
		}
		if sl.Delivery != 1 || sl.SeriesVersion != 1 || sl.Decision.Model != "m" {
			t.Errorf("slice %s: delivery %d version %d model %q", sl.SOPInstanceUID, sl.Delivery, sl.SeriesVersion, sl.Decision.Model)
		}
		// The Part-10 view parses with suyashkumar/dicom.
		p10, _ := sl.OpenPart10(context.Background())
		ds, err := dicom.Parse(p10, int64(len(got))+1000, nil, dicom.SkipPixelData())
		p10.Close()
		if err != nil {
			t.Fatalf("Part-10 view of %s: %v", sl.SOPInstanceUID, err)
		}
		e, err := ds.FindElementByTag(tag.SOPInstanceUID)
		if err != nil || dicom.MustGetStrings(e.Value)[0] != sl.SOPInstanceUID {
			t.Fatalf("Part-10 view SOPInstanceUID: %v", err)
		}
	}
	reasons := map[string]string{}
	for _, c := range rec.completions {
		reasons[c.SeriesInstanceUID] = c.Reason
		if c.Version != 1 {
			t.Errorf("series %s version %d", c.SeriesInstanceUID, c.Version)
		}
	}
	if reasons["1.2.3.100"] != "expected" || reasons["1.2.3.200"] != "quiet" {
		t.Fatalf("completion reasons %v", reasons)
	}
	for _, c := range rec.completions {
		if c.SeriesInstanceUID == "1.2.3.200" && (len(c.Instances) != 3 || c.ImpliedCount != 3) {
			t.Errorf("series 200: %d instances, implied %d", len(c.Instances), c.ImpliedCount)
		}
	}
}

// TestLateSliceReopens: a slice arriving after completion re-opens the series
// and the next completion carries version 2 with every instance.
func TestLateSliceReopens(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	svc, _ := newTestService(t, cfg)
	rec := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go svc.Run(ctx, Consumers{Slices: rec, Completions: rec})
	accept(t, svc, inst{series: "1.9", sop: "1.9.1", number: 1})
	accept(t, svc, inst{series: "1.9", sop: "1.9.2", number: 2, z: 1})
	waitFor(t, 10*time.Second, "first completion", func() bool { _, c := rec.counts(); return c == 1 })
	accept(t, svc, inst{series: "1.9", sop: "1.9.3", number: 3, z: 2})
	waitFor(t, 10*time.Second, "second completion", func() bool { _, c := rec.counts(); return c == 2 })
	c := rec.completions[1]
	if c.Version != 2 || len(c.Instances) != 3 {
		t.Fatalf("amended completion: version %d, %d instances", c.Version, len(c.Instances))
	}
	if rec.slices[2].SeriesVersion != 2 {
		t.Fatalf("late slice version %d, want 2", rec.slices[2].SeriesVersion)
	}
}

// TestUnackedRedelivered: a consumer that never acknowledges gets the slice
// again after ack_wait; the series does not complete until it is acknowledged.
func TestUnackedRedelivered(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.Ingest.AckWait = time.Second
	svc, _ := newTestService(t, cfg)
	accept(t, svc, inst{series: "1.8", sop: "1.8.1"})
	rec := &recorder{noAck: true}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go svc.Run(ctx, Consumers{Slices: rec, Completions: rec})
	waitFor(t, 10*time.Second, "redelivery", func() bool { s, _ := rec.counts(); return s >= 2 })
	rec.mu.Lock()
	first, second := rec.slices[0], rec.slices[1]
	rec.mu.Unlock()
	if first.Delivery != 1 || second.Delivery != 2 || second.SOPInstanceUID != "1.8.1" {
		t.Fatalf("deliveries %d, %d", first.Delivery, second.Delivery)
	}
	if _, c := rec.counts(); c != 0 {
		t.Fatal("series completed with an unacknowledged slice")
	}
	if err := second.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "completion after ack", func() bool { _, c := rec.counts(); return c == 1 })
}

// TestConsumerErrorNaks: a failing consumer gets the slice again.
func TestConsumerErrorNaks(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	svc, _ := newTestService(t, cfg)
	accept(t, svc, inst{series: "1.7", sop: "1.7.1"})
	rec := &recorder{fail: 1}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go svc.Run(ctx, Consumers{Slices: rec})
	waitFor(t, 10*time.Second, "delivery after failure", func() bool { s, _ := rec.counts(); return s == 1 })
	if d := rec.slices[0].Delivery; d != 2 {
		t.Fatalf("delivery %d, want 2", d)
	}
}

// TestLowDiskRefuses: below the free-space floor Accept fails with
// ErrUnavailable (A700) and what was accepted before is still delivered.
func TestLowDiskRefuses(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.Ingest.MinFreeBytes = 1 << 30
	svc, _ := newTestService(t, cfg)
	free := uint64(2 << 30)
	svc.space = func(string) (uint64, uint64, error) { return free, 100 << 30, nil }
	accept(t, svc, inst{series: "1.6", sop: "1.6.1"})
	free = 1 << 20
	_, err := svc.Accept(context.Background(), &Incoming{Source: Source{Kind: SourceNetwork}, TransferSyntaxUID: dcm.ExplicitVRLittleEndian,
		DataSet: bytes.NewReader(inst{series: "1.6", sop: "1.6.2"}.dataSet())})
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, ErrLowDisk) {
		t.Fatalf("low disk: err %v, want ErrLowDisk", err)
	}
	if st := statusFor(context.Background(), err); st != 0xA700 {
		t.Fatalf("status %v, want A700", st)
	}
	svc.cfg.MinFreeBytes, svc.cfg.MinFreePercent = 0, 5
	free = 4 << 30 // 4 % of 100 GiB
	if _, err := svc.Accept(context.Background(), &Incoming{Source: Source{Kind: SourceNetwork}, TransferSyntaxUID: dcm.ExplicitVRLittleEndian,
		DataSet: bytes.NewReader(inst{series: "1.6", sop: "1.6.3"}.dataSet())}); !errors.Is(err, ErrLowDisk) {
		t.Fatalf("percent floor: err %v", err)
	}
	rec := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go svc.Run(ctx, Consumers{Slices: rec})
	waitFor(t, 10*time.Second, "the accepted slice", func() bool { s, _ := rec.counts(); return s == 1 })
}

// TestStoreUnavailable: with the NATS connection gone Accept answers
// ErrUnavailable, never success.
func TestStoreUnavailable(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	svc, js := newTestService(t, cfg)
	js.Conn.Close()
	_, err := svc.Accept(context.Background(), &Incoming{Source: Source{Kind: SourceNetwork}, TransferSyntaxUID: dcm.ExplicitVRLittleEndian,
		DataSet: bytes.NewReader(inst{series: "1.5", sop: "1.5.1"}.dataSet())})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err %v, want ErrUnavailable", err)
	}
}

// TestMalformedRefused: a truncated data set is refused with ErrMalformed.
func TestMalformedRefused(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	svc, _ := newTestService(t, cfg)
	ds := inst{series: "1.4", sop: "1.4.1"}.dataSet()
	_, err := svc.Accept(context.Background(), &Incoming{Source: Source{Kind: SourceNetwork}, TransferSyntaxUID: dcm.ExplicitVRLittleEndian,
		DataSet: bytes.NewReader(ds[:37])})
	if !errors.Is(err, ErrMalformed) {
		t.Fatalf("err %v, want ErrMalformed", err)
	}
	if st := statusFor(context.Background(), err); st != 0xC000 {
		t.Fatalf("status %v", st)
	}
	// Cut inside the pixel data: refused, and a complete re-send is stored whole.
	_, err = svc.Accept(context.Background(), &Incoming{Source: Source{Kind: SourceNetwork}, TransferSyntaxUID: dcm.ExplicitVRLittleEndian,
		DataSet: bytes.NewReader(ds[:len(ds)-100])})
	if !errors.Is(err, ErrMalformed) {
		t.Fatalf("pixel data cut: err %v, want ErrMalformed", err)
	}
	if r := accept(t, svc, inst{series: "1.4", sop: "1.4.1"}); r.Outcome != Stored || r.Size != int64(len(ds)) {
		t.Fatalf("complete re-send: outcome %v size %d, want stored %d", r.Outcome, r.Size, len(ds))
	}
}

// TestRestartResumesOpenSeries: series state survives a restart of the store.
func TestRestartResumesOpenSeries(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	svc, js := newTestService(t, cfg)
	rec := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { svc.Run(ctx, Consumers{Slices: rec}); close(done) }()
	accept(t, svc, inst{series: "1.3", sop: "1.3.1"})
	waitFor(t, 10*time.Second, "slice acknowledged", func() bool { return rec.ackedCount() == 1 })
	cancel()
	<-done
	js.Close()

	svc2, _ := newTestService(t, cfg)
	rec2 := &recorder{}
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	go svc2.Run(ctx2, Consumers{Slices: rec2, Completions: rec2})
	accept(t, svc2, inst{series: "1.3", sop: "1.3.2", z: 1})
	waitFor(t, 10*time.Second, "completion after restart", func() bool { _, c := rec2.counts(); return c == 1 })
	if c := rec2.completions[0]; len(c.Instances) != 2 || c.Version != 1 {
		t.Fatalf("completion after restart: %d instances, version %d", len(c.Instances), c.Version)
	}
	if s, _ := rec2.counts(); s != 1 {
		t.Fatalf("acknowledged slice redelivered after restart (%d slices: %s %s)", s, rec2.slices[0].SOPInstanceUID, rec2.slices[1].SOPInstanceUID)
	}
}

// TestLargeMultiFrame streams a 40 MiB multi-frame data set through the store
// (1 MiB chunks) and completes its series by the expected frame count.
func TestLargeMultiFrame(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.Ingest.SeriesTimeout = time.Hour // only the expected count can complete it
	cfg.Routes[0].SeriesTimeout = time.Hour
	svc, _ := newTestService(t, cfg)
	in := inst{series: "5.1", sop: "5.1.1", pixels: 40 << 20, sopClass: "1.2.840.10008.5.1.4.1.1.2.1",
		extra: []el{str(tag.NumberOfFrames, "IS", "40")}}
	ds := in.dataSet()
	res, err := svc.Accept(context.Background(), &Incoming{Source: Source{Kind: SourceNetwork}, TransferSyntaxUID: dcm.ExplicitVRLittleEndian,
		DataSet: bytes.NewReader(ds)})
	if err != nil || res.Size != int64(len(ds)) {
		t.Fatalf("accept: %v, size %d of %d", err, res.Size, len(ds))
	}
	rec := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go svc.Run(ctx, Consumers{Slices: rec, Completions: rec})
	waitFor(t, 30*time.Second, "completion by frame count", func() bool { _, c := rec.counts(); return c == 1 })
	c := rec.completions[0]
	if c.Reason != "expected" || c.Frames != 40 || rec.slices[0].Frames != 40 {
		t.Fatalf("completion reason %q frames %d (slice frames %d)", c.Reason, c.Frames, rec.slices[0].Frames)
	}
	r, _ := rec.slices[0].Open(ctx)
	n, err := io.Copy(io.Discard, r)
	r.Close()
	if err != nil || n != int64(len(ds)) {
		t.Fatalf("read back %d of %d bytes: %v", n, len(ds), err)
	}
}
