package drills

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"anomalynode/internal/peers"
)

// TestCompressedSources sends the running node series the way many archives
// hold them, JPEG Lossless compressed (Process 14 SV1, 1.2.840.10008.1.2.4.70,
// and Process 14 with selection value 6, 1.2.840.10008.1.2.4.57) or JPEG-LS
// (lossless .4.80 and near-lossless .4.81), with dcmtk's dcmsend proposing
// each file's own transfer syntax and never decompressing: the SCP must accept
// the compressed contexts by default, the node must decode every slice, and
// each series must get its SEG and heat maps with nothing failed.
func TestCompressedSources(t *testing.T) {
	setup(t)
	c, out := defaultConfig(t)
	n := startNode(t, c)

	const slicesPer = 4
	variants := []struct {
		name, ts string
		args     []string
	}{
		{"sv1", "1.2.840.10008.1.2.4.70", []string{"+e1"}},
		{"sv6", "1.2.840.10008.1.2.4.57", []string{"+el", "+sv", "6"}},
		{"jls", "1.2.840.10008.1.2.4.80", nil},
		{"jls-near", "1.2.840.10008.1.2.4.81", []string{"+en"}},
	}
	series := synthSeries(t, len(variants), slicesPer, fx.rows, fx.cols)
	dir := t.TempDir()
	var files []string
	for i, v := range variants {
		for k, src := range series[i] {
			dst := filepath.Join(dir, fmt.Sprintf("%s-%02d.dcm", v.name, k))
			tool := "dcmcjpeg"
			if strings.HasPrefix(v.name, "jls") {
				tool = "dcmcjpls"
			}
			cmd := exec.Command(peers.Tool(t, tool), append(v.args, src, dst)...)
			cmd.Env = peers.DcmtkEnv()
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s %v: %v\n%s", tool, v.args, err, b)
			}
			// Lossy compression makes the image DERIVED, and a DERIVED image of
			// synth's manufacturer ("anomalynode") is dropped by the node as
			// its own output coming back: name a scanner, as a real one would.
			mod := exec.Command(peers.Tool(t, "dcmodify"), "-nb", "-m", "(0008,0070)=ACME Scanner", dst)
			mod.Env = peers.DcmtkEnv()
			if b, err := mod.CombinedOutput(); err != nil {
				t.Fatalf("dcmodify: %v\n%s", err, b)
			}
			if got := fileMeta(t, dst).TransferSyntaxUID; got != v.ts {
				t.Fatalf("%s %v wrote %s, want %s", tool, v.args, got, v.ts)
			}
			files = append(files, dst)
		}
	}

	host, port, _ := strings.Cut(c.dimse, ":")
	// dcmsend proposes each file's own syntax; -dn forbids falling back to
	// decompressing, so a refused JPEG context fails the send.
	cmd := exec.Command(peers.Tool(t, "dcmsend"), append([]string{"-dn", "-aet", "PACS", "-aec", nodeAE, host, port}, files...)...)
	cmd.Env = peers.DcmtkEnv()
	// dcmsend exits 0 even when no presentation context was accepted: its
	// "E:" lines are what say so.
	if b, err := cmd.CombinedOutput(); err != nil || strings.Contains("\n"+string(b), "\nE: ") {
		t.Fatalf("dcmsend: %v\n%s", err, b)
	}

	total := len(variants) * slicesPer
	want := len(variants) * (1 + slicesPer) // a SEG and one SC per slice, per series
	var outs []output
	waitFor(t, 60*time.Second, func() string {
		return fmt.Sprintf("%d objects in the folder destination, want %d; scored %v, failed %v", len(outs), want,
			n.metrics().Sum("anomalynode_slices_scored_total"), n.metrics().Sum("anomalynode_slices_failed_total"))
	}, func() bool {
		outs = readOutputs(t, out)
		return len(outs) >= want
	})
	if got := n.metrics().Sum("anomalynode_slices_scored_total"); got != float64(total) {
		t.Errorf("slices scored %v, want %d", got, total)
	}
	if got := n.metrics().Sum("anomalynode_slices_failed_total"); got != 0 {
		t.Errorf("slices failed %v, want 0", got)
	}
	segs := 0
	for _, o := range outs {
		if o.sopClass == segClass {
			segs++
			if errs := dciodvfyErrors(t, o.path); len(errs) > 0 {
				t.Errorf("%s: dciodvfy: %v", o.path, errs)
			}
		}
	}
	if segs != len(variants) {
		t.Errorf("%d SEGs, want %d", segs, len(variants))
	}
}
