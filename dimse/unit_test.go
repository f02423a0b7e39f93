package dimse

import (
	"os/exec"
	"testing"
)

func TestMakeSeriesParsesInDcmdump(t *testing.T) {
	dir := t.TempDir()
	for _, ts := range []string{ExplicitVRLittleEndian, ImplicitVRLittleEndian} {
		p := makeSeries(t, dir, synthSpec{N: 1, TS: ts, Sequence: true})
		out, err := exec.Command("dcmdump", "-q", p[0]).CombinedOutput()
		if err != nil {
			t.Fatalf("dcmdump %s: %v\n%s", ts, err, out)
		}
		t.Logf("%s", out)
	}
}
