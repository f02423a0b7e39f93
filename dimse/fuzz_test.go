package dimse

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"anomalynode/internal/dcm"
)

// bytesConn is a net.Conn that reads a fixed byte string and discards writes:
// it lets the fuzzer play a peer without goroutines or real timers.
type bytesConn struct {
	r      *bytes.Reader
	closed bool
}

func (c *bytesConn) Read(p []byte) (int, error) {
	if c.closed {
		return 0, net.ErrClosed
	}
	return c.r.Read(p)
}
func (c *bytesConn) Write(p []byte) (int, error) {
	if c.closed {
		return 0, net.ErrClosed
	}
	return len(p), nil
}
func (c *bytesConn) Close() error        { c.closed = true; return nil }
func (c *bytesConn) LocalAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 104} }
func (c *bytesConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50000}
}
func (c *bytesConn) SetDeadline(time.Time) error      { return nil }
func (c *bytesConn) SetReadDeadline(time.Time) error  { return nil }
func (c *bytesConn) SetWriteDeadline(time.Time) error { return nil }

// seedAssociateRQ is a valid A-ASSOCIATE-RQ proposing Verification and CT.
func seedAssociateRQ() []byte {
	return encodeAssociate(pduAssociateRQ, &associate{
		ProtocolVersion: 1, CalledAE: "NODE", CallingAE: "FUZZ", AppContext: ApplicationContextName,
		Contexts: []PresentationContext{
			{ID: 1, AbstractSyntax: VerificationSOPClass, TransferSyntaxes: []string{dcm.ImplicitVRLittleEndian}},
			{ID: 3, AbstractSyntax: CTImageStorage, TransferSyntaxes: []string{dcm.ExplicitVRLittleEndian, dcm.ImplicitVRLittleEndian}},
			{ID: 5, AbstractSyntax: MRImageStorage, TransferSyntaxes: []string{dcm.DeflatedExplicitVRLittleEndian}},
		},
		MaxPDU: 16384, ImplClassUID: "1.2.3", ImplVersion: "FUZZ", HasAsync: true, AsyncInvoked: 2, AsyncPerformed: 2,
		Roles: []roleSelection{{SOPClassUID: CTImageStorage, SCU: true, SCP: true}},
	})
}

func seedEcho() []byte {
	cmd := (&command{Field: cmdCEchoRQ, MessageID: 1, AffectedSOPClassUID: VerificationSOPClass, DataSetType: commandDataSetNone}).encode()
	return encodePData(pdv{ContextID: 1, Command: true, Last: true, Data: cmd})
}

func seedStore(ctxID byte) []byte {
	cmd := (&command{Field: cmdCStoreRQ, MessageID: 2, AffectedSOPClassUID: CTImageStorage, AffectedSOPInstanceUID: "1.2.3.4", DataSetType: 0}).encode()
	ds := []byte{0x08, 0x00, 0x18, 0x00, 'U', 'I', 8, 0, '1', '.', '2', '.', '3', '.', '4', 0}
	return append(encodePData(pdv{ContextID: ctxID, Command: true, Last: true, Data: cmd}, pdv{ContextID: ctxID, Data: ds[:6]}),
		encodePData(pdv{ContextID: ctxID, Data: ds[6:], Last: true})...)
}

// associationSeeds are whole conversations a peer might send.
func associationSeeds() [][]byte {
	rq := seedAssociateRQ()
	rel := encodeRelease(pduReleaseRQ)
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	return [][]byte{
		cat(rq, seedEcho(), rel),
		cat(rq, seedStore(3), seedEcho(), rel),
		cat(rq, seedStore(3), encodeAbort(0, 0)),
		cat(rq, seedStore(1)),
		cat(rq, rel, seedEcho()),
		cat(seedEcho(), rq),
		cat(rq, []byte{4, 0, 0, 0, 0, 6, 0, 0, 0, 2, 3, 3}),
		{1, 0, 0, 0, 0, 2, 0, 1},
	}
}

