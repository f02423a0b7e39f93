package peers

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// DcmtkEnv is the environment to run dcmtk tools with: TCP_NODELAY=1 turns off
// Nagle's algorithm in dcmnet, without which every small PDU waits for a
// delayed ACK (about 40 ms per DIMSE message on loopback).
func DcmtkEnv() []string { return append(os.Environ(), "TCP_NODELAY=1") }

// StoreSCP is a running dcmtk storescp started for one test.
type StoreSCP struct {
	AET  string
	Port int
	// Dir receives the files, named <modality>.<SOP instance UID>.
	Dir string
	Log string
}

// Addr is the HOST:PORT to send to.
func (s *StoreSCP) Addr() string { return fmt.Sprintf("127.0.0.1:%d", s.Port) }

// StartStoreSCP starts dcmtk's storescp on a free port with AE title aet,
// storing into a temp folder, and stops it when the test ends. extra are
// further storescp flags (e.g. "+xa" to accept all transfer syntaxes).
func StartStoreSCP(t testing.TB, aet string, extra ...string) *StoreSCP {
	t.Helper()
	s := &StoreSCP{AET: aet, Port: FreePort(t), Dir: t.TempDir()}
	s.Log = filepath.Join(t.TempDir(), "storescp.log")
	args := append([]string{"-aet", aet, "-od", s.Dir}, extra...)
	cmd := exec.Command(Tool(t, "storescp"), append(args, strconv.Itoa(s.Port))...)
	cmd.Env = DcmtkEnv()
	logf, err := os.Create(s.Log)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("peers: start storescp: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
	})
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", s.Addr()); err == nil {
			c.Close()
			return s
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("peers: storescp did not listen on %s", s.Addr())
	return nil
}
