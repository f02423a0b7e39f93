package dimse

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"anomalynode/internal/dcm"
)

func TestMakeSeriesParsesInDcmdump(t *testing.T) {
	dir := t.TempDir()
	for _, ts := range []string{dcm.ExplicitVRLittleEndian, dcm.ImplicitVRLittleEndian} {
		p := makeSeries(t, dir, synthSpec{N: 1, TS: ts, Sequence: true})
		out, err := exec.Command("dcmdump", "-q", p[0]).CombinedOutput()
		if err != nil {
			t.Fatalf("dcmdump %s: %v\n%s", ts, err, out)
		}
		t.Logf("%s", out)
	}
}

func TestConvertDataSetRoundTrip(t *testing.T) {
	for _, from := range []string{dcm.ImplicitVRLittleEndian, dcm.ExplicitVRLittleEndian} {
		f := makeSeries(t, t.TempDir(), synthSpec{N: 1, TS: from, Sequence: true})[0]
		_, ds := readInstance(t, f)
		for _, to := range []string{dcm.ImplicitVRLittleEndian, dcm.ExplicitVRLittleEndian, dcm.DeflatedExplicitVRLittleEndian} {
			if to == from {
				continue
			}
			conv, err := ConvertDataSet(ds, from, to)
			if err != nil {
				t.Fatalf("%s -> %s: %v", from, to, err)
			}
			plain, plainTS := conv, to
			if to == dcm.DeflatedExplicitVRLittleEndian {
				if plain, err = ConvertDataSet(conv, to, dcm.ExplicitVRLittleEndian); err != nil {
					t.Fatal(err)
				}
				plainTS = dcm.ExplicitVRLittleEndian
			}
			sameElements(t, from+"->"+to, ds, from, plain, plainTS)
			back, err := ConvertDataSet(conv, to, from)
			if err != nil {
				t.Fatal(err)
			}
			sameElements(t, "back", ds, from, back, from)
		}
	}
}

// TestCommandSetParsesInDcmdump checks our command sets against dcmtk's
// parser, including CommandGroupLength.
func TestCommandSetParsesInDcmdump(t *testing.T) {
	cmds := map[string]*command{
		"store-rq":  {Field: cmdCStoreRQ, MessageID: 7, AffectedSOPClassUID: CTImageStorage, AffectedSOPInstanceUID: "1.2.3.45", Priority: PriorityHigh, MoveOriginatorAE: "MOVER", MoveOriginatorMessageID: 3},
		"store-rsp": {Field: cmdCStoreRSP, MessageIDRespondedTo: 7, AffectedSOPClassUID: CTImageStorage, AffectedSOPInstanceUID: "1.2.3.45", DataSetType: commandDataSetNone, Status: StatusOutOfResources, ErrorComment: "disk full"},
		"echo-rq":   {Field: cmdCEchoRQ, MessageID: 1, AffectedSOPClassUID: VerificationSOPClass, DataSetType: commandDataSetNone},
	}
	for name, c := range cmds {
		b := c.encode()
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("dcmdump", "-q", "-f", "-ti", p).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: dcmdump: %v\n%s", name, err, out)
		}
		if want := fmt.Sprintf("(0000,0000) UL %d", len(b)-12); !strings.Contains(string(out), want) {
			t.Errorf("%s: dcmdump shows no %q:\n%s", name, want, out)
		}
		got, err := decodeCommand(b)
		if err != nil {
			t.Fatal(err)
		}
		// Responses carry a Status; decode reports HasStatus when it was present.
		want := *c
		want.HasStatus = c.Field&0x8000 != 0
		if *got != want {
			t.Errorf("%s: decoded %+v, want %+v", name, *got, want)
		}
	}
}

// TestFragmentationHonoursPeerMax sends a message through a pipe to a peer
// with a small maximum PDU and checks every PDU and the reassembled data.
func TestFragmentationHonoursPeerMax(t *testing.T) {
	for _, peerMax := range []uint32{4096, 16384, 0} {
		a, b := net.Pipe()
		u := newULConn(a, 0, sta6Established)
		u.peerMax = peerMax
		data := make([]byte, 100_000)
		for i := range data {
			data[i] = byte(i * 7)
		}
		cmd := (&command{Field: cmdCStoreRQ, MessageID: 1, AffectedSOPClassUID: CTImageStorage, AffectedSOPInstanceUID: "1.2"}).encode()
		go func() {
			_ = u.sendMessage(1, cmd, bytes.NewReader(data), int64(len(data)))
			a.Close()
		}()
		r := newULConn(b, peerMax, sta6Established)
		var got []byte
		pdus := 0
		for {
			var h [6]byte
			if _, err := io.ReadFull(r.br, h[:]); err != nil {
				break
			}
			n := binary.BigEndian.Uint32(h[2:])
			if peerMax != 0 && n > peerMax {
				t.Fatalf("PDU of %d bytes to a peer accepting %d", n, peerMax)
			}
			body := make([]byte, n)
			if _, err := io.ReadFull(r.br, body); err != nil {
				t.Fatal(err)
			}
			pdvs, err := decodePData(body)
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range pdvs {
				if !v.Command {
					got = append(got, v.Data...)
				}
			}
			pdus++
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("peer max %d: reassembled %d bytes, want %d", peerMax, len(got), len(data))
		}
		t.Logf("peer max %d: %d PDUs", peerMax, pdus)
	}
}

func TestStatusClasses(t *testing.T) {
	cases := []struct {
		s                         Status
		success, warning, failure bool
	}{
		{StatusSuccess, true, false, false},
		{StatusWarningCoercion, false, true, false},
		{StatusWarningElementsDiscarded, false, true, false},
		{StatusWarningDataSetMismatch, false, true, false},
		{StatusWarningAttributeListError, false, true, false},
		{StatusOutOfResources, false, false, true},
		{0xA7FF, false, false, true},
		{StatusDataSetMismatch, false, false, true},
		{StatusCannotUnderstand, false, false, true},
		{0xC123, false, false, true},
		{StatusProcessingFailure, false, false, true},
		{StatusSOPClassNotSupported, false, false, true},
		{StatusPending, false, false, false},
		{StatusCancel, false, false, false},
	}
	for _, c := range cases {
		if c.s.IsSuccess() != c.success || c.s.IsWarning() != c.warning || c.s.IsFailure() != c.failure {
			t.Errorf("%v: success %v warning %v failure %v", c.s, c.s.IsSuccess(), c.s.IsWarning(), c.s.IsFailure())
		}
	}
}

// TestConcurrentAbortsSendOneAbort: Shutdown and the association's own
// goroutine may abort the same connection at once; the peer must still
// receive an A-ABORT before the transport closes, never a bare close (one
// abort's deadline used to cut the other's write short).
func TestConcurrentAbortsSendOneAbort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := 0; i < 300; i++ {
		peer, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		u := newULConn(c, 0, sta6Established)
		var wg sync.WaitGroup
		for k := 0; k < 2; k++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				u.abort(abortSourceUser, abortReasonNone)
			}()
		}
		_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, _ := io.ReadAll(peer)
		wg.Wait()
		peer.Close()
		if len(got) == 0 || got[0] != pduAbort {
			t.Fatalf("attempt %d: the peer read % x before the close, want an A-ABORT PDU", i, got)
		}
		if want := encodeAbort(abortSourceUser, abortReasonNone); !bytes.Equal(got, want) {
			t.Fatalf("attempt %d: the peer read % x, want one A-ABORT % x", i, got, want)
		}
	}
}
