package main

import (
	"context"
	"errors"
	"fmt"

	"anomalynode/configs"
	"anomalynode/ingest"
)

func init() {
	register(&command{
		name:    "route",
		summary: "show which routing rule each DICOM file matches, and why",
		run:     runRoute,
	})
}

func runRoute(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "route", "--config FILE [--calling-ae AE] [--called-ae AE] [--source network|folder] DICOMFILE...")
	cfgPath := fs.String("config", "", "configuration file (required)")
	calling := fs.String("calling-ae", "", "pretend the file came by C-STORE from this AE title")
	called := fs.String("called-ae", "", "the AE title the sender called (default: dimse.ae_title)")
	source := fs.String("source", "", "network or folder (default: network when --calling-ae is given, else folder with the file's path)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cfgPath == "" {
		return errors.New("--config is required")
	}
	if fs.NArg() == 0 {
		return errors.New("no DICOM files given")
	}
	cfg, err := configs.Load(*cfgPath)
	if err != nil {
		return err
	}
	router, err := ingest.NewRouter(cfg.Routes, cfg.Ingest.SeriesTimeout)
	if err != nil {
		return err
	}
	src := ingest.Source{Kind: ingest.SourceFolder}
	if *source == ingest.SourceNetwork || (*source == "" && *calling != "") {
		src = ingest.Source{Kind: ingest.SourceNetwork, CallingAE: *calling, CalledAE: *called}
		if src.CalledAE == "" {
			src.CalledAE = cfg.DIMSE.AETitle
		}
	} else if *source != "" && *source != ingest.SourceFolder {
		return fmt.Errorf("--source must be network or folder, not %q", *source)
	}
	failed := 0
	for _, path := range fs.Args() {
		ex, err := ingest.ExplainFile(router, path, src)
		if err != nil {
			fmt.Fprintf(e.stdout, "%s: error: %v\n", path, err)
			failed++
			continue
		}
		ex.Write(e.stdout)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d files could not be read", failed, fs.NArg())
	}
	return nil
}
