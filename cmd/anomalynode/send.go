package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"anomalynode/dimse"
)

func init() {
	register(&command{
		name:    "send",
		summary: "C-STORE DICOM files to a node (send --addr HOST:PORT --called-ae AE FILES|DIRS)",
		run:     runSend,
	})
}

// sendFile is one file to send with its SOP class and transfer syntax.
type sendFile struct {
	path string
	meta dimse.FileMeta
}

func runSend(ctx context.Context, e *env, args []string) error {
	fset := newFlagSet(e, "send", "--addr HOST:PORT --called-ae AE [--calling-ae AE] [--tls ...] FILES|DIRS...")
	addr := fset.String("addr", "", "HOST:PORT of the SCP (required)")
	called := fset.String("called-ae", "ANY-SCP", "AE title of the SCP")
	calling := fset.String("calling-ae", "ANOMALYNODE", "our AE title")
	timeout := fset.Duration("timeout", 2*time.Minute, "connect and per-response timeout")
	var tf tlsFlags
	tf.addFlags(fset)
	if err := fset.Parse(args); err != nil {
		return err
	}
	if *addr == "" || fset.NArg() == 0 {
		fset.Usage()
		return errors.New("--addr and at least one file or folder are required")
	}
	files, skipped, err := collectDICOM(fset.Args())
	if err != nil {
		return err
	}
	for _, s := range skipped {
		fmt.Fprintf(e.stderr, "skipped (not a DICOM Part-10 file): %s\n", s)
	}
	if len(files) == 0 {
		return errors.New("no DICOM files to send")
	}
	var pairs [][2]string
	for _, f := range files {
		pairs = append(pairs, [2]string{f.meta.MediaStorageSOPClassUID, f.meta.TransferSyntaxUID})
	}
	cfg, err := tf.config()
	if err != nil {
		return err
	}
	cfg.CallingAE, cfg.CalledAE, cfg.DialTimeout, cfg.DIMSETimeout = *calling, *called, *timeout, *timeout
	cfg.Contexts = dimse.ContextsFor(pairs)
	start := time.Now()
	c, err := dimse.Dial(ctx, *addr, *cfg)
	if err != nil {
		return err
	}
	var ok, warned, failed int
	for _, f := range files {
		st, err := c.StoreFile(ctx, f.path)
		switch {
		case err != nil && (errors.Is(err, dimse.ErrAborted) || errors.Is(err, dimse.ErrProtocol) || errors.Is(err, dimse.ErrTimeout) || ctx.Err() != nil):
			_ = c.Abort()
			return fmt.Errorf("%s: %w (sent %d of %d)", f.path, err, ok+warned, len(files))
		case err != nil:
			failed++
			fmt.Fprintf(e.stderr, "failed: %s: %v\n", f.path, err)
		case st.IsWarning():
			warned++
			fmt.Fprintf(e.stderr, "warning: %s: status %s\n", f.path, st)
		default:
			ok++
		}
	}
	if err := c.Release(ctx); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "sent %d of %d instances to %s@%s in %s (%d with warnings, %d failed)\n",
		ok+warned, len(files), *called, *addr, time.Since(start).Round(time.Millisecond), warned, failed)
	if failed > 0 {
		return fmt.Errorf("%d instances failed", failed)
	}
	return nil
}

// collectDICOM expands folders (recursively) and reads each file's meta
// header; files that are not Part-10 DICOM are returned as skipped.
func collectDICOM(args []string) (files []sendFile, skipped []string, err error) {
	add := func(p string) error {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		meta, _, err := dimse.ReadFileMeta(bufio.NewReader(f))
		if err != nil {
			skipped = append(skipped, p)
			return nil
		}
		files = append(files, sendFile{path: p, meta: meta})
		return nil
	}
	for _, a := range args {
		st, err := os.Stat(a)
		if err != nil {
			return nil, nil, err
		}
		if !st.IsDir() {
			if err := add(a); err != nil {
				return nil, nil, err
			}
			continue
		}
		err = filepath.WalkDir(a, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			return add(p)
		})
		if err != nil {
			return nil, nil, err
		}
	}
	return files, skipped, nil
}
