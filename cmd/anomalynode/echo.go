package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"anomalynode/dimse"
	"anomalynode/internal/dcm"
)

func init() {
	register(&command{
		name:    "echo",
		summary: "C-ECHO a DICOM node (echo --addr HOST:PORT --called-ae AE)",
		run:     runEcho,
	})
}

func runEcho(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "echo", "--addr HOST:PORT --called-ae AE [--calling-ae AE] [--tls ...]")
	addr := fs.String("addr", "", "HOST:PORT of the SCP (required)")
	called := fs.String("called-ae", "ANY-SCP", "AE title of the SCP")
	calling := fs.String("calling-ae", "ANOMALYNODE", "our AE title")
	timeout := fs.Duration("timeout", 30*time.Second, "connect and response timeout")
	var tf tlsFlags
	tf.addFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *addr == "" || fs.NArg() != 0 {
		fs.Usage()
		return errors.New("--addr is required and no arguments are taken")
	}
	cfg, err := tf.config()
	if err != nil {
		return err
	}
	cfg.CallingAE, cfg.CalledAE, cfg.DialTimeout, cfg.DIMSETimeout = *calling, *called, *timeout, *timeout
	cfg.Contexts = []dimse.PresentationContext{{AbstractSyntax: dimse.VerificationSOPClass,
		TransferSyntaxes: []string{dcm.ExplicitVRLittleEndian, dcm.ImplicitVRLittleEndian}}}
	start := time.Now()
	c, err := dimse.Dial(ctx, *addr, *cfg)
	if err != nil {
		return err
	}
	if err := c.Echo(ctx); err != nil {
		_ = c.Abort()
		return err
	}
	if err := c.Release(ctx); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "C-ECHO %s@%s: success (%s)\n", *called, *addr, time.Since(start).Round(time.Millisecond))
	return nil
}