// FuzzAssociation drives the server's state machine and DIMSE loop with
// arbitrary bytes from a peer: it must end (no hang), never panic, and never
// deliver a data set larger than what was sent.
func FuzzAssociation(f *testing.F) {
	for _, s := range associationSeeds() {
		f.Add(s)
	}
	s := NewServer(ServerConfig{AETitle: "NODE", MaxPDU: 1 << 16}, StoreHandlerFunc(func(ctx context.Context, req *StoreRequest) (Status, error) {
		n, err := io.Copy(io.Discard, io.LimitReader(req.DataSet, 1<<20))
		if err != nil {
			return StatusProcessingFailure, err
		}
		if n >= 1<<20 {
			return StatusOutOfResources, errors.New("too big")
		}
		return StatusSuccess, nil
	}), zerolog.Nop(), nil)
	f.Fuzz(func(t *testing.T, data []byte) {
		conn := &bytesConn{r: bytes.NewReader(data)}
		a := s.newAssociation(context.Background(), conn)
		_, _ = a.run()
		if a.u.st != sta1Idle && a.u.st != sta13AwaitTransClose && a.u.st != sta6Established && a.u.st != sta8AwaitLocalRel {
			t.Fatalf("association ended in state Sta%d", a.u.st)
		}
	})
}

// FuzzStateMachine checks the transition table on arbitrary event sequences:
// abort-type events always reach Sta1 and no event is accepted in Sta1 but
// sending A-ASSOCIATE-RQ.
func FuzzStateMachine(f *testing.F) {
	f.Add([]byte{byte(evSendAssocRQ), byte(evRecvAssocAC), byte(evSendPData), byte(evRecvPData), byte(evSendReleaseRQ), byte(evRecvReleaseRP)})
	f.Add([]byte{0, byte(evRecvAssocRQ), byte(evSendAssocAC), byte(evRecvReleaseRQ), byte(evSendReleaseRP)})
	f.Fuzz(func(t *testing.T, evs []byte) {
		st := sta1Idle
		if len(evs) > 0 && evs[0] == 0 {
			st, evs = sta2AwaitAssocRQ, evs[1:]
		}
		for _, b := range evs {
			ev := event(b % 18)
			next, ok := st.next(ev)
			switch {
			case ev == evRecvAbort || ev == evSendAbort || ev == evTimeout || ev == evTransportClosed:
				if next != sta1Idle || !ok {
					t.Fatalf("Sta%d + abort event %d -> Sta%d ok=%v", st, ev, next, ok)
				}
			case st == sta1Idle && ok && ev != evSendAssocRQ:
				t.Fatalf("Sta1 accepted event %d", ev)
			case !ok && next != sta1Idle:
				t.Fatalf("rejected event left state Sta%d", next)
			}
			st = next
		}
	})
}

// FuzzDecodePDU decodes arbitrary PDUs; whatever decodes must re-encode to
// something that decodes to the same value.
func FuzzDecodePDU(f *testing.F) {
	f.Add(seedAssociateRQ())
	f.Add(encodeAssociate(pduAssociateAC, &associate{ProtocolVersion: 1, CalledAE: "A", CallingAE: "B", AppContext: ApplicationContextName,
		Contexts: []PresentationContext{{ID: 1, Result: 0, TransferSyntax: dcm.ExplicitVRLittleEndian}, {ID: 3, Result: 3}}, MaxPDU: 0, ImplClassUID: "1.2"}))
	f.Add(seedEcho())
	f.Add(seedStore(3))
	f.Add(encodeReject(1, 1, 3))
	f.Add(encodeAbort(2, 6))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < 6 {
			return
		}
		typ, body := b[0], b[6:]
		switch typ {
		case pduAssociateRQ, pduAssociateAC:
			a, err := decodeAssociate(typ, body)
			if err != nil {
				return
			}
			enc := encodeAssociate(typ, a)
			a2, err := decodeAssociate(typ, enc[6:])
			if err != nil {
				t.Fatalf("re-encoded PDU does not decode: %v", err)
			}
			if !sameAssociate(a, a2, typ) {
				t.Fatalf("round trip changed the PDU:\n%+v\n%+v", a, a2)
			}
		case pduPData:
			pdvs, err := decodePData(body)
			if err != nil {
				return
			}
			again, err := decodePData(encodePData(pdvs...)[6:])
			if err != nil || !reflect.DeepEqual(normPDVs(pdvs), normPDVs(again)) {
				t.Fatalf("P-DATA round trip: %v", err)
			}
		}
		// The streaming reader must agree with decodePData and not panic.
		u := newULConn(&bytesConn{r: bytes.NewReader(b)}, 1<<16, sta6Established)
		for i := 0; i < 1000; i++ {
			if _, err := u.nextPDV(); err != nil {
				break
			}
			if _, err := io.CopyN(io.Discard, readerFunc(u.readPDVData), int64(u.pdvLeft)); err != nil {
				break
			}
		}
	})
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

