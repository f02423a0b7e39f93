package ingest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"anomalynode/configs"
)

// JS is an open JetStream: an embedded NATS server under the data directory, or
// a connection to an external cluster. Every stage (ingest, inference, the
// output export queue) reuses one JS; the code paths are the same in both modes.
type JS struct {
	// JetStream is the client API (streams, consumers, KV, object store).
	JetStream jetstream.JetStream
	// Conn is the underlying NATS connection.
	Conn *nats.Conn
	// Prefix starts every stream, bucket and subject name (configs nats.prefix).
	Prefix string
	// Replicas is the replica count for new streams (1 when embedded).
	Replicas int
	// Embedded is true when this process runs the NATS server itself.
	Embedded bool

	srv *server.Server
}

// Name returns a stream/bucket name scoped by the configured prefix, e.g.
// Name("WORK") = "ANOMALYNODE_WORK".
func (j *JS) Name(s string) string { return j.Prefix + "_" + s }

// Subject returns a subject scoped by the configured prefix, e.g.
// Subject("work.slice") = "ANOMALYNODE.work.slice".
func (j *JS) Subject(s string) string { return j.Prefix + "." + s }

// OpenJetStream starts the embedded server (cfg.URL empty: JetStream file
// storage under dataDir/jetstream, every write synced to disk before it is
// acknowledged, no network listener unless cfg.Listen names a loopback address)
// or connects to cfg.URL with the configured credentials and TLS.
func OpenJetStream(ctx context.Context, cfg configs.NATS, dataDir string, log zerolog.Logger) (*JS, error) {
	prefix := cfg.Prefix
	if prefix == "" {
		prefix = "ANOMALYNODE"
	}
	j := &JS{Prefix: prefix, Replicas: cfg.Replicas}
	if j.Replicas < 1 {
		j.Replicas = 1
	}
	opts := []nats.Option{
		nats.Name("anomalynode"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
	}
	url := cfg.URL
	if url == "" {
		srv, err := startEmbedded(cfg, dataDir)
		if err != nil {
			return nil, err
		}
		j.srv, j.Embedded, j.Replicas = srv, true, 1
		opts = append(opts, nats.InProcessServer(srv))
		log.Info().Str("store_dir", filepath.Join(dataDir, "jetstream")).Str("listen", cfg.Listen).Msg("ingest: embedded JetStream started")
	} else {
		if cfg.CredentialsFile != "" {
			opts = append(opts, nats.UserCredentials(cfg.CredentialsFile))
		}
		if cfg.TLS.CA != "" || cfg.TLS.Cert != "" {
			tc, err := tlsConfig(cfg.TLS)
			if err != nil {
				return nil, err
			}
			opts = append(opts, nats.Secure(tc))
		}
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		j.shutdownServer()
		return nil, fmt.Errorf("ingest: connect to NATS: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		j.shutdownServer()
		return nil, fmt.Errorf("ingest: jetstream: %w", err)
	}
	if _, err := js.AccountInfo(ctx); err != nil {
		nc.Close()
		j.shutdownServer()
		return nil, fmt.Errorf("ingest: jetstream not available: %w", err)
	}
	j.Conn, j.JetStream = nc, js
	return j, nil
}

func startEmbedded(cfg configs.NATS, dataDir string) (*server.Server, error) {
	storeDir := filepath.Join(dataDir, "jetstream")
	if err := os.MkdirAll(storeDir, 0o750); err != nil {
		return nil, fmt.Errorf("ingest: %w", err)
	}
	o := &server.Options{
		ServerName: "anomalynode",
		JetStream:  true,
		StoreDir:   storeDir,
		// Sync every write by default: an instance acknowledged to a sender
		// must survive a power cut, not only a process crash.
		SyncAlways: true,
		DontListen: true,
		NoSigs:     true,
		NoLog:      true,
		MaxPayload: 8 << 20,
	}
	if cfg.SyncInterval > 0 {
		o.SyncAlways, o.SyncInterval = false, cfg.SyncInterval
	} else {
		// The streams made with asynchronous persistence (the work stream
		// of a node with instance files: requeue.go) are flushed this often.
		o.SyncInterval = workSyncInterval
	}
	if cfg.Listen != "" {
		host, port, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("ingest: nats.listen: %w", err)
		}
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return nil, fmt.Errorf("ingest: nats.listen %q: the embedded server listens on loopback only", cfg.Listen)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return nil, fmt.Errorf("ingest: nats.listen port: %w", err)
		}
		o.DontListen, o.Host, o.Port = false, host, p
	}
	srv, err := server.NewServer(o)
	if err != nil {
		return nil, fmt.Errorf("ingest: embedded NATS: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("ingest: embedded NATS did not start within 30s")
	}
	return srv, nil
}

func tlsConfig(c configs.NATSTLS) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CA != "" {
		pem, err := os.ReadFile(c.CA)
		if err != nil {
			return nil, fmt.Errorf("ingest: nats tls ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ingest: nats tls ca %s: no certificates", c.CA)
		}
		tc.RootCAs = pool
	}
	if c.Cert != "" {
		cert, err := tls.LoadX509KeyPair(c.Cert, c.Key)
		if err != nil {
			return nil, fmt.Errorf("ingest: nats tls cert: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

func (j *JS) shutdownServer() {
	if j.srv != nil {
		j.srv.Shutdown()
		j.srv.WaitForShutdown()
	}
}

// Close drains the connection (pending publishes and acks are flushed) and
// stops the embedded server, if any.
func (j *JS) Close() error {
	var err error
	if j.Conn != nil {
		if derr := j.Conn.Drain(); derr != nil && !errors.Is(derr, nats.ErrConnectionClosed) {
			err = fmt.Errorf("ingest: drain NATS: %w", derr)
		}
		deadline := time.Now().Add(10 * time.Second)
		for !j.Conn.IsClosed() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		j.Conn.Close()
	}
	j.shutdownServer()
	return err
}
