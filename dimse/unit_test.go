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

func TestConvertDataSetRoundTrip(t *testing.T) {
	for _, from := range []string{ImplicitVRLittleEndian, ExplicitVRLittleEndian} {
		f := makeSeries(t, t.TempDir(), synthSpec{N: 1, TS: from, Sequence: true})[0]
		_, ds := readInstance(t, f)
		for _, to := range []string{ImplicitVRLittleEndian, ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian} {
			if to == from {
				continue
			}
			conv, err := ConvertDataSet(ds, from, to)
			if err != nil {
				t.Fatalf("%s -> %s: %v", from, to, err)
			}
			plain, plainTS := conv, to
			if to == DeflatedExplicitVRLittleEndian {
				if plain, err = ConvertDataSet(conv, to, ExplicitVRLittleEndian); err != nil {
					t.Fatal(err)
				}
				plainTS = ExplicitVRLittleEndian
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