func normPDVs(p []pdv) []pdv {
	for i := range p {
		if len(p[i].Data) == 0 {
			p[i].Data = nil
		}
	}
	return p
}

// sameAssociate compares what encodeAssociate can express (UIDs lose padding,
// AE titles are trimmed, at most one TS per AC context).
func sameAssociate(a, b *associate, typ byte) bool {
	if a.CalledAE != b.CalledAE || a.CallingAE != b.CallingAE || a.AppContext != b.AppContext || a.MaxPDU != b.MaxPDU ||
		a.ImplClassUID != b.ImplClassUID || a.HasAsync != b.HasAsync || len(a.Contexts) != len(b.Contexts) || len(a.Roles) != len(b.Roles) {
		return false
	}
	for i := range a.Contexts {
		x, y := a.Contexts[i], b.Contexts[i]
		if x.ID != y.ID || x.AbstractSyntax != y.AbstractSyntax && typ == pduAssociateRQ || len(x.TransferSyntaxes) != len(y.TransferSyntaxes) || x.Result != y.Result {
			return false
		}
	}
	return true
}

// FuzzDecodeCommand decodes arbitrary command sets; whatever decodes must
// survive an encode/decode round trip.
func FuzzDecodeCommand(f *testing.F) {
	f.Add((&command{Field: cmdCEchoRQ, MessageID: 1, AffectedSOPClassUID: VerificationSOPClass, DataSetType: commandDataSetNone}).encode())
	f.Add((&command{Field: cmdCStoreRQ, MessageID: 7, AffectedSOPClassUID: CTImageStorage, AffectedSOPInstanceUID: "1.2.3", Priority: 2, MoveOriginatorAE: "MOVER", MoveOriginatorMessageID: 3}).encode())
	f.Add((&command{Field: cmdCStoreRSP, MessageIDRespondedTo: 7, AffectedSOPClassUID: CTImageStorage, AffectedSOPInstanceUID: "1.2.3", DataSetType: commandDataSetNone, Status: StatusOutOfResources, ErrorComment: "disk full"}).encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeCommand(b)
		if err != nil {
			return
		}
		c2, err := decodeCommand(c.encode())
		if err != nil {
			t.Fatalf("re-encoded command does not decode: %v", err)
		}
		if c2.Field != c.Field || c2.AffectedSOPClassUID != c.AffectedSOPClassUID || c2.DataSetType != c.DataSetType ||
			c2.AffectedSOPInstanceUID != c.AffectedSOPInstanceUID {
			t.Fatalf("round trip changed the command:\n%+v\n%+v", c, c2)
		}
	})
}

