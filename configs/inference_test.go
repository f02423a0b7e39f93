package configs

import "testing"

// TestInferenceDefaults checks the defaults the inference engine relies on.
func TestInferenceDefaults(t *testing.T) {
	c, err := Parse([]byte("models:\n  m:\n    path: m.safetensors\n    embedder: e.onnx\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	in := c.Inference
	if in.Device != "cpu" || in.Batch != 4 || in.GraphOptimization != "all" || in.TopFraction != 0.01 || in.Threads != 0 || in.Nice == nil || *in.Nice != DefaultNice {
		t.Errorf("unexpected inference defaults: %+v", in)
	}
	m := c.Models["m"]
	if m.FPR != 0.01 || m.FPRKey() != "0.01" || !m.Verify() || m.VOI != "" || m.SeriesFPR != nil || m.MinVolumeMM3 != nil {
		t.Errorf("unexpected model defaults: %+v", m)
	}
	c, err = Parse([]byte("models:\n  m:\n    path: m\n    embedder: e\n    fpr: 0.1\n    verify_embedder: false\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if m := c.Models["m"]; m.FPRKey() != "0.10" || m.Verify() {
		t.Errorf("fpr 0.1 / verify false: %+v", m)
	}
	// nice: unset is the default, 0 is off.
	c, err = Parse([]byte("inference:\n  nice: 0\nmodels:\n  m:\n    path: m\n    embedder: e\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if n := c.Inference.Nice; n == nil || *n != 0 {
		t.Errorf("nice 0: %v", n)
	}
	// Finding limits: unset means "as fitted" (nil), 0 is a value.
	c, err = Parse([]byte("models:\n  m:\n    path: m\n    embedder: e\n    series_fpr: 0\n    min_volume_mm3: 250\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if m := c.Models["m"]; m.SeriesFPR == nil || *m.SeriesFPR != 0 || m.MinVolumeMM3 == nil || *m.MinVolumeMM3 != 250 {
		t.Errorf("series_fpr 0 / min_volume_mm3 250: %+v", m)
	}
}
