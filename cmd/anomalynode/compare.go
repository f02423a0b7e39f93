package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"anomalynode/output"
)

func init() {
	register(&command{
		name:    "compare",
		summary: "compare the SEGs a node returned for a synthetic series with its painted lesions (detected / total, Dice)",
		run:     runCompare,
	})
}

func runCompare(ctx context.Context, e *env, args []string) error {
	fl := newFlagSet(e, "compare", "--series DIR --outputs DIR [--min-lesion-mm3 V] [--json]")
	series := fl.String("series", "", "folder of a series written by 'anomalynode synth' (manifest.json, labels/) (required)")
	outputs := fl.String("outputs", "", "folder searched recursively for the node's .dcm outputs (required)")
	minLesion := fl.Float64("min-lesion-mm3", output.DefaultMinLesionMM3, "painted lesions below this volume are not counted")
	asJSON := fl.Bool("json", false, "print the report as JSON")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if *series == "" || *outputs == "" || fl.NArg() != 0 {
		fl.Usage()
		return errors.New("--series and --outputs are required and no arguments are taken")
	}
	var segs [][]byte
	err := filepath.WalkDir(*outputs, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(d.Name(), ".dcm") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		// Only SEGs: the heat maps and pages are not masks.
		if _, err := output.ReadSEG(b); err == nil {
			segs = append(segs, b)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("compare: %w", err)
	}
	rep, err := output.CompareLesions(*series, segs, *minLesion)
	if err != nil {
		return err
	}
	if *asJSON {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintln(e.stdout, string(b))
		return nil
	}
	fmt.Fprintf(e.stdout, "SEGs %d  segments %d  lesions detected %d/%d (>= %g mm3; %d smaller)  Dice %.3f\n",
		rep.SEGs, rep.Segments, rep.Detected, len(rep.Lesions), *minLesion, rep.Small, rep.Dice)
	for i, l := range rep.Lesions {
		fmt.Fprintf(e.stdout, "  lesion %d: %.0f mm3 at (%.1f, %.1f, %.1f)  detected %v  Dice %.3f  centroid off by %.1f mm\n",
			i+1, l.VolumeMM3, l.CentroidMM[0], l.CentroidMM[1], l.CentroidMM[2], l.Detected, l.Dice, l.DistanceMM)
	}
	return nil
}
