package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"anomalynode/configs"
	"anomalynode/ingest"
)

// TestServeStartupFailures: every way 'serve' can fail to start returns one
// error line (main prints it and exits 1) instead of panicking, and leaves
// nothing half-started: the DICOM port is free again and the embedded store
// under the data directory can be opened by the next start.
func TestServeStartupFailures(t *testing.T) {
	cfgPath, _ := scoreFixture(t)
	base, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	good := string(base)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		config func(data string) string
		listen func() string
		admin  func() string
		want   string
	}{
		{name: "missing model", want: "model brain",
			config: func(string) string {
				return strings.Replace(good, "model.safetensors", "absent.safetensors", 1)
			}},
		{name: "missing embedder", want: "model brain",
			config: func(string) string { return strings.Replace(good, "tiny.onnx", "absent.onnx", 1) }},
		{name: "no ONNX Runtime library", want: "ONNX Runtime",
			config: func(string) string {
				return replaceLine(good, "  ort_library:", "  ort_library: /nonexistent/libonnxruntime.so")
			}},
		{name: "DICOM port in use", want: "dimse listen",
			listen: func() string { return busy.Addr().String() }},
		{name: "admin port in use", want: "admin listen",
			admin: func() string { return busy.Addr().String() }},
		{name: "unwritable data dir", want: "data dir",
			config: func(string) string { return good + "node:\n  data_dir: " + filepath.Join(notDir, "data") + "\n" }},
		{name: "NATS unreachable", want: "NATS",
			config: func(string) string {
				return good + "nats:\n  url: nats://" + freeAddr(t) + "\n"
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := t.TempDir()
			body := good + "node:\n  data_dir: " + data + "\n"
			if tc.config != nil {
				body = tc.config(data)
				if !strings.Contains(body, "data_dir:") {
					body += "node:\n  data_dir: " + data + "\n"
				}
			}
			cfg := filepath.Join(t.TempDir(), "node.yaml")
			if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			listen, admin := freeAddr(t), freeAddr(t)
			if tc.listen != nil {
				listen = tc.listen()
			}
			if tc.admin != nil {
				admin = tc.admin()
			}
			e, _, _ := testEnv()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			err := func() (err error) {
				defer func() {
					if p := recover(); p != nil {
						err = fmt.Errorf("panic: %v", p)
					}
				}()
				return runServe(ctx, e, []string{"--config", cfg, "--listen", listen, "--admin", admin, "--shutdown-grace", "1s"})
			}()
			if err == nil {
				t.Fatal("serve started")
			}
			msg := err.Error()
			if strings.HasPrefix(msg, "panic:") || strings.Contains(msg, "\n") || !strings.Contains(msg, tc.want) {
				t.Fatalf("want one line naming %q, got %q", tc.want, msg)
			}
			if tc.listen == nil {
				l, err := net.Listen("tcp", listen)
				if err != nil {
					t.Fatalf("the DICOM port is still held after a failed start: %v", err)
				}
				l.Close()
			}
			if strings.Contains(body, "data_dir: "+data) && !strings.Contains(body, "nats:") {
				// The next start must find the store free (a half-started
				// embedded server would hold its lock and files).
				js, err := ingest.OpenJetStream(ctx, configs.NATS{}, data, zerolog.Nop())
				if err != nil {
					t.Fatalf("the store is not free after a failed start: %v", err)
				}
				js.Close()
			}
		})
	}
}

// replaceLine replaces the first line of s starting with prefix.
func replaceLine(s, prefix, line string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, prefix) {
			lines[i] = line
			return strings.Join(lines, "\n")
		}
	}
	return s
}
