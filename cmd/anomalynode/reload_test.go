package main

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestReloadOnSIGHUP: a valid new file replaces the AE policy without a
// restart; an invalid one is refused and the running policy kept.
func TestReloadOnSIGHUP(t *testing.T) {
	data := t.TempDir()
	addr, admin := freeAddr(t), freeAddr(t)
	cfg := filepath.Join(data, "node.yaml")
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(cfg, []byte("node:\n  data_dir: "+data+"\nadmin:\n  listen: "+admin+"\n"+body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("dimse:\n  allowed_callers:\n    - ae_title: ALPHA\n")
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		e, _, _ := testEnv()
		served <- runServe(ctx, e, []string{"--config", cfg, "--listen", addr, "--ae", "NODE"})
	}()
	defer func() {
		cancel()
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("serve returned %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("serve did not stop")
		}
	}()
	echo := func(calling string) error {
		e, _, _ := testEnv()
		return runEcho(ctx, e, []string{"--addr", addr, "--called-ae", "NODE", "--calling-ae", calling, "--timeout", "10s"})
	}
	waitUntilTrue(t, 60*time.Second, "serve ready", func() bool { return echo("ALPHA") == nil })
	if err := echo("BETA"); err == nil {
		t.Fatal("BETA accepted before it was allowed")
	}
	reloads := func(result string) float64 {
		return metricSum(t, admin, `anomalynode_config_reloads_total{result="`+result+`"}`)
	}

	write("dimse:\n  allowed_callers:\n    - ae_title: ALPHA\n    - ae_title: BETA\n")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitUntilTrue(t, 10*time.Second, "reload applied", func() bool { return reloads("ok") == 1 })
	if err := echo("BETA"); err != nil {
		t.Fatalf("BETA refused after the reload allowed it: %v", err)
	}

	write("dimse:\n  allowed_calers: []\n")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitUntilTrue(t, 10*time.Second, "invalid reload refused", func() bool { return reloads("invalid") == 1 })
	if err := echo("BETA"); err != nil {
		t.Fatalf("the running policy was lost after an invalid reload: %v", err)
	}
	if err := echo("GAMMA"); err == nil {
		t.Fatal("GAMMA accepted: an invalid file must not change the policy")
	}
}

func waitUntilTrue(t *testing.T, d time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
