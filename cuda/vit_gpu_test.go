//go:build cuda

package cuda

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gorgonia.org/cu"

	"anomalynode/inference/vit"
)

// onnxFiles names more ONNX files for TestEmbedderMatchesORTFull (comma-
// separated): scripts/gpu-check.sh passes a Hugging Face dinov2-small export
// made on the device.
var onnxFiles = flag.String("cuda.onnx", "", "more ONNX files (comma-separated) to check at 448x448 against ONNX Runtime")

func embedPrecisions() []Precision { return []Precision{PrecisionFP32, PrecisionTF32, PrecisionBF16} }

func needEmbedDevice(t testing.TB) { needDevice(t) }

func makeTempDir() (string, error) { return os.MkdirTemp("", "cuda-vit-test") }

var vits14 struct {
	once sync.Once
	path string
	l    *vit.Loaded
	err  error
}

// vits14Model writes mkvit's ViT-S/14 (dinov2-small's shapes, random
// weights, 4 registers) once per test binary and loads it.
func vits14Model(t testing.TB) (string, *vit.Loaded) {
	t.Helper()
	v := &vits14
	v.once.Do(func() {
		dir, err := makeTempDir()
		if err != nil {
			v.err = err
			return
		}
		c, err := vit.Preset("vits14")
		if err != nil {
			v.err = err
			return
		}
		c.Registers, c.SeparablePosResize, c.Seed = 4, true, 11
		v.path = filepath.Join(dir, "vits14-reg4.onnx")
		if _, _, v.err = vit.WriteFile(v.path, c); v.err != nil {
			return
		}
		v.l, v.err = vit.Load(v.path)
	})
	if v.err != nil {
		t.Fatal(v.err)
	}
	return v.path, v.l
}

// TestEmbedderMatchesORTFull checks dinov2-small sized graphs at 448x448
// (batch 2) in every precision: mkvit vits14 and any -cuda.onnx file.
func TestEmbedderMatchesORTFull(t *testing.T) {
	needDevice(t)
	path, _ := vits14Model(t)
	files := []string{path}
	for _, f := range strings.Split(*onnxFiles, ",") {
		if f != "" {
			files = append(files, f)
		}
	}
	for _, f := range files {
		for _, p := range embedPrecisions() {
			rel, agree := compareToORT(t, f, p, 2, 448, 448)
			t.Logf("%s %s [2,3,448,448]: relative error %.2e, score agreement %.4f", filepath.Base(f), p, rel, agree)
			if rel > tolerances[p] || rel != rel {
				t.Errorf("%s %s: relative error %.2e > %.0e", filepath.Base(f), p, rel, tolerances[p])
			}
			if agree < minAgreement {
				t.Errorf("%s %s: thresholded scores agree on %.4f of patches < %.2f", filepath.Base(f), p, agree, minAgreement)
			}
		}
	}
}

// BenchmarkEmbed times the forward pass of ViT-S/14 (4 registers) at 448x448
// per precision and batch: slices/s with the input already on the device
// (what PyTorch's figures time), slices/s of Embed from host memory to host
// tokens, and the GPU memory held.
func BenchmarkEmbed(b *testing.B) {
	needDevice(b)
	_, l := vits14Model(b)
	for _, p := range embedPrecisions() {
		e, err := newEmbedderLoaded(l, EmbedderOptions{Precision: p})
		if err != nil {
			b.Fatal(err)
		}
		type variant struct {
			batch, block int
			name         string
		}
		var variants []variant
		for _, batch := range []int{1, 8, 32, 128} {
			variants = append(variants, variant{batch, attentionBlock, fmt.Sprintf("prec=%s/batch=%d", p, batch)})
		}
		// Attention in L2-sized passes at batch 32, against one pass (the default).
		for _, blk := range []int{12 << 20, 24 << 20, 48 << 20} {
			variants = append(variants, variant{32, blk, fmt.Sprintf("prec=%s/batch=32/block=%dMiB", p, blk>>20)})
		}
		for _, v := range variants {
			batch := v.batch
			b.Run(v.name, func(b *testing.B) {
				e.attnBlock = v.block
				defer func() { e.attnBlock = attentionBlock }()
				x := testSlices(batch, 448, 448, 0)
				s := e.shapeOf(batch, 448, 448)
				run := func(iters int) (time.Duration, error) {
					var el time.Duration
					err := e.dev.do(func() error {
						if err := e.stage(x, s); err != nil {
							return err
						}
						if err := e.forward(s); err != nil { // warm: cuBLAS heuristics, position grid
							return err
						}
						if err := e.stream.Synchronize(); err != nil {
							return err
						}
						t0 := time.Now()
						for range iters {
							if err := e.forward(s); err != nil {
								return err
							}
						}
						err := e.stream.Synchronize()
						el = time.Since(t0)
						return err
					})
					return el, err
				}
				b.ResetTimer()
				el, err := run(b.N)
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				b.ReportMetric(float64(b.N*batch)/el.Seconds(), "slices/s")
				// Embed from host memory: upload, forward, tokens back.
				var e2e time.Duration
				const reps = 5
				for range reps {
					t0 := time.Now()
					if _, err := e.Embed(x, batch, 448, 448); err != nil {
						b.Fatal(err)
					}
					e2e += time.Since(t0)
				}
				b.ReportMetric(float64(reps*batch)/e2e.Seconds(), "embed-slices/s")
				// The node's path: tokens scored on the device against 500
				// prototypes, only the scores back.
				se, err := scoringOn(e, clustered(500, e.Dim(), 50, 0.3, 9), 500)
				if err != nil {
					b.Fatal(err)
				}
				var es time.Duration
				for range reps {
					t0 := time.Now()
					if _, _, err := se.EmbedScore(x, batch, 448, 448); err != nil {
						b.Fatal(err)
					}
					es += time.Since(t0)
				}
				b.ReportMetric(float64(reps*batch)/es.Seconds(), "embedscore-slices/s")
				b.ReportMetric(float64(e.MemoryUsed())/(1<<20), "gpu-MiB")
				var free, total int64
				if err := e.dev.do(func() (err error) { free, total, err = cu.MemInfo(); return err }); err == nil {
					b.ReportMetric(float64(total-free)/(1<<20), "device-used-MiB")
				}
			})
		}
		e.Close()
	}
}
