package ingest

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/suyashkumar/dicom/pkg/tag"

	"anomalynode/configs"
)

func TestExplainFile(t *testing.T) {
	cfg, err := configs.Load("../configs/testdata/ingest_routes.good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r, _ := NewRouter(cfg.Routes, cfg.Ingest.SeriesTimeout)
	dir := t.TempDir()
	ct := inst{series: "3.1", sop: "3.1.1", extra: []el{
		str(tag.BodyPartExamined, "CS", "CHEST"), str(tag.SeriesDescription, "LO", "lung 1mm"), str(tag.ImageType, "CS", `ORIGINAL\PRIMARY\AXIAL`),
	}}
	writeFile(t, filepath.Join(dir, "ct.dcm"), ct.part10())
	writeFile(t, filepath.Join(dir, "junk.txt"), []byte("hello"))
	var out bytes.Buffer
	for _, f := range []string{"ct.dcm", "junk.txt"} {
		ex, err := ExplainFile(r, filepath.Join(dir, f), Source{Kind: SourceNetwork, CallingAE: "CT7"})
		if err != nil {
			t.Fatal(err)
		}
		ex.Write(&out)
	}
	for _, want := range []string{
		`ct.dcm: rule "ct-chest" -> model "ct-chest", destinations [pacs]`,
		`rule "no-localizers" did not match: image_type: "ORIGINAL\PRIMARY\AXIAL" lacks LOCALIZER`,
		`because calling_ae: "CT7" matches "CT*"`,
		`because slice_thickness: 1.5 within [0.5, 3]`,
		`junk.txt: skipped: not a DICOM file`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	writeFile(t, filepath.Join(dir, "bad.dcm"), ct.part10()[:150])
	if _, err := ExplainFile(r, filepath.Join(dir, "bad.dcm"), Source{Kind: SourceFolder}); err == nil {
		t.Error("malformed file explained without error")
	}
}
