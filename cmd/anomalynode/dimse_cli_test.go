package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"anomalynode/dimse"
	"anomalynode/internal/dcm"
)

// writeTestInstance writes a small valid CT instance (Explicit VR LE).
func writeTestInstance(t *testing.T, path, sopInstance string) {
	t.Helper()
	var ds bytes.Buffer
	el := func(g, e uint16, vr, v string) {
		if len(v)%2 == 1 {
			if vr == "UI" {
				v += "\x00"
			} else {
				v += " "
			}
		}
		ds.Write([]byte{byte(g), byte(g >> 8), byte(e), byte(e >> 8), vr[0], vr[1], byte(len(v)), byte(len(v) >> 8)})
		ds.WriteString(v)
	}
	el(0x0008, 0x0016, "UI", dimse.CTImageStorage)
	el(0x0008, 0x0018, "UI", sopInstance)
	el(0x0008, 0x0060, "CS", "CT")
	el(0x0020, 0x000D, "UI", "1.2.3.4")
	el(0x0020, 0x000E, "UI", "1.2.3.4.5")
	var f bytes.Buffer
	if err := dimse.WriteFileMeta(&f, dimse.FileMeta{MediaStorageSOPClassUID: dimse.CTImageStorage, MediaStorageSOPInstanceUID: sopInstance,
		TransferSyntaxUID: dcm.ExplicitVRLittleEndian}); err != nil {
		t.Fatal(err)
	}
	f.Write(ds.Bytes())
	if err := os.WriteFile(path, f.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func testEnv() (*env, *bytes.Buffer, *bytes.Buffer) {
	var out, errb bytes.Buffer
	return &env{log: zerolog.Nop(), stdout: &out, stderr: &errb}, &out, &errb
}

// combinedEnv is testEnv with stdout and stderr in one buffer.
func combinedEnv() (*env, *bytes.Buffer) {
	var out bytes.Buffer
	return &env{log: zerolog.Nop(), stdout: &out, stderr: &out}, &out
}

func TestServeEchoSend(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	data := t.TempDir()
	admin := freeAddr(t)
	cfg := filepath.Join(data, "node.yaml")
	// No model and no rule: instances are stored durably and routed nowhere.
	if err := os.WriteFile(cfg, []byte("node:\n  data_dir: "+data+"\nadmin:\n  listen: "+admin+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		e, _, _ := testEnv()
		served <- runServe(ctx, e, []string{"--config", cfg, "--listen", addr, "--ae", "NODE"})
	}()
	// Opening the store syncs every write: generous on a loaded machine.
	deadline := time.Now().Add(60 * time.Second)
	for {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		select {
		case err := <-served:
			t.Fatalf("serve stopped before listening: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("serve did not start listening in 60s")
		}
		time.Sleep(20 * time.Millisecond)
	}

	e, stdout, _ := testEnv()
	if err := runEcho(ctx, e, []string{"--addr", addr, "--called-ae", "NODE"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout.String(), "success") {
		t.Fatalf("echo printed %q", stdout)
	}

	src := t.TempDir()
	for i := 0; i < 5; i++ {
		writeTestInstance(t, filepath.Join(src, fmt.Sprintf("i%d.dcm", i)), fmt.Sprintf("1.2.3.4.5.%d", i))
	}
	if err := os.WriteFile(filepath.Join(src, "README.txt"), []byte("not dicom"), 0o644); err != nil {
		t.Fatal(err)
	}
	e, stdout, stderr := testEnv()
	if err := runSend(ctx, e, []string{"--addr", addr, "--called-ae", "NODE", src}); err != nil {
		t.Fatalf("send: %v\n%s", err, stderr)
	}
	if !strings.Contains(stdout.String(), "sent 5 of 5") || !strings.Contains(stderr.String(), "README.txt") {
		t.Fatalf("send output %q / %q", stdout, stderr)
	}
	if got := metricSum(t, admin, "anomalynode_ingest_instances_received_total"); got != 5 {
		t.Fatalf("node received %v instances, want 5", got)
	}

	// Errors are returned, not printed and swallowed.
	e, _, _ = testEnv()
	if err := runEcho(ctx, e, []string{"--addr", addr, "--called-ae", "NODE", "--calling-ae", strings.Repeat("X", 20)}); err == nil {
		t.Fatal("echo with a 20-character AE title succeeded")
	}
	e, _, _ = testEnv()
	if err := runSend(ctx, e, []string{"--addr", addr}); err == nil {
		t.Fatal("send without files succeeded")
	}

	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("serve returned %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not stop")
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// metricSum adds up every sample of a metric on the node's /metrics page.
func metricSum(t *testing.T, admin, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	sum := 0.0
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, name) || (len(line) > len(name) && line[len(name)] != '{' && line[len(name)] != ' ') {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}
