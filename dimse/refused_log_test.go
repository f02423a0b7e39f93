package dimse

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"anomalynode/internal/dcm"
)

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRefusedContextsLogged: the presentation contexts an SCP refuses are
// named in one log line per association, with the abstract syntax, the
// transfer syntaxes proposed and the reason; an association with none refused
// logs no such line.
func TestRefusedContextsLogged(t *testing.T) {
	var logBuf syncBuffer
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(ServerConfig{AETitle: "NODE"}, newRecorder(), zerolog.New(&logBuf), nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, l) }()
	defer func() { cancel(); <-done }()
	addr := l.Addr().String()
	dial := func(pcs []PresentationContext) {
		c, err := Dial(ctx, addr, ClientConfig{CalledAE: "NODE", Contexts: pcs})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	dial([]PresentationContext{{AbstractSyntax: CTImageStorage, TransferSyntaxes: []string{dcm.ExplicitVRLittleEndian}}})
	dial([]PresentationContext{
		{AbstractSyntax: CTImageStorage, TransferSyntaxes: []string{"1.2.3.998", "1.2.3.999"}},
		{AbstractSyntax: "1.2.3.4.5.6", TransferSyntaxes: []string{dcm.ExplicitVRLittleEndian}},
		{AbstractSyntax: CTImageStorage, TransferSyntaxes: []string{dcm.ExplicitVRLittleEndian}},
	})
	deadline := time.Now().Add(5 * time.Second)
	for strings.Count(logBuf.String(), "association ended") < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	var lines []string
	for _, l := range strings.Split(logBuf.String(), "\n") {
		if strings.Contains(l, "presentation contexts refused") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 {
		t.Fatalf("%d refused-context lines, want 1:\n%s", len(lines), logBuf.String())
	}
	for _, want := range []string{CTImageStorage + " [1.2.3.998, 1.2.3.999]: none of the transfer syntaxes supported",
		"1.2.3.4.5.6 [" + dcm.ExplicitVRLittleEndian + "]: abstract syntax (SOP class) not supported", `"accepted":1`} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("log line lacks %q:\n%s", want, lines[0])
		}
	}
}
