// Package peers starts and drives the real DICOM peers that integration tests
// run against (dcmtk's tools, Orthanc). A test that needs a tool which is not
// installed fails, never skips: CI installs every one of them.
package peers

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Tool returns the path of an installed peer program, failing the test when it
// is missing (scripts/install-test-tools.sh installs them all).
func Tool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("peers: %s is not installed (run scripts/install-test-tools.sh): %v", name, err)
	}
	return p
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("peers: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Orthanc is a running Orthanc archive started for one test.
type Orthanc struct {
	AET       string
	DicomPort int
	HTTPPort  int
	Dir       string
	cmd       *exec.Cmd
	bin       string
	config    string
	logFile   string
	t         testing.TB
}

// Modality is a remote AE Orthanc knows (it can C-STORE to it).
type Modality struct {
	Name string
	AET  string
	Host string
	Port int
}

// StartOrthanc starts Orthanc on free ports with its storage in a temp folder,
// waits until its REST API answers, and stops it when the test ends. extra is
// merged into the JSON configuration (e.g. plugins).
func StartOrthanc(t testing.TB, modalities []Modality, extra map[string]any) *Orthanc {
	t.Helper()
	bin := Tool(t, "Orthanc")
	dir := t.TempDir()
	o := &Orthanc{AET: "ARCHIVE", DicomPort: FreePort(t), HTTPPort: FreePort(t), Dir: dir, t: t, bin: bin}
	mods := map[string]any{}
	for _, m := range modalities {
		mods[m.Name] = []any{m.AET, m.Host, m.Port}
	}
	cfg := map[string]any{
		"Name":                    "ARCHIVE",
		"StorageDirectory":        filepath.Join(dir, "storage"),
		"IndexDirectory":          filepath.Join(dir, "index"),
		"HttpPort":                o.HTTPPort,
		"DicomPort":               o.DicomPort,
		"DicomAet":                o.AET,
		"RemoteAccessAllowed":     false,
		"AuthenticationEnabled":   false,
		"DicomModalities":         mods,
		"DicomCheckModalityHost":  false,
		"DicomAlwaysAllowStore":   true,
		"DicomAlwaysAllowEcho":    true,
		"UnknownSopClassAccepted": true,
		"StableAge":               1,
		"Plugins":                 []string{},
		"HttpServerEnabled":       true,
		"DicomScuTimeout":         30,
		"OverwriteInstances":      true,
	}
	for k, v := range extra {
		cfg[k] = v
	}
	o.config = filepath.Join(dir, "orthanc.json")
	data, _ := json.MarshalIndent(cfg, "", "  ")
	if err := os.WriteFile(o.config, data, 0o644); err != nil {
		t.Fatal(err)
	}
	o.logFile = filepath.Join(dir, "orthanc.log")
	o.Start()
	t.Cleanup(o.Stop)
	return o
}

// Start (re)starts the Orthanc process with the same storage and ports.
func (o *Orthanc) Start() {
	o.t.Helper()
	logf, err := os.OpenFile(o.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		o.t.Fatal(err)
	}
	o.cmd = exec.Command(o.bin, o.config)
	o.cmd.Stdout, o.cmd.Stderr = logf, logf
	if err := o.cmd.Start(); err != nil {
		o.t.Fatalf("peers: start Orthanc: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := o.Get("/system"); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	log, _ := os.ReadFile(o.logFile)
	o.t.Fatalf("peers: Orthanc did not come up in 30s; log:\n%s", tail(string(log), 3000))
}

// Stop stops the Orthanc process (idempotent).
func (o *Orthanc) Stop() {
	if o.cmd == nil || o.cmd.Process == nil {
		return
	}
	_ = o.cmd.Process.Kill()
	_ = o.cmd.Wait()
	o.cmd = nil
}

// URL is the base of Orthanc's REST API.
func (o *Orthanc) URL() string { return fmt.Sprintf("http://127.0.0.1:%d", o.HTTPPort) }

// Get fetches a REST resource and returns its body; non-2xx is an error.
func (o *Orthanc) Get(path string) ([]byte, error) {
	return o.do(http.MethodGet, path, "")
}

// Post sends body to a REST resource and returns the answer.
func (o *Orthanc) Post(path, body string) ([]byte, error) {
	return o.do(http.MethodPost, path, body)
}

// GetJSON fetches a REST resource and decodes it into v.
func (o *Orthanc) GetJSON(path string, v any) error {
	b, err := o.Get(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// Instances lists the Orthanc IDs of every stored instance.
func (o *Orthanc) Instances() ([]string, error) {
	var ids []string
	err := o.GetJSON("/instances", &ids)
	return ids, err
}

func (o *Orthanc) do(method, path, body string) ([]byte, error) {
	req, err := http.NewRequest(method, o.URL()+path, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	c := &http.Client{Timeout: 60 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return b, fmt.Errorf("peers: %s %s: HTTP %d: %s", method, path, resp.StatusCode, tail(string(b), 500))
	}
	return b, nil
}

// Log returns the end of Orthanc's log, for failure messages.
func (o *Orthanc) Log() string {
	b, _ := os.ReadFile(o.logFile)
	return tail(string(b), 4000)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// Binary returns the path of the anomalynode binary: $ANOMALYNODE_BIN when set
// (make test sets it to bin/anomalynode), else one built into the test's temp
// folder from this checkout.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("ANOMALYNODE_BIN"); p != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	out := filepath.Join(t.TempDir(), "anomalynode")
	cmd := exec.Command("go", "build", "-o", out, "anomalynode/cmd/anomalynode")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("peers: build anomalynode: %v\n%s", err, b)
	}
	return out
}
