package ingest

import (
	"strings"
	"testing"
	"time"

	"github.com/suyashkumar/dicom/pkg/tag"

	"anomalynode/configs"
)

func header(kv map[tag.Tag]string) *Header {
	h := &Header{HasPixelData: true}
	for t, v := range kv {
		h.Set(t, v)
	}
	return h
}

func TestRouteTable(t *testing.T) {
	cfg, err := configs.Load("../configs/testdata/ingest_routes.good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewRouter(cfg.Routes, cfg.Ingest.SeriesTimeout)
	if err != nil {
		t.Fatal(err)
	}
	net := func(calling string) Source { return Source{Kind: SourceNetwork, CallingAE: calling, CalledAE: "NODE"} }
	ctChest := map[tag.Tag]string{
		tag.SOPClassUID: ctImage, tag.Modality: "CT", tag.BodyPartExamined: "CHEST",
		tag.SeriesDescription: "Thorax LUNG 1.0", tag.SliceThickness: "1.0", tag.ImageType: `ORIGINAL\PRIMARY\AXIAL`,
	}
	with := func(base map[tag.Tag]string, k tag.Tag, v string) map[tag.Tag]string {
		m := map[tag.Tag]string{}
		for a, b := range base {
			m[a] = b
		}
		if v == "" {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	mr := map[tag.Tag]string{
		tag.SOPClassUID: "1.2.840.10008.5.1.4.1.1.4", tag.Modality: "MR", tag.ProtocolName: "t1_mprage_sag",
		tag.Manufacturer: "SIEMENS", tag.MagneticFieldStrength: "3",
	}
	tests := []struct {
		name   string
		src    Source
		attrs  map[tag.Tag]string
		pixels bool
		rule   string
		ignore bool
		why    string // substring of the reasons
	}{
		{"ct chest", net("CT_ROOM1"), ctChest, true, "ct-chest", false, `"CT_ROOM1" matches "CT*"`},
		{"lowercase body part", net("CT2"), with(ctChest, tag.BodyPartExamined, "lung"), true, "ct-chest", false, "body_part"},
		{"wrong sender", net("MR1"), ctChest, true, "everything-else", true, "fallback"},
		{"too thick", net("CT1"), with(ctChest, tag.SliceThickness, "5"), true, "everything-else", true, ""},
		{"thickness absent", net("CT1"), with(ctChest, tag.SliceThickness, ""), true, "everything-else", true, ""},
		{"description mismatch", net("CT1"), with(ctChest, tag.SeriesDescription, "Abdomen"), true, "everything-else", true, ""},
		{"localizer first", net("CT1"), with(ctChest, tag.ImageType, `ORIGINAL\PRIMARY\LOCALIZER`), true, "no-localizers", true, "LOCALIZER"},
		{"folder CT not from CT AE", Source{Kind: SourceFolder, Path: "/srv/dicom-in/a.dcm"}, ctChest, true, "everything-else", true, ""},
		{"mr network", net("ANY"), mr, true, "mr-brain-t1", false, `tags.Manufacturer`},
		{"mr research folder", Source{Kind: SourceFolder, Path: "/srv/dicom-in/research/x.dcm"}, mr, true, "mr-brain-t1", false, "matches"},
		{"mr other folder", Source{Kind: SourceFolder, Path: "/srv/dicom-in/clinic/x.dcm"}, mr, true, "everything-else", true, ""},
		{"mr 7T", net("ANY"), with(mr, tag.MagneticFieldStrength, "7"), true, "everything-else", true, ""},
		{"SR never", net("CT1"), with(ctChest, tag.SOPClassUID, "1.2.840.10008.5.1.4.1.1.88.22"), true, NonImageRule, true, "structured report"},
		{"SEG never", net("CT1"), with(ctChest, tag.SOPClassUID, "1.2.840.10008.5.1.4.1.1.66.4"), true, NonImageRule, true, "segmentation"},
		{"PR never", net("CT1"), with(ctChest, tag.SOPClassUID, "1.2.840.10008.5.1.4.1.1.11.1"), true, NonImageRule, true, "presentation state"},
		{"KO never", net("CT1"), with(ctChest, tag.SOPClassUID, "1.2.840.10008.5.1.4.1.1.88.59"), true, NonImageRule, true, ""},
		{"our SC back", net("CT1"), with(with(ctChest, tag.Manufacturer, "anomalynode"), tag.SOPClassUID, "1.2.840.10008.5.1.4.1.1.7"), true, OwnOutputRule, true, "own output"},
		{"our derived back", net("CT1"), with(with(ctChest, tag.Manufacturer, "anomalynode"), tag.ImageType, `DERIVED\SECONDARY`), true, OwnOutputRule, true, "own output"},
		{"synthetic original", net("CT1"), with(ctChest, tag.Manufacturer, "anomalynode"), true, "ct-chest", false, "modality"},
		{"no pixels", net("CT1"), ctChest, false, NonImageRule, true, "no pixel data"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := header(tc.attrs)
			h.HasPixelData = tc.pixels
			d, traces := r.Explain(tc.src, h)
			if d.Rule != tc.rule || d.Ignore != tc.ignore {
				t.Fatalf("rule %q ignore %v, want %q %v; traces %+v", d.Rule, d.Ignore, tc.rule, tc.ignore, traces)
			}
			if !strings.Contains(strings.Join(d.Reasons, "; "), tc.why) {
				t.Errorf("reasons %q lack %q", d.Reasons, tc.why)
			}
			if !d.Ignore {
				if d.Model == "" || len(d.Destinations) == 0 {
					t.Errorf("model %q destinations %v", d.Model, d.Destinations)
				}
				want := 20 * time.Second
				if d.Rule == "mr-brain-t1" {
					want = 45 * time.Second
				}
				if d.SeriesTimeout != want {
					t.Errorf("series timeout %v, want %v", d.SeriesTimeout, want)
				}
			}
		})
	}
}

func TestRouteNoRule(t *testing.T) {
	r, err := NewRouter([]configs.Route{{Name: "ct", Match: configs.Match{Modality: []string{"CT"}}, Model: "m"}}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	d := r.Route(Source{Kind: SourceNetwork}, header(map[tag.Tag]string{tag.Modality: "MR", tag.SOPClassUID: "1.2.840.10008.5.1.4.1.1.4"}))
	if d.Rule != NoRuleMatched || !d.Ignore {
		t.Fatalf("decision %+v", d)
	}
}

// A rule's implied_settle reaches the decision (and so the series record);
// a rule without one leaves the node's setting in force.
func TestRouteImpliedSettle(t *testing.T) {
	settle := 10 * time.Second
	r, err := NewRouter([]configs.Route{
		{Name: "scanner", Match: configs.Match{CallingAE: []string{"CT_*"}}, Model: "m", ImpliedSettle: &settle},
		{Name: "rest", Model: "m"},
	}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	h := header(map[tag.Tag]string{tag.Modality: "CT", tag.SOPClassUID: "1.2.840.10008.5.1.4.1.1.2"})
	d := r.Route(Source{Kind: SourceNetwork, CallingAE: "CT_ROOM1"}, h)
	if d.Rule != "scanner" || d.ImpliedSettle == nil || *d.ImpliedSettle != settle {
		t.Errorf("scanner: rule %q, implied settle %v, want %v", d.Rule, d.ImpliedSettle, settle)
	}
	d = r.Route(Source{Kind: SourceNetwork, CallingAE: "PACS"}, h)
	if d.Rule != "rest" || d.ImpliedSettle != nil {
		t.Errorf("rest: rule %q, implied settle %v, want none (the node's)", d.Rule, d.ImpliedSettle)
	}
}
