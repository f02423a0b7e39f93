package dimse

import (
	"context"
	"fmt"
	"os/exec"
	"sync"
	"testing"
	"time"

	"anomalynode/internal/dcm"
	"anomalynode/internal/peers"
)

// runTool runs a dcmtk program and fails the test with its output on error.
func runTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, peers.Tool(t, name), args...)
	cmd.Env = dcmtkEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// dcmtkEnv disables Nagle's algorithm in dcmtk tools (TCP_NODELAY=1, read by
// dcmnet); without it each small PDU waits for a delayed ACK, ~40 ms a message.
func dcmtkEnv() []string { return peers.DcmtkEnv() }

// checkArrived asserts every file arrived with its data set byte-identical
// (same transfer syntax) and with the right UIDs.
func checkArrived(t *testing.T, rec *recorder, paths []string, wantTS string) {
	t.Helper()
	if rec.count() != len(paths) {
		t.Fatalf("received %d instances, sent %d", rec.count(), len(paths))
	}
	for _, p := range paths {
		meta, ds := readInstance(t, p)
		got, ok := rec.get(meta.MediaStorageSOPInstanceUID)
		if !ok {
			t.Fatalf("%s did not arrive", meta.MediaStorageSOPInstanceUID)
		}
		if got.Req.SOPClassUID != meta.MediaStorageSOPClassUID {
			t.Errorf("SOP class %s, want %s", got.Req.SOPClassUID, meta.MediaStorageSOPClassUID)
		}
		if got.Req.TransferSyntaxUID != wantTS {
			t.Errorf("transfer syntax %s, want %s", got.Req.TransferSyntaxUID, wantTS)
		}
		sameElements(t, p, ds, meta.TransferSyntaxUID, got.Data, got.Req.TransferSyntaxUID)
	}
}

func TestEchoSCU(t *testing.T) {
	_, addr := startServer(t, ServerConfig{AETitle: "NODE", CheckCalledAE: true}, newRecorder())
	h, p := hostPort(t, addr)
	runTool(t, "echoscu", "-aet", "ECHOER", "-aec", "NODE", h, p)
}

func TestStoreSCUTransferSyntaxes(t *testing.T) {
	dir := t.TempDir()
	explicit := makeSeries(t, dir, synthSpec{N: 3, TS: dcm.ExplicitVRLittleEndian, Sequence: true})
	implicit := makeSeries(t, t.TempDir(), synthSpec{N: 3, TS: dcm.ImplicitVRLittleEndian, Sequence: true})
	cases := []struct {
		name   string
		flags  []string
		files  []string
		wantTS string
		maxPDU uint32
		ts     []string // our accepted syntaxes (default: all defaults)
	}{
		// A small maximum PDU makes storescu fragment each data set into several PDUs.
		{"small-pdu", []string{"-xe"}, explicit, dcm.ExplicitVRLittleEndian, 4096, nil},
		{"explicit-only", []string{"-xe"}, explicit, dcm.ExplicitVRLittleEndian, 0, nil},
		{"implicit-only", []string{"-xi"}, implicit, dcm.ImplicitVRLittleEndian, 0, nil},
		// storescu converts an explicit file when only implicit is proposed.
		{"implicit-only-from-explicit", []string{"-xi"}, explicit, dcm.ImplicitVRLittleEndian, 0, nil},
		{"default-proposal", nil, explicit, dcm.ExplicitVRLittleEndian, 0, nil},
		// The retired big-endian syntax is accepted and passed through as is.
		{"big-endian", []string{"-xb"}, explicit, dcm.ExplicitVRBigEndian, 0, []string{dcm.ExplicitVRBigEndian}},
		// Deflated data sets reach the handler inflated, as Explicit VR LE.
		{"deflated", []string{"-xd"}, explicit, dcm.ExplicitVRLittleEndian, 0, []string{dcm.DeflatedExplicitVRLittleEndian}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder()
			_, addr := startServer(t, ServerConfig{MaxPDU: tc.maxPDU, TransferSyntaxes: tc.ts}, rec)
			h, p := hostPort(t, addr)
			args := append([]string{"-aec", "NODE"}, tc.flags...)
			args = append(append(args, h, p), tc.files...)
			runTool(t, "storescu", args...)
			checkArrived(t, rec, tc.files, tc.wantTS)
		})
	}
}

func TestStoreSCUSeveralContexts(t *testing.T) {
	dir := t.TempDir()
	files := makeSeries(t, dir, synthSpec{N: 2, SOPClass: CTImageStorage})
	files = append(files, makeSeries(t, t.TempDir(), synthSpec{N: 2, SOPClass: MRImageStorage})...)
	files = append(files, makeSeries(t, t.TempDir(), synthSpec{N: 2, SOPClass: SecondaryCaptureImageStorage, TS: dcm.ImplicitVRLittleEndian})...)
	rec := newRecorder()
	_, addr := startServer(t, ServerConfig{}, rec)
	h, p := hostPort(t, addr)
	// --propose-lossless etc. would make storescu offer more contexts per SOP
	// class; the default already proposes one per SOP class and syntax seen.
	runTool(t, "storescu", append([]string{"-aec", "NODE", "--propose-little", h, p}, files...)...)
	for _, f := range files {
		meta, _ := readInstance(t, f)
		got, ok := rec.get(meta.MediaStorageSOPInstanceUID)
		if !ok || got.Req.SOPClassUID != meta.MediaStorageSOPClassUID {
			t.Fatalf("%s (%s) did not arrive right: %+v", f, meta.MediaStorageSOPClassUID, got.Req)
		}
	}
	// dcmsend proposes contexts per file (another code path).
	rec2 := newRecorder()
	_, addr2 := startServer(t, ServerConfig{}, rec2)
	h2, p2 := hostPort(t, addr2)
	runTool(t, "dcmsend", append([]string{"-aec", "NODE", h2, p2}, files...)...)
	if rec2.count() != len(files) {
		t.Fatalf("dcmsend: received %d, want %d", rec2.count(), len(files))
	}
}

func TestStoreSCUManyFilesOneAssociation(t *testing.T) {
	files := makeSeries(t, t.TempDir(), synthSpec{N: 120, Size: 32})
	rec := newRecorder()
	_, addr := startServer(t, ServerConfig{}, rec)
	h, p := hostPort(t, addr)
	runTool(t, "storescu", append([]string{"-aec", "NODE", h, p}, files...)...)
	checkArrived(t, rec, files, dcm.ExplicitVRLittleEndian)
}

func TestStoreSCUConcurrentAssociations(t *testing.T) {
	const assocs = 8
	rec := newRecorder()
	_, addr := startServer(t, ServerConfig{MaxAssociations: assocs}, rec)
	h, p := hostPort(t, addr)
	var all []string
	var wg sync.WaitGroup
	errs := make(chan error, assocs)
	for i := 0; i < assocs; i++ {
		files := makeSeries(t, t.TempDir(), synthSpec{N: 10, Size: 64})
		all = append(all, files...)
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(peers.Tool(t, "storescu"), append([]string{"-aec", "NODE", h, p}, files...)...)
			cmd.Env = dcmtkEnv()
			out, err := cmd.CombinedOutput()
			if err != nil {
				errs <- fmt.Errorf("storescu: %v\n%s", err, out)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	checkArrived(t, rec, all, dcm.ExplicitVRLittleEndian)
}
