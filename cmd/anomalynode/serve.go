package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"anomalynode/configs"
	"anomalynode/dimse"
)

// This is the minimal node: a DIMSE SCP that stores every received instance
// as a Part-10 file. The full pipeline replaces it.
func init() {
	register(&command{
		name:    "serve",
		summary: "run the DICOM node (serve --config FILE [--listen HOST:PORT] [--ae TITLE] [--data DIR])",
		run:     runServe,
	})
}

func runServe(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "serve", "--config FILE [--listen HOST:PORT] [--ae TITLE] [--data DIR] [--out DIR]")
	cfgPath := fs.String("config", "", "configuration file (default: built-in defaults)")
	listen := fs.String("listen", "", "DICOM listener HOST:PORT (overrides dimse.listen)")
	ae := fs.String("ae", "", "our AE title (overrides dimse.ae_title)")
	data := fs.String("data", "", "data folder (overrides node.data_dir)")
	out := fs.String("out", "", "folder for received instances (default: DATA/incoming)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return errors.New("no arguments are taken")
	}
	cfg := configs.Default()
	if *cfgPath != "" {
		var err error
		if cfg, err = configs.Load(*cfgPath); err != nil {
			return err
		}
	}
	if *listen != "" {
		cfg.DIMSE.Listen = *listen
	}
	if *ae != "" {
		cfg.DIMSE.AETitle = *ae
	}
	if *data != "" {
		cfg.Node.DataDir = *data
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	dir := *out
	if dir == "" {
		dir = filepath.Join(cfg.Node.DataDir, "incoming")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	scpCfg, err := dimseServerConfig(cfg)
	if err != nil {
		return err
	}
	s := dimse.NewServer(scpCfg, folderStore(dir), e.log, prometheus.NewRegistry())
	e.log.Info().Str("listen", scpCfg.Addr).Str("ae", scpCfg.AETitle).Str("out", dir).Msg("serve: storing received instances")
	return s.Run(ctx)
}

// folderStore writes each instance to DIR/<SOPInstanceUID>.dcm and answers
// success only once the file and its directory entry are on disk.
func folderStore(dir string) dimse.StoreHandler {
	return dimse.StoreHandlerFunc(func(ctx context.Context, req *dimse.StoreRequest) (dimse.Status, error) {
		if strings.ContainsAny(req.SOPInstanceUID, `/\`) || strings.Trim(req.SOPInstanceUID, ".") == "" {
			return dimse.StatusCannotUnderstand, fmt.Errorf("invalid SOP instance UID")
		}
		if err := writeInstance(dir, req); err != nil {
			return dimse.StatusOutOfResources, err
		}
		return dimse.StatusSuccess, nil
	})
}

func writeInstance(dir string, req *dimse.StoreRequest) error {
	tmp, err := os.CreateTemp(dir, ".incoming-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	meta := dimse.FileMeta{MediaStorageSOPClassUID: req.SOPClassUID, MediaStorageSOPInstanceUID: req.SOPInstanceUID,
		TransferSyntaxUID: req.TransferSyntaxUID, SourceAETitle: req.Assoc.CallingAE}
	err = dimse.WriteFileMeta(tmp, meta)
	if err == nil {
		_, err = io.Copy(tmp, req.DataSet)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("store %s: %w", req.SOPInstanceUID, err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, req.SOPInstanceUID+".dcm")); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
