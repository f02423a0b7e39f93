package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestServeRefusesOpenConsole: an admin listener on a non-loopback address
// without authentication stops serve before anything starts, naming the key.
func TestServeRefusesOpenConsole(t *testing.T) {
	data := t.TempDir()
	cfg := filepath.Join(data, "node.yaml")
	os.WriteFile(cfg, []byte("node:\n  data_dir: "+data+"\nadmin:\n  listen: \"0.0.0.0:0\"\n"), 0o644)
	e, _, _ := testEnv()
	err := runServe(context.Background(), e, []string{"--config", cfg, "--listen", freeAddr(t)})
	if err == nil || !strings.Contains(err.Error(), "node.yaml:4: admin.listen") || !strings.Contains(err.Error(), "requires authentication") {
		t.Fatalf("serve with an open console: %v", err)
	}
}

// TestServeConsoleToken: the node mounts the console on the admin listener;
// with admin.token_file it answers 401 without the token and the Overview
// with it, while /healthz stays open for probes.
func TestServeConsoleToken(t *testing.T) {
	data := t.TempDir()
	admin := freeAddr(t)
	tok := filepath.Join(data, "console.token")
	os.WriteFile(tok, []byte("console-test-token-0123\n"), 0o600)
	cfg := filepath.Join(data, "node.yaml")
	os.WriteFile(cfg, []byte("node:\n  data_dir: "+data+"\nadmin:\n  listen: "+admin+"\n  token_file: "+tok+"\n"), 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		e, _, _ := testEnv()
		served <- runServe(ctx, e, []string{"--config", cfg, "--listen", freeAddr(t)})
	}()
	defer func() {
		cancel()
		select {
		case <-served:
		case <-time.After(30 * time.Second):
			t.Error("serve did not stop")
		}
	}()
	get := func(path, token string) int {
		req, _ := http.NewRequest("GET", "http://"+admin+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		res.Body.Close()
		return res.StatusCode
	}
	waitUntilTrue(t, 60*time.Second, "admin listener up", func() bool { return get("/healthz", "") == 200 })
	if code := get("/", ""); code != http.StatusUnauthorized {
		t.Errorf("console without the token: %d, want 401", code)
	}
	if code := get("/", "console-test-token-0123"); code != http.StatusOK {
		t.Errorf("console with the token: %d, want 200", code)
	}
	if code := get("/config", "console-test-token-0123"); code != http.StatusOK {
		t.Errorf("configuration page with the token: %d, want 200", code)
	}
}
