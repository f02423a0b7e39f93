package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"anomalynode/inference/vit"
)

func init() {
	register(&command{
		name:    "mkvit",
		summary: "write a test backbone: the DINOv2 architecture with random weights, or fixed signal features",
		run:     runMkvit,
	})
}

func runMkvit(ctx context.Context, e *env, args []string) error {
	names := append(vit.PresetNames(), vit.SignalPreset)
	fs := newFlagSet(e, "mkvit", "--out FILE --preset "+strings.Join(names, "|")+" [--registers R] [--seed S] [--pos-size PX] [--pos-resize 2d|separable]")
	out := fs.String("out", "", "ONNX file to write (required)")
	preset := fs.String("preset", "vits14", "architecture: "+strings.Join(vit.PresetNames(), ", ")+" (random-weight DINOv2 ViTs), or "+vit.SignalPreset+" (fixed image features that separate synthetic lesions; not DINOv2, not for clinical use)")
	registers := fs.Int("registers", 0, "register tokens after CLS (0 = plain DINOv2, 4 = DINOv2 with registers)")
	seed := fs.Uint64("seed", 0, "random seed of the weights; the same seed writes the same bytes")
	posSize := fs.Int("pos-size", 0, "image size in px the position embeddings are laid out for (multiple of 14; 0 = the preset's: 224 tiny, 518 vits14); inputs of any size multiple of 14 are accepted")
	posResize := fs.String("pos-resize", "2d", "how the graph resamples position embeddings: 2d (one cubic Resize, as Hugging Face exports do) or separable (same values, faster in ONNX Runtime)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *out == "" {
		return errors.New("--out is required")
	}
	if *preset == vit.SignalPreset {
		// A fixed feature extractor: no weights to draw, no positions.
		if *registers != 0 || *seed != 0 || *posSize != 0 || *posResize != "2d" {
			return errors.New("--registers, --seed, --pos-size and --pos-resize do not apply to the signal preset")
		}
		sc := vit.DefaultSignal()
		sum, size, err := vit.WriteSignalFile(*out, sc)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%s: preset %s, dim %d (%d features x %d bins), patch %d, no registers: %d bytes, sha256 %s (fixed features: NOT DINOv2, not for clinical use)\n",
			*out, *preset, sc.Dim(), sc.SignalFeatures(), sc.Bins, sc.PatchSize, size, sum)
		return nil
	}
	c, err := vit.Preset(*preset)
	if err != nil {
		return err
	}
	c.Registers, c.Seed = *registers, *seed
	if *posSize != 0 {
		if *posSize < 0 || *posSize%c.PatchSize != 0 {
			return fmt.Errorf("--pos-size %d is not a positive multiple of %d", *posSize, c.PatchSize)
		}
		c.PosGrid = *posSize / c.PatchSize
	}
	switch *posResize {
	case "2d":
	case "separable":
		c.SeparablePosResize = true
	default:
		return fmt.Errorf("--pos-resize %q: want 2d or separable", *posResize)
	}
	sum, size, err := vit.WriteFile(*out, c)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s: preset %s, dim %d, %d blocks, %d heads, %d registers, %d position grid, seed %d: %d parameters, %d bytes, sha256 %s (random weights)\n",
		*out, *preset, c.Dim, c.Depth, c.Heads, c.Registers, c.PosGrid, c.Seed, c.Params(), size, sum)
	return nil
}
