package output

import (
	"os"
	"testing"
)

// BenchmarkReadSEG reads the small SEG sample; it reports the pixel rate.
func BenchmarkReadSEG(b *testing.B) {
	data, err := os.ReadFile("testdata/seg_small.dcm")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := ReadSEG(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBuildSEG builds the SEG of a 24-slice 256x256 series and reports
// the time per source slice.
func BenchmarkBuildSEG(b *testing.B) {
	s := makeSeries(b, 24, 256, 256, true, 1)
	for b.Loop() {
		if _, err := BuildSEG(s.res, SEGOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/24, "us/slice")
}

// BenchmarkBuildSC builds the heat maps of a 24-slice 256x256 series.
func BenchmarkBuildSC(b *testing.B) {
	s := makeSeries(b, 24, 256, 256, true, 1)
	for b.Loop() {
		if _, err := BuildSC(s.res, SCOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/24, "us/slice")
}

// BenchmarkAnalyse splits a 24-slice 256x256 series into stacks and extracts
// its findings (what the finaliser adds per series before building), and
// reports the time per source slice, to set against the model's time per
// slice (issue 19: at most 5 %).
func BenchmarkAnalyse(b *testing.B) {
	s := makeSeries(b, 24, 256, 256, true, 1)
	for b.Loop() {
		if _, err := Analyse(s.res, &testParams, 0); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/24, "us/slice")
}
