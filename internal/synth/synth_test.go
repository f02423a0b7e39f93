package synth

import (
	"bytes"
	"errors"
	"image/png"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"anomalynode/internal/npy"
	"anomalynode/internal/peers"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
)

// small keeps unit tests fast: the same code paths as the 256x256 default.
func small(o Options) Options {
	if o.Rows == 0 {
		o.Rows = 64
	}
	if o.Cols == 0 {
		o.Cols = 64
	}
	if o.Slices == 0 {
		o.Slices = 6
	}
	return o
}

func parse(t *testing.T, path string) dicom.Dataset {
	t.Helper()
	ds, err := dicom.ParseFile(path, nil, dicom.SkipProcessingPixelDataValue())
	if err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	return ds
}

func strs(t *testing.T, ds dicom.Dataset, tg tag.Tag) []string {
	t.Helper()
	e, err := ds.FindElementByTag(tg)
	if err != nil {
		t.Fatalf("missing %v: %v", tg, err)
	}
	return dicom.MustGetStrings(e.Value)
}

func floats(t *testing.T, ds dicom.Dataset, tg tag.Tag) []float64 {
	t.Helper()
	var out []float64
	for _, s := range strs(t, ds, tg) {
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			t.Fatalf("%v: %v", tg, err)
		}
		out = append(out, f)
	}
	return out
}

func ints(t *testing.T, ds dicom.Dataset, tg tag.Tag) []int {
	t.Helper()
	e, err := ds.FindElementByTag(tg)
	if err != nil {
		t.Fatalf("missing %v: %v", tg, err)
	}
	return dicom.MustGetInts(e.Value)
}

// TestFilesValidate runs dciodvfy and dcmdump on every variant the other
// packages' tests rely on.
func TestFilesValidate(t *testing.T) {
	dciodvfy := peers.Tool(t, "dciodvfy")
	dcmdump := peers.Tool(t, "dcmdump")
	dcentvfy := peers.Tool(t, "dcentvfy")
	cases := []struct {
		name string
		o    Options
	}{
		{"mr-unsigned-lesions", Options{Seed: 1, Lesions: 2}},
		{"mr-signed-monochrome1", Options{Seed: 2, Signed: true, Monochrome1: true}},
		{"ct-unsigned", Options{Seed: 3, Modality: ModalityCT, Lesions: 1}},
		{"ct-signed-slope-tilt", Options{Seed: 4, Modality: ModalityCT, Signed: true, RescaleSlope: 0.5, RescaleIntercept: -10, Tilt: 12}},
		{"odd-size", Options{Seed: 5, Rows: 37, Cols: 53, Slices: 3}},
		{"phantom", Options{Seed: 6, Source: SourcePhantom, Lesions: 2}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			m, err := WriteSeries(dir, small(c.o))
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range []int{0, len(m.Slices) - 1} {
				f := filepath.Join(dir, m.Slices[k].File)
				out, err := exec.Command(dciodvfy, "-new", f).CombinedOutput()
				for _, line := range strings.Split(string(out), "\n") {
					if strings.HasPrefix(line, "Error") {
						t.Errorf("dciodvfy %s: %s", m.Slices[k].File, line)
					}
				}
				if err != nil {
					t.Errorf("dciodvfy exit: %v\n%s", err, out)
				}
				if out, err := exec.Command(dcmdump, f).CombinedOutput(); err != nil {
					t.Errorf("dcmdump %s: %v\n%s", f, err, out)
				}
			}
			// Patient, study, series and frame attributes agree across the series.
			var all []string
			for _, s := range m.Slices {
				all = append(all, filepath.Join(dir, s.File))
			}
			if out, err := exec.Command(dcentvfy, all...).CombinedOutput(); err != nil || strings.Contains(string(out), "Error") {
				t.Errorf("dcentvfy: %v\n%s", err, out)
			}
		})
	}
}

