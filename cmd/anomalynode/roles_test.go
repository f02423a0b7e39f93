package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"
)

// TestNodeRoles: a receiver opens its DICOM listener and loads no model
// (its model files may be absent: routing only names them) and is ready
// without one; a worker loads its models and opens no DICOM listener (the
// port stays free) and no watched folder.
func TestNodeRoles(t *testing.T) {
	cfgPath, _ := scoreFixture(t)
	base, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	defer ns.Shutdown()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	open := func(role, body string) (*node, string) {
		t.Helper()
		watch := t.TempDir()
		body += "node:\n  data_dir: " + t.TempDir() + "\n  role: " + role + "\nnats:\n  url: " + ns.ClientURL() +
			"\ningest:\n  watch:\n    - path: " + watch + "\n"
		cfg := filepath.Join(t.TempDir(), "node.yaml")
		if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		listen := freeAddr(t)
		n, err := openNode(context.Background(), cfg, overrides{listen: listen, admin: freeAddr(t)}, zerolog.Nop())
		if err != nil {
			t.Fatalf("%s: %v", role, err)
		}
		t.Cleanup(n.close)
		return n, listen
	}

	// The receiver's model file is absent: it must not be opened.
	r, _ := open("receiver", strings.Replace(string(base), "model.safetensors", "absent.safetensors", 1))
	if len(r.served) != 0 || r.worker != nil || r.fin != nil || r.queue != nil {
		t.Errorf("receiver: %d models, worker %v, finaliser %v, queue %v; want none", len(r.served), r.worker != nil, r.fin != nil, r.queue != nil)
	}
	if r.dimseLn == nil || len(r.watch) != 1 {
		t.Errorf("receiver: listener %v, %d watched folders; want both", r.dimseLn != nil, len(r.watch))
	}
	r.mu.Lock()
	r.ready = true
	r.mu.Unlock()
	if err := r.readiness(); err != nil {
		t.Errorf("receiver not ready: %v", err)
	}

	w, listen := open("worker", string(base))
	if len(w.served) != 1 || w.worker == nil || w.fin == nil || w.queue == nil {
		t.Errorf("worker: %d models, worker %v, finaliser %v, queue %v; want all", len(w.served), w.worker != nil, w.fin != nil, w.queue != nil)
	}
	if w.dimseLn != nil || len(w.watch) != 0 {
		t.Errorf("worker: listener %v, %d watched folders; want none", w.dimseLn != nil, len(w.watch))
	}
	l, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatalf("worker holds the DICOM port: %v", err)
	}
	l.Close()
}
