package dimse

import (
	"context"
	"errors"
	"io"
	"net"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"anomalynode/internal/dcm"
	"anomalynode/internal/peers"
)

func TestAssociationRejections(t *testing.T) {
	_, addr := startServer(t, ServerConfig{AETitle: "NODE", CheckCalledAE: true, AllowedCallers: []AllowedCaller{
		{AETitle: "GOOD"}, {AETitle: "LOCAL", Host: "127.0.0.1"}, {AETitle: "NAMED", Host: "localhost"},
		{AETitle: "ELSEWHERE", Host: "10.255.1.2"}}}, newRecorder())
	ctx := context.Background()
	cases := []struct {
		calling, called string
		want            *RejectError // nil: accepted
	}{
		{"GOOD", "NODE", nil},
		{"LOCAL", "NODE", nil},
		{"NAMED", "NODE", nil},
		{"STRANGER", "NODE", &RejectError{RejectPermanent, RejectSourceServiceUser, RejectReasonCallingAENotRecognized}},
		{"ELSEWHERE", "NODE", &RejectError{RejectPermanent, RejectSourceServiceUser, RejectReasonCallingAENotRecognized}},
		{"GOOD", "OTHER", &RejectError{RejectPermanent, RejectSourceServiceUser, RejectReasonCalledAENotRecognized}},
	}
	for _, tc := range cases {
		t.Run(tc.calling+"->"+tc.called, func(t *testing.T) {
			c, err := Dial(ctx, addr, ClientConfig{CallingAE: tc.calling, CalledAE: tc.called})
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				if err := c.Echo(ctx); err != nil {
					t.Fatal(err)
				}
				_ = c.Release(ctx)
				return
			}
			var rj *RejectError
			if !errors.As(err, &rj) || !errors.Is(err, ErrAssociationRejected) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if *rj != *tc.want {
				t.Fatalf("got %+v, want %+v", *rj, *tc.want)
			}
		})
	}
	// dcmtk sees the same rejection.
	h, p := hostPort(t, addr)
	out, err := exec.Command(peers.Tool(t, "echoscu"), "-aet", "STRANGER", "-aec", "NODE", h, p).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Calling AE Title Not Recognized") {
		t.Fatalf("echoscu from an unknown AE: err %v, output:\n%s", err, out)
	}
}

