package main

import (
	"context"
	"fmt"

	"anomalynode/configs"
)

func init() {
	register(&command{
		name:    "version",
		summary: "print the version",
		run: func(ctx context.Context, e *env, args []string) error {
			fs := newFlagSet(e, "version", "")
			if err := fs.Parse(args); err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, "anomalynode", configs.Version)
			return nil
		},
	})
}