// TestGeometry checks what dciodvfy does not: positions step along the
// normal of ImageOrientationPatient by SpacingBetweenSlices, and the file
// carries the generated pixels and header values.
func TestGeometry(t *testing.T) {
	for _, tilt := range []float64{0, 17} {
		o := small(Options{Seed: 7, Tilt: tilt, Rows: 40, Cols: 70, Slices: 5, Modality: ModalityCT, Signed: true})
		r, err := Generate(o)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		m, err := r.Write(dir)
		if err != nil {
			t.Fatal(err)
		}
		var prev []float64
		var frame, series, study string
		for k, s := range m.Slices {
			ds := parse(t, filepath.Join(dir, s.File))
			iop := floats(t, ds, tag.ImageOrientationPatient)
			ipp := floats(t, ds, tag.ImagePositionPatient)
			spacing := floats(t, ds, tag.SpacingBetweenSlices)[0]
			if th := floats(t, ds, tag.SliceThickness)[0]; th != spacing || spacing != r.SliceSpacing {
				t.Fatalf("thickness %v spacing %v result %v", th, spacing, r.SliceSpacing)
			}
			row, col := [3]float64{iop[0], iop[1], iop[2]}, [3]float64{iop[3], iop[4], iop[5]}
			if math.Abs(dot(row, row)-1) > 1e-6 || math.Abs(dot(col, col)-1) > 1e-6 || math.Abs(dot(row, col)) > 1e-6 {
				t.Fatalf("orientation not orthonormal: %v", iop)
			}
			n := cross(row, col)
			if tilt == 0 && (n != [3]float64{0, 0, 1}) {
				t.Fatalf("axial normal %v", n)
			}
			if prev != nil {
				d := [3]float64{ipp[0] - prev[0], ipp[1] - prev[1], ipp[2] - prev[2]}
				along := dot(d, n)
				if math.Abs(along-spacing) > 2e-4 {
					t.Errorf("slice %d: step along normal %.5f, want %.5f", k+1, along, spacing)
				}
				for a := 0; a < 3; a++ {
					if math.Abs(d[a]-along*n[a]) > 2e-4 {
						t.Errorf("slice %d: step %v has an in-plane part (normal %v)", k+1, d, n)
					}
				}
			}
			prev = ipp
			if loc := floats(t, ds, tag.SliceLocation)[0]; math.Abs(loc-dot([3]float64{ipp[0], ipp[1], ipp[2]}, n)) > 2e-4 {
				t.Errorf("slice location %v disagrees with position", loc)
			}
			if got := ints(t, ds, tag.Rows)[0]*1000 + ints(t, ds, tag.Columns)[0]; got != 40*1000+70 {
				t.Fatalf("rows/cols %d", got)
			}
			ps := floats(t, ds, tag.PixelSpacing)
			if ps[0] != r.PixelSpacing || ps[1] != r.PixelSpacing {
				t.Fatalf("pixel spacing %v want %v", ps, r.PixelSpacing)
			}
			if in := strs(t, ds, tag.InstanceNumber)[0]; in != strconv.Itoa(k+1) {
				t.Errorf("instance number %s", in)
			}
			if n := strs(t, ds, tag.ImagesInAcquisition)[0]; n != "5" {
				t.Errorf("images in acquisition %s", n)
			}
			if k == 0 {
				frame, series, study = strs(t, ds, tag.FrameOfReferenceUID)[0], strs(t, ds, tag.SeriesInstanceUID)[0], strs(t, ds, tag.StudyInstanceUID)[0]
			} else if strs(t, ds, tag.FrameOfReferenceUID)[0] != frame || strs(t, ds, tag.SeriesInstanceUID)[0] != series || strs(t, ds, tag.StudyInstanceUID)[0] != study {
				t.Errorf("slice %d: UIDs differ within the series", k+1)
			}
			if strs(t, ds, tag.SOPInstanceUID)[0] != s.SOPInstanceUID || strs(t, ds, tag.MediaStorageSOPInstanceUID)[0] != s.SOPInstanceUID {
				t.Errorf("slice %d: SOP instance UID mismatch", k+1)
			}
			if v := strs(t, ds, tag.ImplementationClassUID); len(v) != 1 || v[0] == "" {
				t.Errorf("no ImplementationClassUID")
			}
			pe, err := ds.FindElementByTag(tag.PixelData)
			if err != nil {
				t.Fatal(err)
			}
			raw := dicom.MustGetPixelDataInfo(pe.Value).UnprocessedValueData
			if !bytes.Equal(raw, pixelBytes(r.Slices[k].Stored)) {
				t.Errorf("slice %d: pixel data differs from the generated pixels", k+1)
			}
			// Signed CT: air must decode as about -1000 HU.
			if k == 0 {
				hu := float64(int16(uint16(raw[0])|uint16(raw[1])<<8))*r.Slope + r.Intercept
				if hu > -900 {
					t.Errorf("corner pixel %.0f HU, want air", hu)
				}
			}
		}
		if frame != r.FrameOfReferenceUID || series != m.SeriesInstanceUID || study != m.StudyInstanceUID {
			t.Errorf("manifest UIDs disagree with the files")
		}
	}
}

