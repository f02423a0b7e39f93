package eval

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"anomalynode/inference/pixel"
	"anomalynode/internal/npy"
)

func TestLabelCandidates(t *testing.T) {
	cases := []struct {
		images, labels, file, want string
	}{
		// synth, one series: --images D/images --labels D/labels
		{"/d/images", "/d/labels", "/d/images/IM0001.dcm", "/d/labels/IM0001.npy"},
		// synth, one series, both flags at the root
		{"/d", "/d", "/d/images/IM0001.dcm", "/d/labels/IM0001.npy"},
		// synth --series K: per-series folders under the root
		{"/d", "/d", "/d/S002/images/IM0001.dcm", "/d/S002/labels/IM0001.npy"},
		// a flat labels folder
		{"/d/x", "/m", "/d/x/a/b/IM7", "/m/IM7.png"},
	}
	for _, c := range cases {
		got := labelCandidates(c.images, c.labels, c.file)
		if !slices.Contains(got, c.want) {
			t.Errorf("%s: candidates %v lack %s", c.file, got, c.want)
		}
	}
}

func TestMasks(t *testing.T) {
	dir := t.TempDir()
	sl := []*pixel.Slice{{Rows: 2, Cols: 3}}
	img := image.NewGray(image.Rect(0, 0, 3, 2))
	img.SetGray(2, 1, color.Gray{Y: 255})
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a.png"), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	masks, found, err := loadMasks(filepath.Join(dir, "img"), dir, filepath.Join(dir, "img", "a.dcm"), sl)
	if err != nil || !found {
		t.Fatalf("found %v err %v", found, err)
	}
	if !slices.Equal(masks[0], []uint8{0, 0, 0, 0, 0, 1}) {
		t.Fatalf("mask %v", masks[0])
	}
	// .npy wins over .png and must match the image size.
	if err := npy.Write(filepath.Join(dir, "a.npy"), &npy.Array{Shape: []int{3, 2}, Dtype: npy.DtypeUint8, U8: make([]uint8, 6)}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := loadMasks(filepath.Join(dir, "img"), dir, filepath.Join(dir, "img", "a.dcm"), sl); err == nil || !strings.Contains(err.Error(), "shape") {
		t.Fatalf("wrong-shape mask: %v", err)
	}
	_, found, err = loadMasks(filepath.Join(dir, "img"), dir, filepath.Join(dir, "img", "b.dcm"), sl)
	if found || err != nil {
		t.Fatalf("missing mask: found %v err %v", found, err)
	}
}
