package drills

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"anomalynode/internal/peers"
)

// TestPoisonWork feeds a running node (batch 4) work that used to stop it or
// hold up its series: two series of different matrix size sent interleaved, so
// that their slices share model batches (a 64x64 and a 32x32 slice once
// panicked the node, and the redelivery panicked it again after each restart),
// and a slice whose header promises more pixels than it carries (it is stored,
// then cannot be decoded). The node must stay up, every series must get its
// outputs (the poison one without its bad slice), and the bad slice must be set
// aside with its reason: counted, listed by 'anomalynode exports poison', and
// replayable ('exports poison --replay'; it fails again and is set aside again).
func TestPoisonWork(t *testing.T) {
	setup(t)
	c, out := defaultConfig(t)
	// A listening embedded NATS lets 'exports poison' read the running node.
	c.natsListen = fmt.Sprintf("127.0.0.1:%d", peers.FreePort(t))
	n := startNode(t, c)

	big := synthSeries(t, 1, 4, fx.rows, fx.cols)[0]
	small := synthSeries(t, 1, 4, fx.rows/2, fx.cols/2)[0]
	poisoned := synthSeries(t, 1, 3, fx.rows, fx.cols)[0]
	bad := filepath.Join(t.TempDir(), "bad.dcm")
	b, err := os.ReadFile(poisoned[1])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, b, 0o644); err != nil {
		t.Fatal(err)
	}
	// Twice the rows the pixel data holds: a well-formed file the decoder
	// must refuse.
	mod := exec.Command(peers.Tool(t, "dcmodify"), "-nb", "-m", fmt.Sprintf("(0028,0010)=%d", 2*fx.rows), bad)
	mod.Env = peers.DcmtkEnv()
	if b, err := mod.CombinedOutput(); err != nil {
		t.Fatalf("dcmodify: %v\n%s", err, b)
	}
	badSOP := fileMeta(t, bad).MediaStorageSOPInstanceUID
	var files []string
	for i := range big {
		files = append(files, big[i], small[i])
	}
	files = append(files, poisoned[0], bad, poisoned[2])
	if res := storeFiles(t.Context(), c.dimse, "SCANNER", files); res.err != nil || len(res.acked) != len(files) {
		t.Fatalf("store: %d of %d acknowledged, %v", len(res.acked), len(files), res.err)
	}

	// A SEG per series, and a heat map per good slice.
	want := 3 + 4 + 4 + 2
	var outs []output
	waitFor(t, 90*time.Second, func() string {
		return fmt.Sprintf("%d objects in the folder destination, want %d; node alive %v; scored %v, failed %v", len(outs), want,
			n.alive(), n.metrics().Sum("anomalynode_slices_scored_total"), n.metrics().Sum("anomalynode_slices_failed_total"))
	}, func() bool {
		outs = readOutputs(t, out)
		return len(outs) >= want || !n.alive()
	})
	if !n.alive() {
		t.Fatalf("the node died:\n%s", n.logTail(4000))
	}
	segs := map[string]bool{}
	for _, o := range outs {
		if o.sopClass == segClass {
			for _, r := range o.refs {
				segs[r] = true
			}
		}
	}
	for name, s := range map[string][]string{"64x64": big, "32x32": small, "poisoned": {poisoned[0], poisoned[2]}} {
		for _, f := range s {
			if sop := fileMeta(t, f).MediaStorageSOPInstanceUID; !segs[sop] {
				t.Errorf("series %s: slice %s is in no SEG", name, sop)
			}
		}
	}
	if segs[badSOP] {
		t.Errorf("the undecodable slice %s is in a SEG", badSOP)
	}
	m := n.metrics()
	if got := m.Sum("anomalynode_slices_scored_total"); got != 10 {
		t.Errorf("slices scored %v, want 10", got)
	}
	if got := m.Sum("anomalynode_ingest_work_dead_lettered_total", `stage="slice"`); got != 1 {
		t.Errorf("slices set aside %v, want 1", got)
	}
	if got := n.logCount(`"sop":"`+badSOP+`"`, "set aside"); got == 0 {
		t.Error("no log line names the slice set aside")
	}
	listed, err := runBin("exports", "poison", "--config", n.cfgPath, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, l := range strings.Split(strings.TrimSpace(listed), "\n") {
		var d struct {
			Stage, Reason string
			SOP           string `json:"sop_instance_uid"`
		}
		if json.Unmarshal([]byte(l), &d) == nil && d.SOP == badSOP && d.Stage == "slice" && d.Reason != "" {
			found = true
		}
	}
	if !found {
		t.Errorf("exports poison does not list %s:\n%s", badSOP, listed)
	}
	// Replayed with its cause not fixed, the slice fails again and is set
	// aside again: the node still stays up.
	if out, err := runBin("exports", "poison", "--replay", "--config", n.cfgPath); err != nil || !strings.Contains(out, "replayed 1 work item(s)") {
		t.Fatalf("exports poison --replay: %v\n%s", err, out)
	}
	waitFor(t, 60*time.Second, func() string {
		return fmt.Sprintf("set aside %v times, want 2", n.metrics().Sum("anomalynode_ingest_work_dead_lettered_total"))
	}, func() bool {
		return n.metrics().Sum("anomalynode_ingest_work_dead_lettered_total", `stage="slice"`) == 2
	})
	if listed, err := runBin("exports", "poison", "--config", n.cfgPath); err != nil || !strings.Contains(listed, "1 work item(s) set aside") {
		t.Errorf("after the replay: %v\n%s", err, listed)
	}
	if !n.alive() {
		t.Fatal("the node died after the replay")
	}
}