// TestMasksMatchPaintedPixels: the mask is exactly the set of pixels the
// lesions changed (same seed with and without lesions), and the PNG, .npy
// and manifest statistics agree with it.
func TestMasksMatchPaintedPixels(t *testing.T) {
	for _, o := range []Options{
		{Seed: 11, Lesions: 3, Rows: 96, Cols: 80, Slices: 10, Polarity: PolarityHyper},
		{Seed: 12, Lesions: 2, Modality: ModalityCT, Rows: 61, Cols: 61, Slices: 8, Polarity: PolarityHypo},
		{Seed: 13, Lesions: 3, Source: SourcePhantom, Rows: 64, Cols: 72, Slices: 8, Polarity: PolarityHypo},
		{Seed: 16, Lesions: 3, Rows: 96, Cols: 80, Slices: 10, Polarity: PolarityHypo},
		{Seed: 14, Lesions: 3, Rows: 9, Cols: 8, Slices: 1},
		{Seed: 15, Lesions: 6, Rows: 31, Cols: 45, Slices: 2, Tilt: -20},
	} {
		healthy := o
		healthy.Lesions = 0
		a, err := Generate(o)
		if err != nil {
			t.Fatal(err)
		}
		b, err := Generate(healthy)
		if err != nil {
			t.Fatal(err)
		}
		if len(a.Lesions) != o.Lesions {
			t.Fatalf("%d lesions placed, want %d", len(a.Lesions), o.Lesions)
		}
		dir := t.TempDir()
		m, err := a.Write(dir)
		if err != nil {
			t.Fatal(err)
		}
		total := 0
		for k := range a.Slices {
			sa, sb := a.Slices[k], b.Slices[k]
			if sb.Mask != nil {
				t.Fatal("healthy series has masks")
			}
			var n int
			var sr, sc float64
			for i := range sa.Stored {
				changed := sa.Stored[i] != sb.Stored[i]
				if changed != (sa.Mask[i] == 1) {
					t.Fatalf("%s slice %d pixel %d: changed=%v mask=%d", a.Source, k+1, i, changed, sa.Mask[i])
				}
				if sa.Mask[i] == 1 {
					n++
					sr += float64(i / a.Cols)
					sc += float64(i % a.Cols)
					// Stored values follow the modality value (MONOCHROME2, positive slope).
					if o.Polarity == PolarityHyper && sa.Stored[i] < sb.Stored[i] {
						t.Fatalf("hyper-intense lesion pixel darker than healthy tissue")
					}
					if o.Polarity == PolarityHypo && sa.Stored[i] > sb.Stored[i] {
						t.Fatalf("hypo-intense lesion pixel brighter than healthy tissue")
					}
				}
			}
			total += n
			ms := m.Slices[k]
			if ms.LesionPixels != n {
				t.Errorf("slice %d: manifest %d lesion pixels, mask %d", k+1, ms.LesionPixels, n)
			}
			if n > 0 && (math.Abs(ms.CentroidRow-sr/float64(n)) > 1e-3 || math.Abs(ms.CentroidCol-sc/float64(n)) > 1e-3) {
				t.Errorf("slice %d: centroid %v,%v want %v,%v", k+1, ms.CentroidRow, ms.CentroidCol, sr/float64(n), sc/float64(n))
			}
			if n == 0 && (ms.CentroidRow != -1 || ms.CentroidCol != -1) {
				t.Errorf("slice %d: empty slice centroid %v,%v", k+1, ms.CentroidRow, ms.CentroidCol)
			}
			// Files on disk hold the same mask under the DICOM file's base name.
			base := strings.TrimSuffix(filepath.Base(ms.File), ".dcm")
			if filepath.Base(ms.LabelPNG) != base+".png" || filepath.Base(ms.LabelNPY) != base+".npy" {
				t.Fatalf("label names %s %s for %s", ms.LabelPNG, ms.LabelNPY, ms.File)
			}
			f, err := os.Open(filepath.Join(dir, ms.LabelPNG))
			if err != nil {
				t.Fatal(err)
			}
			img, err := png.Decode(f)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			if img.Bounds().Dx() != a.Cols || img.Bounds().Dy() != a.Rows {
				t.Fatalf("png size %v", img.Bounds())
			}
			raw, err := os.ReadFile(filepath.Join(dir, ms.LabelNPY))
			if err != nil {
				t.Fatal(err)
			}
			lab, err := npy.Decode(bytes.NewReader(raw))
			if err != nil || lab.Dtype != npy.DtypeUint8 || len(lab.Shape) != 2 || lab.Shape[0] != a.Rows || lab.Shape[1] != a.Cols {
				t.Fatalf("npy: %v %+v", err, lab)
			}
			for i, v := range sa.Mask {
				y, x := i/a.Cols, i%a.Cols
				g, _, _, _ := img.At(x, y).RGBA()
				if (g>>8 == 255) != (v == 1) || (g>>8 != 0 && g>>8 != 255) || lab.U8[i] != v {
					t.Fatalf("slice %d pixel (%d,%d): png %d npy %d mask %d", k+1, y, x, g>>8, lab.U8[i], v)
				}
			}
		}
		if total == 0 || m.LargestLesionSlice < 0 || m.Slices[m.LargestLesionSlice].LesionPixels == 0 {
			t.Fatalf("%s: no lesion pixels (largest %d)", a.Source, m.LargestLesionSlice)
		}
		for _, s := range m.Slices {
			if s.LesionPixels > m.Slices[m.LargestLesionSlice].LesionPixels {
				t.Errorf("largest_lesion_slice is not the largest")
			}
		}
	}
}

