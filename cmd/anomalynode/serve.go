package main

import (
	"context"
	"errors"
	"time"
)

func init() {
	register(&command{
		name:    "serve",
		summary: "run the node: DICOM SCP, watched folders, inference, SEG/SC export (serve --config FILE)",
		run:     runServe,
	})
}

func runServe(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "serve", "--config FILE [--listen HOST:PORT] [--ae TITLE] [--data DIR] [--admin HOST:PORT]")
	cfgPath := fs.String("config", "", "configuration file (required; configs/demo.yaml is the embedded default)")
	var o overrides
	fs.StringVar(&o.listen, "listen", "", "DICOM listener HOST:PORT (overrides dimse.listen)")
	fs.StringVar(&o.ae, "ae", "", "our AE title (overrides dimse.ae_title)")
	fs.StringVar(&o.data, "data", "", "data folder (overrides node.data_dir)")
	fs.StringVar(&o.admin, "admin", "", "admin HTTP HOST:PORT for /metrics, /healthz, /readyz (overrides admin.listen)")
	grace := fs.Duration("shutdown-grace", 20*time.Second, "how long in-flight work may finish after SIGTERM")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return errors.New("no arguments are taken")
	}
	if *cfgPath == "" {
		fs.Usage()
		return errors.New("--config is required")
	}
	n, err := openNode(ctx, *cfgPath, o, e.log)
	if err != nil {
		return err
	}
	defer n.close()
	return n.run(ctx, *grace)
}