func TestPresentationContextNegotiation(t *testing.T) {
	rec := newRecorder()
	_, addr := startServer(t, ServerConfig{}, rec)
	ctx := context.Background()
	c, err := Dial(ctx, addr, ClientConfig{CalledAE: "NODE", Contexts: []PresentationContext{
		{AbstractSyntax: CTImageStorage, TransferSyntaxes: []string{dcm.JPEG2000}},
		{AbstractSyntax: "1.2.3.4.5.6", TransferSyntaxes: []string{dcm.ExplicitVRLittleEndian}},
		{AbstractSyntax: CTImageStorage, TransferSyntaxes: []string{"1.2.3.999", dcm.ImplicitVRLittleEndian, dcm.ExplicitVRLittleEndian}},
		{AbstractSyntax: MRImageStorage, TransferSyntaxes: []string{dcm.DeflatedExplicitVRLittleEndian}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Release(ctx)
	got := c.Contexts()
	want := []struct {
		result byte
		ts     string
	}{
		{ContextTransferSyntaxesNotSupported, ""},
		{ContextAbstractSyntaxNotSupported, ""},
		{ContextAccepted, dcm.ExplicitVRLittleEndian}, // our preference among those proposed
		{ContextAccepted, dcm.DeflatedExplicitVRLittleEndian},
	}
	for i, w := range want {
		if got[i].Result != w.result || (w.result == ContextAccepted && got[i].TransferSyntax != w.ts) {
			t.Errorf("context %d: result %d ts %s, want %d %s", got[i].ID, got[i].Result, got[i].TransferSyntax, w.result, w.ts)
		}
	}
	// The rest of the association works: a CT over the accepted context ...
	f := makeSeries(t, t.TempDir(), synthSpec{N: 1, TS: dcm.ImplicitVRLittleEndian})[0]
	if st, err := c.StoreFile(ctx, f); err != nil || !st.IsSuccess() {
		t.Fatalf("StoreFile: %v %v", st, err)
	}
	// ... a deflated MR is inflated for the handler ...
	mr := makeSeries(t, t.TempDir(), synthSpec{N: 1, SOPClass: MRImageStorage, Sequence: true})[0]
	meta, ds := readInstance(t, mr)
	deflated, err := ConvertDataSet(ds, dcm.ExplicitVRLittleEndian, dcm.DeflatedExplicitVRLittleEndian)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := c.Store(ctx, StoreItem{SOPClassUID: MRImageStorage, SOPInstanceUID: meta.MediaStorageSOPInstanceUID,
		TransferSyntaxUID: dcm.DeflatedExplicitVRLittleEndian, DataSet: deflated}); err != nil || !st.IsSuccess() {
		t.Fatalf("Store deflated: %v %v", st, err)
	}
	r, ok := rec.get(meta.MediaStorageSOPInstanceUID)
	if !ok || r.Req.TransferSyntaxUID != dcm.ExplicitVRLittleEndian || string(r.Data) != string(ds) {
		t.Fatalf("deflated instance arrived as %s, %d bytes (want %d, explicit)", r.Req.TransferSyntaxUID, len(r.Data), len(ds))
	}
	// ... and what no context carries is refused locally.
	_, err = c.Store(ctx, StoreItem{SOPClassUID: SecondaryCaptureImageStorage, SOPInstanceUID: "1.2.3", TransferSyntaxUID: dcm.ExplicitVRLittleEndian, DataSet: ds})
	if !errors.Is(err, ErrNoPresentationContext) {
		t.Fatalf("store without context: %v", err)
	}
	if err := c.Echo(ctx); !errors.Is(err, ErrNoPresentationContext) {
		t.Fatalf("echo without Verification context: %v", err)
	}
}

func TestPDUOverMaxAborts(t *testing.T) {
	_, addr := startServer(t, ServerConfig{MaxPDU: 16384}, newRecorder())
	ctx := context.Background()
	c, err := Dial(ctx, addr, ClientConfig{CalledAE: "NODE"})
	if err != nil {
		t.Fatal(err)
	}
	if c.PeerMaxPDU() != 16384 {
		t.Fatalf("server announced %d", c.PeerMaxPDU())
	}
	c.u.peerMax = 0 // misbehave: ignore the SCP's limit
	f := makeSeries(t, t.TempDir(), synthSpec{N: 1, Size: 128})[0]
	_, err = c.StoreFile(ctx, f)
	var ab *AbortError
	if !errors.As(err, &ab) || ab.Source != abortSourceProvider {
		t.Fatalf("oversized PDU: got %v, want an A-ABORT from the service provider", err)
	}
}

func TestTimeoutsFreeTheSlot(t *testing.T) {
	_, addr := startServer(t, ServerConfig{MaxAssociations: 1, ARTIMTimeout: 300 * time.Millisecond, IdleTimeout: 300 * time.Millisecond}, newRecorder())
	ctx := context.Background()
	// A peer that connects and says nothing holds the only slot ...
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	time.Sleep(50 * time.Millisecond)
	_, err = Dial(ctx, addr, ClientConfig{CalledAE: "NODE"})
	var rj *RejectError
	if !errors.As(err, &rj) || *rj != (RejectError{RejectTransient, RejectSourceServiceProviderPres, RejectReasonLocalLimitExceeded}) {
		t.Fatalf("second association while the slot is held: %v", err)
	}
	// ... until ARTIM expires and the server closes it.
	_ = silent.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.ReadAll(silent); err != nil {
		t.Fatalf("silent connection not closed by ARTIM: %v", err)
	}
	c, err := Dial(ctx, addr, ClientConfig{CalledAE: "NODE"})
	if err != nil {
		t.Fatalf("after ARTIM: %v", err)
	}
	// An association that goes idle is aborted by the idle timer.
	time.Sleep(600 * time.Millisecond)
	if err := c.Echo(ctx); err == nil {
		t.Fatal("echo on an association past its idle timeout succeeded")
	}
	c2, err := Dial(ctx, addr, ClientConfig{CalledAE: "NODE"})
	if err != nil {
		t.Fatalf("after idle timeout: %v", err)
	}
	if err := c2.Echo(ctx); err != nil {
		t.Fatal(err)
	}
	_ = c2.Release(ctx)
}

func TestHandlerPanicAbortsOnlyItsAssociation(t *testing.T) {
	var calls atomic.Int32
	h := StoreHandlerFunc(func(ctx context.Context, req *StoreRequest) (Status, error) {
		if calls.Add(1) == 1 {
			panic("boom")
		}
		return StatusSuccess, nil
	})
	_, addr := startServer(t, ServerConfig{}, h)
	ctx := context.Background()
	f := makeSeries(t, t.TempDir(), synthSpec{N: 1})[0]
	c1, err := Dial(ctx, addr, ClientConfig{CalledAE: "NODE"})
	if err != nil {
		t.Fatal(err)
	}
	c2, err := Dial(ctx, addr, ClientConfig{CalledAE: "NODE"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c1.StoreFile(ctx, f); !errors.Is(err, ErrAborted) {
		t.Fatalf("store into a panicking handler: %v", err)
	}
	if st, err := c2.StoreFile(ctx, f); err != nil || !st.IsSuccess() {
		t.Fatalf("other association after the panic: %v %v", st, err)
	}
	_ = c2.Release(ctx)
}

func TestHandlerStatusesAndUndrainedData(t *testing.T) {
	h := StoreHandlerFunc(func(ctx context.Context, req *StoreRequest) (Status, error) {
		// Read a little and leave the rest: the server must drain it.
		buf := make([]byte, 10)
		_, _ = io.ReadFull(req.DataSet, buf)
		if strings.HasSuffix(req.SOPInstanceUID, "1") {
			return StatusOutOfResources, errors.New("disk full")
		}
		if strings.HasSuffix(req.SOPInstanceUID, "2") {
			return StatusWarningCoercion, nil
		}
		return StatusSuccess, nil
	})
	_, addr := startServer(t, ServerConfig{MaxPDU: 8192}, h)
	ctx := context.Background()
	c, err := Dial(ctx, addr, ClientConfig{CalledAE: "NODE"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Release(ctx)
	_, ds := readInstance(t, makeSeries(t, t.TempDir(), synthSpec{N: 1, Size: 128})[0])
	for i, want := range []Status{StatusSuccess, StatusOutOfResources, StatusWarningCoercion, StatusSuccess} {
		uid := []string{"1.2.3.0", "1.2.3.1", "1.2.3.2", "1.2.3.3"}[i]
		st, err := c.Store(ctx, StoreItem{SOPClassUID: CTImageStorage, SOPInstanceUID: uid, TransferSyntaxUID: dcm.ExplicitVRLittleEndian, DataSet: ds})
		if st != want {
			t.Fatalf("store %s: status %v (%v), want %v", uid, st, err, want)
		}
		var se *StatusError
		if want.IsFailure() && (!errors.As(err, &se) || se.Comment != "disk full") {
			t.Fatalf("failure status without its comment: %v", err)
		}
		if !want.IsFailure() && err != nil {
			t.Fatalf("non-failure status with error %v", err)
		}
	}
}

func TestShutdown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(ServerConfig{}, newRecorder(), testLogger(t), nil)
	served := make(chan error, 1)
	go func() { served <- s.Serve(context.Background(), l) }()
	ctx := context.Background()
	addr := l.Addr().String()
	waitPort(t, addr)
	// Graceful: an association that releases within the deadline.
	c, err := Dial(ctx, addr, ClientConfig{CalledAE: "NODE"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		done <- s.Shutdown(sctx)
	}()
	time.Sleep(100 * time.Millisecond)
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("still accepting after Shutdown")
	}
	if err := c.Echo(ctx); err != nil {
		t.Fatalf("open association during graceful shutdown: %v", err)
	}
	if err := c.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("graceful Shutdown: %v", err)
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve after Shutdown: %v", err)
	}

	// Forced: an association still open at the deadline is aborted.
	s2, addr2 := startServer(t, ServerConfig{}, newRecorder())
	c2, err := Dial(ctx, addr2, ClientConfig{CalledAE: "NODE"})
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if err := s2.Shutdown(sctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("forced Shutdown: %v", err)
	}
	if err := c2.Echo(ctx); !errors.Is(err, ErrAborted) {
		t.Fatalf("echo after forced shutdown: %v", err)
	}
}

func TestSetPolicyKeepsOpenAssociations(t *testing.T) {
	s, addr := startServer(t, ServerConfig{AETitle: "NODE", AllowedCallers: []AllowedCaller{{AETitle: "OLD"}}}, newRecorder())
	ctx := context.Background()
	c, err := Dial(ctx, addr, ClientConfig{CallingAE: "OLD", CalledAE: "NODE"})
	if err != nil {
		t.Fatal(err)
	}
	s.SetPolicy(ServerConfig{AETitle: "NODE", AllowedCallers: []AllowedCaller{{AETitle: "NEW"}}})
	if err := c.Echo(ctx); err != nil {
		t.Fatalf("open association after SetPolicy: %v", err)
	}
	if _, err := Dial(ctx, addr, ClientConfig{CallingAE: "OLD", CalledAE: "NODE"}); !errors.Is(err, ErrAssociationRejected) {
		t.Fatalf("old caller after SetPolicy: %v", err)
	}
	c2, err := Dial(ctx, addr, ClientConfig{CallingAE: "NEW", CalledAE: "NODE"})
	if err != nil {
		t.Fatalf("new caller after SetPolicy: %v", err)
	}
	_ = c2.Release(ctx)
	_ = c.Release(ctx)
}