// TestDeterministic: the same seed gives byte-identical folders, another
// seed different UIDs and pixels.
func TestDeterministic(t *testing.T) {
	o := small(Options{Seed: 21, Lesions: 2})
	d1, d2, d3 := t.TempDir(), t.TempDir(), t.TempDir()
	m1, err := WriteSeries(d1, o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := WriteSeries(d2, o); err != nil {
		t.Fatal(err)
	}
	o2 := o
	o2.Seed = 22
	m3, err := WriteSeries(d3, o2)
	if err != nil {
		t.Fatal(err)
	}
	files := 0
	err = filepath.WalkDir(d1, func(p string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(d1, p)
		a, _ := os.ReadFile(p)
		b, err := os.ReadFile(filepath.Join(d2, rel))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("%s differs between runs with the same seed", rel)
		}
		files++
		return nil
	})
	if err != nil || files != 1+3*len(m1.Slices) {
		t.Fatalf("walk: %v, %d files", err, files)
	}
	if m1.StudyInstanceUID == m3.StudyInstanceUID || m1.SeriesInstanceUID == m3.SeriesInstanceUID ||
		m1.FrameOfReferenceUID == m3.FrameOfReferenceUID || m1.Slices[0].SOPInstanceUID == m3.Slices[0].SOPInstanceUID ||
		m1.PatientID == m3.PatientID {
		t.Error("different seeds share UIDs or patient ID")
	}
	a, _ := os.ReadFile(filepath.Join(d1, m1.Slices[3].File))
	b, _ := os.ReadFile(filepath.Join(d3, m3.Slices[3].File))
	if bytes.Equal(a[len(a)-2*64*64:], b[len(b)-2*64*64:]) {
		t.Error("different seeds give identical pixels")
	}
	seen := map[string]bool{}
	for _, m := range []*Manifest{m1, m3} {
		for _, u := range append([]string{m.StudyInstanceUID, m.SeriesInstanceUID, m.FrameOfReferenceUID}, sopUIDs(m)...) {
			if seen[u] {
				t.Errorf("UID %s used twice", u)
			}
			seen[u] = true
			if !strings.HasPrefix(u, "2.25.") || len(u) > 64 || strings.HasPrefix(u[5:], "0") {
				t.Errorf("bad UID %q", u)
			}
		}
	}
}

