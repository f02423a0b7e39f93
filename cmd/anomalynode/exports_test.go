package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"anomalynode/configs"
	"anomalynode/ingest"
	"anomalynode/internal/dcm"
	"anomalynode/internal/peers"
	"anomalynode/output"
)

// TestExportsListReplay dead-letters a job in a node's on-disk JetStream,
// then lists and replays it with the subcommand: once through the running
// node's loopback listener, once against the store with the node stopped.
func TestExportsListReplay(t *testing.T) {
	for _, running := range []bool{true, false} {
		name := "node stopped"
		if running {
			name = "node running with nats.listen"
		}
		t.Run(name, func(t *testing.T) { testExportsListReplay(t, running) })
	}
}

func testExportsListReplay(t *testing.T, running bool) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "node.yaml")
	yaml := "node:\n  data_dir: " + dir + "\nexport:\n  max_attempts: 1\n"
	if running {
		yaml += fmt.Sprintf("nats:\n  listen: 127.0.0.1:%d\n", peers.FreePort(t))
	}
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o644); err != nil {
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
	obj := &output.Object{SOPClassUID: output.SegmentationStorage, SOPInstanceUID: "2.25.1234", TransferSyntaxUID: dcm.ExplicitVRLittleEndian, Part10: []byte("x")}
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
	if running {
		defer js.Close()
	} else if err := js.Close(); err != nil {
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
