package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"

	"anomalynode/configs"
	"anomalynode/ingest"
	"anomalynode/output"
)

func init() {
	register(&command{
		name:    "exports",
		summary: "list or replay undelivered outputs and work set aside (exports list|replay|poison --config FILE)",
		run:     runExports,
	})
}

func runExports(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "exports", "list|replay|poison --config FILE [--seq N,N...] [--json] [--replay]")
	config := fs.String("config", "", "configuration file (required)")
	seqs := fs.String("seq", "", "replay, poison --replay: only these sequence numbers (comma-separated); default all")
	replay := fs.Bool("replay", false, "poison: queue the work set aside again (its cause fixed) instead of listing it")
	asJSON := fs.Bool("json", false, "list, poison: one JSON object per line instead of a table")
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if err := fs.Parse(args); err != nil {
			return err
		}
		fs.Usage()
		return errors.New("expected 'exports list', 'exports replay' or 'exports poison'")
	}
	sub := args[0]
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if sub != "list" && sub != "replay" && sub != "poison" {
		fs.Usage()
		return fmt.Errorf("unknown action %q (list, replay or poison)", sub)
	}
	if *config == "" {
		fs.Usage()
		return errors.New("--config is required")
	}
	var want []uint64
	if *seqs != "" {
		for _, s := range strings.Split(*seqs, ",") {
			n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
			if err != nil {
				return fmt.Errorf("--seq: %q is not a sequence number", s)
			}
			want = append(want, n)
		}
	}
	cfg, err := configs.Load(*config)
	if err != nil {
		return err
	}
	js, err := openExportsJetStream(ctx, e, cfg)
	if err != nil {
		return err
	}
	defer js.Close()
	q, err := output.NewQueue(ctx, js.JetStream, output.QueueConfigFrom(cfg), nil, e.log, nil)
	if err != nil {
		return err
	}
	switch sub {
	case "poison":
		if *replay {
			svc, err := ingest.NewService(ctx, js, cfg, e.log, nil)
			if err != nil {
				return err
			}
			n, err := svc.ReplayDeadWork(ctx, want...)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "replayed %d work item(s)\n", n)
			if len(want) > 0 && n < len(want) {
				return fmt.Errorf("%d of the %d sequence numbers given were not set aside", len(want)-n, len(want))
			}
			return nil
		}
		dead, err := ingest.ListDeadWork(ctx, js)
		if err != nil {
			return err
		}
		return printDeadWork(e, dead, *asJSON)
	case "list":
		dead, err := q.DeadLetters(ctx)
		if err != nil {
			return err
		}
		if err := printDeadLetters(e, dead, *asJSON); err != nil {
			return err
		}
		if !*asJSON {
			// Work that never became an output is the other half of what
			// an operator must see.
			if work, err := ingest.ListDeadWork(ctx, js); err == nil && len(work) > 0 {
				fmt.Fprintf(e.stdout, "%d work item(s) set aside before any output was made: anomalynode exports poison --config %s\n", len(work), *config)
			}
		}
		return nil
	default:
		n, err := q.Replay(ctx, want...)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "replayed %d job(s)\n", n)
		if len(want) > 0 && n < len(want) {
			return fmt.Errorf("%d of the %d sequence numbers given were not in the dead-letter store", len(want)-n, len(want))
		}
		return nil
	}
}

func printDeadLetters(e *env, dead []output.DeadLetter, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(e.stdout)
		for _, d := range dead {
			if err := enc.Encode(struct {
				Seq uint64 `json:"seq"`
				output.Job
			}{d.Seq, d.Job}); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tDESTINATION\tSOP INSTANCE UID\tATTEMPTS\tDEAD AT\tLAST ERROR")
	for _, d := range dead {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\n", d.Seq, d.Job.Destination, d.Job.SOPInstanceUID, d.Job.Attempts,
			d.Job.DeadAt.Format("2006-01-02T15:04:05Z"), d.Job.LastError)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%d dead-lettered job(s)\n", len(dead))
	return nil
}

// printDeadWork lists the work items set aside (poison slices and series).
func printDeadWork(e *env, dead []ingest.DeadWork, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(e.stdout)
		for _, d := range dead {
			if err := enc.Encode(d); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tSTAGE\tSERIES INSTANCE UID\tSOP INSTANCE UID\tMODEL\tATTEMPTS\tSET ASIDE AT\tREASON")
	for _, d := range dead {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", d.Seq, d.Stage, d.SeriesInstanceUID, d.SOPInstanceUID, d.Model,
			d.Attempts, d.DeadAt.Format("2006-01-02T15:04:05Z"), d.Reason)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%d work item(s) set aside\n", len(dead))
	return nil
}

// openExportsJetStream reaches the node's JetStream: the external cluster when
// nats.url is set; else a running node's embedded server when it listens
// (nats.listen); else the embedded store under node.data_dir, which works only
// while the node is stopped (one process owns it).
func openExportsJetStream(ctx context.Context, e *env, cfg *configs.Config) (*ingest.JS, error) {
	if cfg.NATS.URL == "" && cfg.NATS.Listen != "" {
		remote := cfg.NATS
		remote.URL, remote.Listen = "nats://"+cfg.NATS.Listen, ""
		if js, err := ingest.OpenJetStream(ctx, remote, cfg.Node.DataDir, e.log); err == nil {
			return js, nil
		}
	}
	return ingest.OpenJetStream(ctx, cfg.NATS, cfg.Node.DataDir, e.log)
}