func sopUIDs(m *Manifest) []string {
	var out []string
	for _, s := range m.Slices {
		out = append(out, s.SOPInstanceUID)
	}
	return out
}

// TestHealthySeriesVary: healthy series of different seeds are different
// anatomy (shift, scale, gain) yet similar tissue statistics.
func TestHealthySeriesVary(t *testing.T) {
	var means []float64
	for seed := uint64(31); seed < 34; seed++ {
		r, err := Generate(small(Options{Seed: seed}))
		if err != nil {
			t.Fatal(err)
		}
		if r.Slices[0].Mask != nil || len(r.Lesions) != 0 {
			t.Fatal("healthy series has lesions or masks")
		}
		sum, n := 0.0, 0
		for _, s := range r.Slices {
			for _, v := range s.Stored {
				if v > 300 {
					sum += float64(v)
					n++
				}
			}
		}
		if n < 1000 {
			t.Fatalf("seed %d: only %d tissue pixels", seed, n)
		}
		means = append(means, sum/float64(n))
	}
	for i := 1; i < len(means); i++ {
		if means[i] == means[0] {
			t.Errorf("seeds give identical tissue means %v", means)
		}
		if math.Abs(means[i]-means[0]) > 0.3*means[0] {
			t.Errorf("tissue means too far apart %v", means)
		}
	}
}

// TestPhantomFallback: with the default volume absent the phantom is used,
// silently; an explicit missing volume is an error.
func TestPhantomFallback(t *testing.T) {
	old := defaultVolume
	defaultVolume = filepath.Join(t.TempDir(), "absent.nii.gz")
	t.Cleanup(func() { defaultVolume = old })
	dir := t.TempDir()
	m, err := WriteSeries(dir, small(Options{Seed: 41, Lesions: 2}))
	if err != nil {
		t.Fatal(err)
	}
	if m.Source != SourcePhantom {
		t.Fatalf("source %q, want the phantom", m.Source)
	}
	if m.LargestLesionSlice < 0 {
		t.Fatal("no lesions on the phantom")
	}
	out, err := exec.Command(peers.Tool(t, "dciodvfy"), "-new", filepath.Join(dir, m.Slices[2].File)).CombinedOutput()
	if err != nil || strings.Contains(string(out), "\nError") || strings.HasPrefix(string(out), "Error") {
		t.Errorf("dciodvfy on phantom: %v\n%s", err, out)
	}
	r, err := Generate(small(Options{Seed: 41}))
	if err != nil {
		t.Fatal(err)
	}
	// The phantom has white matter, grey matter and dark ventricles/CSF inside the head.
	mid := r.Slices[len(r.Slices)/2].Stored
	hist := map[string]int{}
	for _, v := range mid {
		switch {
		case v > 750:
			hist["white"]++
		case v > 500:
			hist["grey"]++
		case v > 0:
			hist["dark"]++
		}
	}
	if hist["white"] < 200 || hist["grey"] < 50 || hist["dark"] < 200 {
		t.Errorf("phantom tissue classes %v", hist)
	}
	_, err = Generate(small(Options{Seed: 41, Source: filepath.Join(t.TempDir(), "missing.nii")}))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("explicit missing source: %v", err)
	}
}

func TestBadOptions(t *testing.T) {
	for _, o := range []Options{
		{Rows: 4},
		{Cols: 5000},
		{Slices: -1},
		{Modality: "US"},
		{Modality: "CT", Monochrome1: true},
		{Lesions: -2},
		{PixelSpacing: -1},
		{Tilt: 60},
	} {
		if _, err := Generate(o); !errors.Is(err, ErrBadOptions) {
			t.Errorf("%+v: %v", o, err)
		}
	}
}

