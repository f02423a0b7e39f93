package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"anomalynode/internal/synth"
)

func init() {
	register(&command{
		name:    "synth",
		summary: "write realistic synthetic test series (optionally with lesions and masks)",
		run:     runSynth,
	})
}

func runSynth(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "synth", "--out DIR [--lesions [--polarity mixed|hyper|hypo]] [--slices N] [--seed S] [--rows R --cols C] [--modality MR|CT] [--series K]")
	out := fs.String("out", "", "output folder (required); with --series K > 1 each series goes to DIR/S001 ...")
	lesions := fs.Bool("lesions", false, "paint synthetic lesions and write masks (labels/) and their statistics")
	nLesions := fs.Int("lesion-count", 3, "number of lesions painted with --lesions")
	polarity := fs.String("polarity", "mixed", "lesion contrast: mixed (each lesion hyper- or hypo-intense at random), hyper or hypo")
	labels := fs.Bool("labels", false, "write (all-zero) masks even without --lesions")
	slices := fs.Int("slices", 24, "slices per series")
	seed := fs.Uint64("seed", 1, "seed: anatomy jitter, noise, lesions and UIDs (series i uses seed+i)")
	rows := fs.Int("rows", 256, "image rows")
	cols := fs.Int("cols", 256, "image columns")
	modality := fs.String("modality", "MR", "MR or CT (CT: Hounsfield-like values with rescale)")
	series := fs.Int("series", 1, "number of series (different seeds: different healthy subjects)")
	signed := fs.Bool("signed", false, "store signed pixels (PixelRepresentation 1)")
	mono1 := fs.Bool("monochrome1", false, "MR only: store inverted pixels as MONOCHROME1")
	spacing := fs.Float64("spacing", 0, "pixel spacing in mm (0: fit the head)")
	thickness := fs.Float64("thickness", 0, "slice thickness = spacing between slices in mm (0: automatic)")
	tilt := fs.Float64("tilt", 0, "oblique axial: rotate the slice plane about the left-right axis, degrees")
	source := fs.String("source", "", "NIfTI-1 volume (default "+synth.DefaultVolume+", phantom when absent)")
	phantom := fs.Bool("phantom", false, "use the analytic phantom even when the volume is installed")
	noise := fs.Float64("noise", 0, "noise scale (0: default, negative: none)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %v", fs.Args())
	}
	if *out == "" {
		fs.Usage()
		return errors.New("--out is required")
	}
	if *series < 1 || *series > 999 {
		return fmt.Errorf("--series %d not in 1..999", *series)
	}
	opts := synth.Options{
		Slices: *slices, Rows: *rows, Cols: *cols, Modality: *modality, Signed: *signed,
		Monochrome1: *mono1, PixelSpacing: *spacing, SliceThickness: *thickness, Tilt: *tilt,
		Labels: *labels, Source: *source, Noise: *noise,
	}
	if *phantom {
		opts.Source = synth.SourcePhantom
	}
	if *lesions {
		opts.Lesions = *nLesions
	}
	if opts.Polarity = *polarity; *polarity == "mixed" {
		opts.Polarity = synth.PolarityMixed
	}
	for i := 0; i < *series; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		dir := *out
		if *series > 1 {
			dir = filepath.Join(*out, fmt.Sprintf("S%03d", i+1))
		}
		opts.Seed = *seed + uint64(i)
		m, err := synth.WriteSeries(dir, opts)
		if err != nil {
			return err
		}
		largest := "none"
		if k := m.LargestLesionSlice; k >= 0 {
			s := m.Slices[k]
			largest = fmt.Sprintf("%s (%d px at row %.1f col %.1f)", s.File, s.LesionPixels, s.CentroidRow, s.CentroidCol)
		}
		fmt.Fprintf(e.stdout, "%s: %d %s slices %dx%d from %s, series %s, largest lesion slice %s\n",
			dir, len(m.Slices), m.Modality, m.Rows, m.Cols, filepath.Base(m.Source), m.SeriesInstanceUID, largest)
	}
	return nil
}
