package dimse

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"anomalynode/internal/dcm"
	"anomalynode/internal/peers"
)

// startStoreSCP runs dcmtk's storescp (verbose log shown on failure).
func startStoreSCP(t *testing.T, extra ...string) (addr, dir string) {
	t.Helper()
	s := peers.StartStoreSCP(t, "STORESCP", append([]string{"-d"}, extra...)...)
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(s.Log)
			t.Logf("storescp log:\n%s", b)
		}
	})
	return s.Addr(), s.Dir
}

func waitPort(t testing.TB, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("nothing listens on %s", addr)
}

func TestClientAgainstStoreSCP(t *testing.T) {
	addr, dir := startStoreSCP(t)
	explicit := makeSeries(t, t.TempDir(), synthSpec{N: 3, TS: dcm.ExplicitVRLittleEndian, Sequence: true})
	implicit := makeSeries(t, t.TempDir(), synthSpec{N: 2, TS: dcm.ImplicitVRLittleEndian, Sequence: true})
	ctx := context.Background()
	c, err := Dial(ctx, addr, ClientConfig{CallingAE: "NODE", CalledAE: "STORESCP", MaxPDU: 16384})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Echo(ctx); err != nil {
		t.Fatal(err)
	}
	for _, f := range append(append([]string{}, explicit...), implicit...) {
		st, err := c.StoreFile(ctx, f)
		if err != nil || !st.IsSuccess() {
			t.Fatalf("StoreFile %s: %v %v", f, st, err)
		}
	}
	if err := c.Release(ctx); err != nil {
		t.Fatal(err)
	}
	// storescp names files <modality>.<SOP instance UID>.
	for _, f := range append(append([]string{}, explicit...), implicit...) {
		meta, ds := readInstance(t, f)
		gm, gds := readInstance(t, filepath.Join(dir, "CT."+meta.MediaStorageSOPInstanceUID))
		sameElements(t, f, ds, meta.TransferSyntaxUID, gds, gm.TransferSyntaxUID)
	}

	// Only Explicit VR LE proposed: the implicit files are converted by us.
	c, err = Dial(ctx, addr, ClientConfig{CalledAE: "STORESCP", Contexts: []PresentationContext{
		{AbstractSyntax: CTImageStorage, TransferSyntaxes: []string{dcm.ExplicitVRLittleEndian}}}})
	if err != nil {
		t.Fatal(err)
	}
	conv := makeSeries(t, t.TempDir(), synthSpec{N: 2, TS: dcm.ImplicitVRLittleEndian, Sequence: true})
	for _, f := range conv {
		if st, err := c.StoreFile(ctx, f); err != nil || !st.IsSuccess() {
			t.Fatalf("StoreFile %s: %v %v", f, st, err)
		}
	}
	if err := c.Release(ctx); err != nil {
		t.Fatal(err)
	}
	for _, f := range conv {
		meta, ds := readInstance(t, f)
		gm, gds := readInstance(t, filepath.Join(dir, "CT."+meta.MediaStorageSOPInstanceUID))
		if gm.TransferSyntaxUID != dcm.ExplicitVRLittleEndian {
			t.Errorf("stored as %s, want explicit", gm.TransferSyntaxUID)
		}
		sameElements(t, f, ds, meta.TransferSyntaxUID, gds, gm.TransferSyntaxUID)
	}
}

// orthancFile downloads the stored file of the instance with the given SOP
// instance UID from Orthanc.
func orthancFile(t *testing.T, o *peers.Orthanc, sopInstanceUID string) (FileMeta, []byte) {
	t.Helper()
	b, err := o.Post("/tools/lookup", sopInstanceUID)
	if err != nil {
		t.Fatal(err)
	}
	var found []struct{ ID, Type string }
	if err := json.Unmarshal(b, &found); err != nil || len(found) != 1 {
		t.Fatalf("lookup %s: %s (%v)", sopInstanceUID, b, err)
	}
	file, err := o.Get("/instances/" + found[0].ID + "/file")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "orthanc.dcm")
	if err := os.WriteFile(p, file, 0o644); err != nil {
		t.Fatal(err)
	}
	return readInstance(t, p)
}

func TestOrthancBothWays(t *testing.T) {
	rec := newRecorder()
	_, addr := startServer(t, ServerConfig{AETitle: "NODE", CheckCalledAE: true,
		AllowedCallers: []AllowedCaller{{AETitle: "ARCHIVE", Host: "127.0.0.1"}, {AETitle: "TESTSCU"}}}, rec)
	_, port := hostPort(t, addr)
	p, _ := strconv.Atoi(port)
	o := peers.StartOrthanc(t, []peers.Modality{{Name: "node", AET: "NODE", Host: "127.0.0.1", Port: p}}, nil)
	ctx := context.Background()

	// Our SCU -> Orthanc, including an implicit file sent over an
	// explicit-only context (converted).
	explicit := makeSeries(t, t.TempDir(), synthSpec{N: 4, Size: 128, Sequence: true})
	implicit := makeSeries(t, t.TempDir(), synthSpec{N: 2, TS: dcm.ImplicitVRLittleEndian, Sequence: true})
	c, err := Dial(ctx, fmt.Sprintf("127.0.0.1:%d", o.DicomPort), ClientConfig{CallingAE: "TESTSCU", CalledAE: o.AET,
		Contexts: []PresentationContext{{AbstractSyntax: VerificationSOPClass, TransferSyntaxes: []string{dcm.ImplicitVRLittleEndian}},
			{AbstractSyntax: CTImageStorage, TransferSyntaxes: []string{dcm.ExplicitVRLittleEndian}}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Echo(ctx); err != nil {
		t.Fatal(err)
	}
	all := append(append([]string{}, explicit...), implicit...)
	for _, f := range all {
		if st, err := c.StoreFile(ctx, f); err != nil || !st.IsSuccess() {
			t.Fatalf("StoreFile %s: %v %v\n%s", f, st, err, o.Log())
		}
	}
	if err := c.Release(ctx); err != nil {
		t.Fatal(err)
	}
	for _, f := range all {
		meta, ds := readInstance(t, f)
		gm, gds := orthancFile(t, o, meta.MediaStorageSOPInstanceUID)
		sameElements(t, f, ds, meta.TransferSyntaxUID, gds, gm.TransferSyntaxUID)
	}

	// Orthanc -> our SCP (C-STORE SCU initiated over REST).
	ids, err := o.Instances()
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{"Resources": ids, "Synchronous": true})
	if out, err := o.Post("/modalities/node/store", string(body)); err != nil {
		t.Fatalf("Orthanc store to node: %v %s\n%s", err, out, o.Log())
	}
	if rec.count() != len(all) {
		t.Fatalf("our SCP received %d instances from Orthanc, want %d", rec.count(), len(all))
	}
	for _, f := range all {
		meta, ds := readInstance(t, f)
		got, ok := rec.get(meta.MediaStorageSOPInstanceUID)
		if !ok {
			t.Fatalf("%s not received", meta.MediaStorageSOPInstanceUID)
		}
		if got.Req.Assoc.CallingAE != "ARCHIVE" || got.Req.Assoc.CalledAE != "NODE" {
			t.Errorf("AE titles %q -> %q", got.Req.Assoc.CallingAE, got.Req.Assoc.CalledAE)
		}
		sameElements(t, f, ds, meta.TransferSyntaxUID, got.Data, got.Req.TransferSyntaxUID)
	}
	if out, err := o.Post("/modalities/node/echo", "{}"); err != nil {
		t.Fatalf("Orthanc echo to node: %v %s", err, out)
	}
}