func TestRealVolume(t *testing.T) {
	if _, err := os.Stat(DefaultVolume); err != nil {
		t.Fatalf("mricron-data is not installed (scripts/install-test-tools.sh installs it): %v", err)
	}
	a, err := loadAnatomy("")
	if err != nil {
		t.Fatal(err)
	}
	if a.name != DefaultVolume || a.nx != 301 || a.ny != 370 || a.nz != 316 || a.u8 == nil {
		t.Fatalf("volume %s %dx%dx%d", a.name, a.nx, a.ny, a.nz)
	}
	// Brain extent of the Colin 27 head in mm: about 140 x 175 x 125.
	for d, want := range [3]float64{70, 87, 62} {
		if math.Abs(a.half[d]-want) > 15 {
			t.Errorf("half extent %d = %.1f mm, want about %.0f", d, a.half[d], want)
		}
	}
}

// BenchmarkGenerate measures the default series (24 slices of 256x256 MR
// with lesions) in memory and written to disk.
func BenchmarkGenerate(b *testing.B) {
	if _, err := Generate(Options{Slices: 1}); err != nil { // load the volume once
		b.Fatal(err)
	}
	var gen, write float64
	cpu0 := cpuSeconds()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		r, err := Generate(Options{Seed: uint64(i), Lesions: 3})
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, err := r.Write(b.TempDir()); err != nil {
			b.Fatal(err)
		}
		gen += t1.Sub(t0).Seconds()
		write += time.Since(t1).Seconds()
	}
	n := float64(b.N)
	b.ReportMetric(1000*(cpuSeconds()-cpu0)/n, "cpu-ms/series")
	b.ReportMetric(1000*gen/n, "gen-ms/series")
	b.ReportMetric(1000*write/n, "write-ms/series")
	b.ReportMetric(write/gen, "write/gen")
}

// BenchmarkLoadVolume measures decoding ch2better and building its head
// model (done once per process).
func BenchmarkLoadVolume(b *testing.B) {
	cpu0 := cpuSeconds()
	for i := 0; i < b.N; i++ {
		n, err := LoadNIfTI(DefaultVolume)
		if err != nil {
			b.Fatal(err)
		}
		a, err := anatomyFromNIfTI(DefaultVolume, n)
		if err != nil {
			b.Fatal(err)
		}
		buildHead(a)
	}
	b.ReportMetric(1000*(cpuSeconds()-cpu0)/float64(b.N), "cpu-ms/op")
}

// cpuSeconds is the process's user+system CPU time: on a shared machine it
// says what the work costs when wall time does not.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}

// TestPolarity: the polarity changes only the lesions' sign (same places,
// sizes and magnitudes), mixed series have both kinds, and magnitudes stay
// within the documented ranges.
func TestPolarity(t *testing.T) {
	base := Options{Seed: 31, Lesions: 6, Rows: 64, Cols: 64, Slices: 6}
	byPol := map[string]*Result{}
	for _, p := range []string{PolarityMixed, PolarityHyper, PolarityHypo} {
		o := base
		o.Polarity = p
		r, err := Generate(o)
		if err != nil {
			t.Fatal(err)
		}
		byPol[p] = r
	}
	var hyper, hypo int
	for i, l := range byPol[PolarityMixed].Lesions {
		lh, lo := byPol[PolarityHyper].Lesions[i], byPol[PolarityHypo].Lesions[i]
		if lh.Center != l.Center || lo.Center != l.Center || lh.Radii != l.Radii || lh.Amplitude != -lo.Amplitude ||
			math.Abs(l.Amplitude) != lh.Amplitude {
			t.Fatalf("lesion %d differs across polarities: %+v %+v %+v", i, l, lh, lo)
		}
		if lh.Amplitude < mrLesionMin || lh.Amplitude > mrLesionMax {
			t.Errorf("lesion %d amplitude %v outside [%v, %v]", i, lh.Amplitude, mrLesionMin, mrLesionMax)
		}
		if l.Amplitude > 0 {
			hyper++
		} else {
			hypo++
		}
	}
	if hyper == 0 || hypo == 0 {
		t.Errorf("mixed series of 6 lesions: %d hyper, %d hypo", hyper, hypo)
	}
	if _, err := Generate(Options{Seed: 1, Lesions: 1, Polarity: "bright"}); !errors.Is(err, ErrBadOptions) {
		t.Errorf("polarity bright: %v, want ErrBadOptions", err)
	}
}