// TestWriteFuzzCorpus regenerates testdata/fuzz seed files when
// DIMSE_WRITE_CORPUS is set; otherwise it checks they exist.
func TestWriteFuzzCorpus(t *testing.T) {
	corpus := map[string][][]byte{
		"FuzzAssociation": associationSeeds(),
		"FuzzDecodePDU":   {seedAssociateRQ(), seedEcho(), seedStore(3), encodeReject(1, 1, 3), encodeAbort(0, 0), encodeRelease(pduReleaseRQ)},
		"FuzzClient":      {encodeReject(1, 1, 3), encodeAbort(2, 0)},
		"FuzzStateMachine": {
			{byte(evSendAssocRQ), byte(evRecvAssocAC), byte(evSendPData), byte(evRecvPData), byte(evSendReleaseRQ), byte(evRecvReleaseRP)},
			{0, byte(evRecvAssocRQ), byte(evSendAssocAC), byte(evRecvPData), byte(evRecvReleaseRQ), byte(evSendReleaseRP), byte(evRecvInvalid)},
			{0, byte(evRecvPData), byte(evRecvAssocRQ)},
		},
		"FuzzDecodeCommand": {(&command{Field: cmdCStoreRQ, MessageID: 9, AffectedSOPClassUID: MRImageStorage, AffectedSOPInstanceUID: "1.2.840.1"}).encode()},
	}
	for name, seeds := range corpus {
		dir := filepath.Join("testdata", "fuzz", name)
		if os.Getenv("DIMSE_WRITE_CORPUS") == "" {
			if entries, err := os.ReadDir(dir); err != nil || len(entries) == 0 {
				t.Errorf("no seed corpus in %s (run with DIMSE_WRITE_CORPUS=1)", dir)
			}
			continue
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, s := range seeds {
			body := "go test fuzz v1\n[]byte(" + strconv.Quote(string(s)) + ")\n"
			if err := os.WriteFile(filepath.Join(dir, "seed"+strconv.Itoa(i)), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// FuzzClient plays an SCP answering with arbitrary bytes: association
// negotiation, C-ECHO, C-STORE and release on the client side must end with
// an error or success, never a panic or a hang.
func FuzzClient(f *testing.F) {
	ac := encodeAssociate(pduAssociateAC, &associate{ProtocolVersion: 1, CalledAE: "NODE", CallingAE: "FUZZ", AppContext: ApplicationContextName,
		Contexts: []PresentationContext{{ID: 1, Result: ContextAccepted, TransferSyntax: dcm.ImplicitVRLittleEndian},
			{ID: 3, Result: ContextAccepted, TransferSyntax: dcm.ExplicitVRLittleEndian}}, MaxPDU: 4096, ImplClassUID: "1.2"})
	echoRsp := encodePData(pdv{ContextID: 1, Command: true, Last: true, Data: (&command{Field: cmdCEchoRSP, MessageIDRespondedTo: 1,
		AffectedSOPClassUID: VerificationSOPClass, DataSetType: commandDataSetNone}).encode()})
	storeRsp := encodePData(pdv{ContextID: 3, Command: true, Last: true, Data: (&command{Field: cmdCStoreRSP, MessageIDRespondedTo: 2,
		AffectedSOPClassUID: CTImageStorage, AffectedSOPInstanceUID: "1.2.3", DataSetType: commandDataSetNone, Status: StatusOutOfResources, ErrorComment: "full"}).encode()})
	f.Add(bytes.Join([][]byte{ac, echoRsp, storeRsp, encodeRelease(pduReleaseRP)}, nil))
	f.Add(encodeReject(1, 1, 3))
	f.Add(bytes.Join([][]byte{ac, encodeAbort(2, 0)}, nil))
	f.Add(bytes.Join([][]byte{ac, storeRsp, echoRsp}, nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		conn := &bytesConn{r: bytes.NewReader(data)}
		ctx := context.Background()
		cfg := ClientConfig{CallingAE: "FUZZ", CalledAE: "NODE", MaxPDU: 1 << 16, DialTimeout: time.Second, DIMSETimeout: time.Second}
		c, err := associateOn(ctx, conn, cfg, DefaultContexts()[:2])
		if err != nil {
			return
		}
		_ = c.Echo(ctx)
		_, _ = c.Store(ctx, StoreItem{SOPClassUID: CTImageStorage, SOPInstanceUID: "1.2.3", TransferSyntaxUID: dcm.ExplicitVRLittleEndian, DataSet: make([]byte, 5000)})
		_ = c.Release(ctx)
	})
}

// FuzzConvertDataSet feeds arbitrary data sets to the syntax converter in
// both directions: it must never panic nor read past a length. (Converting
// back need not succeed: an implicit VR comes from the dictionary, which
// garbage need not agree with.)
func FuzzConvertDataSet(f *testing.F) {
	for _, ts := range []string{dcm.ExplicitVRLittleEndian, dcm.ImplicitVRLittleEndian} {
		p := makeSeries(f, f.TempDir(), synthSpec{N: 1, Size: 4, TS: ts, Sequence: true})[0]
		_, ds := readInstance(f, p)
		f.Add(ds, ts == dcm.ImplicitVRLittleEndian)
	}
	f.Fuzz(func(t *testing.T, ds []byte, implicit bool) {
		from, to := dcm.ExplicitVRLittleEndian, dcm.ImplicitVRLittleEndian
		if implicit {
			from, to = to, from
		}
		_, _ = ConvertDataSet(ds, from, to)
	})
}
