package main

import (
	"context"
	"fmt"

	"anomalynode/configs"
)

func init() {
	register(&command{
		name:    "config",
		summary: "validate a configuration file (config validate FILE)",
		run:     runConfig,
	})
}

func runConfig(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "config", "validate FILE...")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() < 2 || fs.Arg(0) != "validate" {
		fs.Usage()
		return fmt.Errorf("expected 'config validate FILE...'")
	}
	for _, path := range fs.Args()[1:] {
		if _, err := configs.Load(path); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%s: ok\n", path)
	}
	return nil
}
