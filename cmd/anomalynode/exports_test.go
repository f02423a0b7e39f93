package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"anomalynode/configs"
	"anomalynode/ingest"
	"anomalynode/output"
)

// TestExportsListReplay dead-letters a job in a node's on-disk JetStream,
// then lists and replays it with the subcommand against the same store.
func TestExportsListReplay(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "node.yaml")
	if err := os.WriteFile(cfgPath, []byte("node:\n  data_dir: "+dir+"\nexport:\n  max_attempts: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := configs.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	js, err := ingest.OpenJetStream(ctx, cfg.NATS, cfg.Node.DataDir, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	failing := output.Destination{Name: "pacs", Sender: output.SenderFunc(func(context.Context, *output.Object) error {
		return errors.New("connection refused")
	})}
	q, err := output.NewQueue(ctx, js.JetStream, output.QueueConfigFrom(cfg), []output.Destination{failing}, zerolog.Nop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	obj := &output.Object{SOPClassUID: output.SegmentationStorage, SOPInstanceUID: "2.25.1234", TransferSyntaxUID: output.ExplicitVRLittleEndian, Part10: []byte("x")}
	if err := q.Enqueue(ctx, obj, "pacs"); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = q.Run(runCtx); close(done) }()
	for {
		dead, err := q.DeadLetters(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(dead) == 1 {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("job was not dead-lettered")
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	<-done
	if err := js.Close(); err != nil {
		t.Fatal(err)
	}

	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		e := &env{log: zerolog.Nop(), stdout: &out, stderr: &out}
		err := runExports(ctx, e, args)
		return out.String(), err
	}
	out, err := run("list", "--config", cfgPath)
	if err != nil || !strings.Contains(out, "2.25.1234") || !strings.Contains(out, "connection refused") || !strings.Contains(out, "1 dead-lettered job(s)") {
		t.Fatalf("list: %v\n%s", err, out)
	}
	out, err = run("replay", "--config", cfgPath, "--seq", "1")
	if err != nil || !strings.Contains(out, "replayed 1 job(s)") {
		t.Fatalf("replay: %v\n%s", err, out)
	}
	out, err = run("list", "--config", cfgPath, "--json")
	if err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("list after replay: %v\n%s", err, out)
	}
	if _, err := run("frobnicate", "--config", cfgPath); err == nil {
		t.Error("unknown action accepted")
	}
	if _, err := run("list"); err == nil {
		t.Error("missing --config accepted")
	}
}
