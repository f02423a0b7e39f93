package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"

	"github.com/rs/zerolog"
	"github.com/suyashkumar/dicom/pkg/tag"
	"golang.org/x/sys/unix"

	"anomalynode/configs"
	"anomalynode/console"
	"anomalynode/ingest"
)

// newJournalLogger is newLogger with the journal as a second output: the
// normal log keeps its level, while the journal also gets the debug lines
// (every instance received and slice scored) it counts per series.
func newJournalLogger(w *os.File, level, format string, j io.Writer) zerolog.Logger {
	out, lvl := logOutput(w, level, format)
	min := lvl
	if min > zerolog.DebugLevel {
		min = zerolog.DebugLevel
	}
	mw := zerolog.MultiLevelWriter(&zerolog.FilteredLevelWriter{Writer: zerolog.LevelWriterAdapter{Writer: out}, Level: lvl}, j)
	return zerolog.New(mw).Level(min).With().Timestamp().Logger()
}

// newConsole wires the console to the running node's stages.
func (n *node) newConsole() (http.Handler, error) {
	cfg := n.currentConfig()
	auth, err := console.LoadAuth(cfg.Admin)
	if err != nil {
		return nil, err
	}
	o := console.Options{
		Gatherer: n.reg,
		Journal:  n.journal,
		Ready:    n.readiness,
		Disk:     n.disk,
		Config:   n.currentConfig,
		Router:   func() *ingest.Router { return n.svc.Router() },
		Reload:   n.reload,
		Describe: n.describe,
		Auth:     auth,
		// configs refuses a non-loopback listener without authentication;
		// the console checks again in case the file's auth is empty.
		RequireAuth: !cfg.Admin.Loopback(),
		ShowPHI:     cfg.Admin.ShowPHI,
		Log:         n.log.With().Str("component", "console").Logger(),
	}
	if n.queue != nil {
		o.DeadLetters = n.queue
	}
	return console.New(o)
}

func (n *node) currentConfig() *configs.Config {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cfg
}

// disk reports the data directory's file system against the ingest floor.
func (n *node) disk() (console.Disk, error) {
	cfg := n.currentConfig()
	var st unix.Statfs_t
	if err := unix.Statfs(cfg.Node.DataDir, &st); err != nil {
		return console.Disk{}, fmt.Errorf("statfs %s: %w", cfg.Node.DataDir, err)
	}
	return console.Disk{
		Free: st.Bavail * uint64(st.Bsize), Total: st.Blocks * uint64(st.Bsize),
		FloorBytes: cfg.Ingest.MinFreeBytes, FloorPercent: cfg.Ingest.MinFreePercent,
	}, nil
}

// describe reads a stored instance's header for the console's series
// description; patient name and ID are passed on only with admin.show_phi.
func (n *node) describe(ctx context.Context, sop string) (console.SeriesInfo, error) {
	r, ts, err := n.svc.OpenInstance(ctx, sop)
	if err != nil {
		return console.SeriesInfo{}, err
	}
	defer r.Close()
	h, _, err := ingest.ReadHeader(r, ts, 1<<20)
	if err != nil {
		return console.SeriesInfo{}, err
	}
	info := console.SeriesInfo{Modality: h.Str(tag.Modality), Description: h.Str(tag.SeriesDescription)}
	if n.currentConfig().Admin.ShowPHI {
		info.PatientName, info.PatientID = h.Str(tag.PatientName), h.Str(tag.PatientID)
	}
	return info, nil
}

// adminTLS is the admin listener's TLS (admin.tls): nil without a
// certificate. With a client CA, a client certificate is verified when one
// is presented (the console then requires it; /healthz and /metrics stay
// reachable for probes without one).
func adminTLS(a configs.Admin) (*tls.Config, error) {
	if a.TLS.Cert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(a.TLS.Cert, a.TLS.Key)
	if err != nil {
		return nil, fmt.Errorf("admin.tls: %w", err)
	}
	c := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if a.TLS.ClientCA != "" {
		pem, err := os.ReadFile(a.TLS.ClientCA)
		if err != nil {
			return nil, fmt.Errorf("admin.tls.client_ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("admin.tls.client_ca %s: no PEM certificate", a.TLS.ClientCA)
		}
		c.ClientCAs, c.ClientAuth = pool, tls.VerifyClientCertIfGiven
	}
	return c, nil
}
