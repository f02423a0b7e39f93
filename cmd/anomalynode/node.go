package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"reflect"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"anomalynode/configs"
	"anomalynode/console"
	"anomalynode/dimse"
	"anomalynode/inference"
	"anomalynode/inference/stage"
	"anomalynode/ingest"
	"anomalynode/internal/collect"
	"anomalynode/output"
)

// overrides are the serve flags that replace config values (quick starts, tests).
type overrides struct {
	listen, ae, data, admin string
}

func (o overrides) apply(c *configs.Config) {
	if o.listen != "" {
		c.DIMSE.Listen = o.listen
	}
	if o.ae != "" {
		c.DIMSE.AETitle = o.ae
	}
	if o.data != "" {
		c.Node.DataDir = o.data
	}
	if o.admin != "" {
		c.Admin.Listen = o.admin
	}
}

func loadConfig(path string, o overrides) (*configs.Config, error) {
	cfg, err := configs.Load(path)
	if err != nil {
		return nil, err
	}
	o.apply(cfg)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// node is the running service: every stage wired together.
type node struct {
	path string
	over overrides
	log  zerolog.Logger
	reg  *prometheus.Registry

	mu  sync.Mutex
	cfg *configs.Config

	js      *ingest.JS
	svc     *ingest.Service
	served  map[string]*inference.Served
	worker  *stage.Worker
	queue   *output.Queue
	fin     *output.Finaliser
	scp     *dimse.Server
	watch   []*ingest.Watcher
	dimseLn net.Listener
	admin   *http.Server
	ready   bool
	// journal keeps the series timelines of the console (from the log);
	// console is its handler on the admin listener.
	journal *console.Journal
	console http.Handler

	reloads *prometheus.CounterVec
}

// openNode opens every stage; nothing runs until run is called.
func openNode(ctx context.Context, path string, over overrides, log zerolog.Logger) (n *node, err error) {
	cfg, err := loadConfig(path, over)
	if err != nil {
		return nil, err
	}
	journal := console.NewJournal(console.JournalOptions{ShowPHI: cfg.Admin.ShowPHI})
	if log.GetLevel() != zerolog.Disabled {
		log = newJournalLogger(os.Stderr, cfg.Log.Level, cfg.Log.Format, journal)
	}
	// nd, not the named result n: every error return sets n to nil before
	// this deferred close runs, and what was opened must still be released.
	nd := &node{path: path, over: over, cfg: cfg, log: log, reg: prometheus.NewRegistry(), served: map[string]*inference.Served{}, journal: journal}
	n = nd
	defer func() {
		if err != nil {
			nd.close()
		}
	}()
	goc, proc := collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})
	n.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "anomalynode_config_reloads_total", Help: "Configuration reloads on SIGHUP, by result.",
	}, []string{"result"})
	if err := errors.Join(collect.Register(n.reg, &goc), collect.Register(n.reg, &proc), collect.Register(n.reg, &n.reloads)); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if err := os.MkdirAll(cfg.Node.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}

	if n.js, err = ingest.OpenJetStream(ctx, cfg.NATS, cfg.Node.DataDir, log); err != nil {
		return nil, err
	}
	if n.svc, err = ingest.NewService(ctx, n.js, cfg, log, n.reg); err != nil {
		return nil, err
	}

	engines := map[string]*inference.Engine{}
	models := map[string]output.ServedModel{}
	names := make([]string, 0, len(cfg.Models))
	// A receiver loads no model: routing still names them, for the workers.
	for name := range cfg.Models {
		if cfg.Node.Works() {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	modelInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "anomalynode_model_info", Help: "Loaded models (value 1), with their identity.",
	}, []string{"model", "sha256", "embedder", "prototypes"})
	if err := collect.Register(n.reg, &modelInfo); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	for _, name := range names {
		setup, err := scoreSetup(cfg, name, "", 0)
		if err != nil {
			return nil, fmt.Errorf("model %s: %w", name, err)
		}
		setup.Registerer = prometheus.WrapRegistererWith(prometheus.Labels{"model": name}, n.reg)
		s, err := inference.OpenModel(setup)
		if err != nil {
			return nil, fmt.Errorf("model %s: %w", name, err)
		}
		n.served[name] = s
		engines[name] = s.Engine
		if s.NiceErr != nil {
			log.Warn().Err(s.NiceErr).Str("model", name).Int("nice", setup.Nice).
				Msg("node: inference.nice not applied; the model competes with receiving and storing at normal priority")
		}
		sha, err := inference.FileSHA256(setup.ModelPath)
		if err != nil {
			return nil, fmt.Errorf("model %s: %w", name, err)
		}
		fp, err := findingParams(cfg, name, s, setup.FPR)
		if err != nil {
			return nil, fmt.Errorf("model %s: %w", name, err)
		}
		models[name] = output.ServedModel{
			Identity:  output.ModelIdentity{Name: name, Version: s.Model.Meta.Embedder.Name, SHA256: sha},
			Threshold: s.Threshold, Findings: fp,
		}
		modelInfo.WithLabelValues(name, sha, s.Model.Meta.Embedder.Name, fmt.Sprint(s.Scorer.Prototypes())).Set(1)
		log.Info().Str("model", name).Str("sha256", sha).Float32("threshold", s.Threshold).Msg("node: model loaded")
	}

	results, err := stage.OpenResultStore(ctx, n.js.JetStream, n.js.Name("RESULTS"), n.js.Replicas, cfg.Ingest.Retention)
	if err != nil {
		return nil, err
	}
	if len(engines) > 0 {
		if n.worker, err = stage.NewWorker(stage.WorkerOptions{
			Engines: engines, Results: results, Queue: 2 * cfg.Inference.Batch, Log: log, Registerer: n.reg,
			Gate: n.svc.Gate(),
		}); err != nil {
			return nil, err
		}
	}
	// The finaliser and the export queue run where the models are: the
	// finaliser needs each model's identity and threshold.
	if cfg.Node.Works() {
		dests, err := output.DestinationsFrom(cfg, log)
		if err != nil {
			return nil, err
		}
		if n.queue, err = output.NewQueue(ctx, n.js.JetStream, output.QueueConfigFrom(cfg), dests, log, n.reg); err != nil {
			return nil, err
		}
		if n.fin, err = output.NewFinaliser(output.FinaliserOptions{
			Results: results, Instances: n.svc, Queue: n.queue, Models: models,
			SEG: output.SEGOptionsFrom(cfg), SC: output.SCOptionsFrom(cfg), SR: output.SROptionsFrom(cfg),
			SRDestinations: func(d []string) []string { return output.SRDestinations(cfg, d) },
			Log:            log, Registerer: n.reg,
		}); err != nil {
			return nil, err
		}
	}

	scpCfg, err := dimseServerConfig(cfg)
	if err != nil {
		return nil, err
	}
	n.scp = dimse.NewServer(scpCfg, n.svc, log, n.reg)
	if cfg.Node.Receives() {
		if n.dimseLn, err = net.Listen("tcp", cfg.DIMSE.Listen); err != nil {
			return nil, fmt.Errorf("dimse listen: %w", err)
		}
		for _, wf := range cfg.Ingest.Watch {
			n.watch = append(n.watch, ingest.NewWatcher(n.svc, wf, cfg.Node.DataDir, log))
		}
	}
	if cfg.Admin.Listen != "" {
		if n.console, err = n.newConsole(); err != nil {
			return nil, err
		}
		n.admin = &http.Server{Addr: cfg.Admin.Listen, Handler: n.adminMux(), ReadHeaderTimeout: 10 * time.Second}
		if n.admin.TLSConfig, err = adminTLS(cfg.Admin); err != nil {
			return nil, err
		}
	}
	return n, nil
}

func (n *node) adminMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(n.reg, promhttp.HandlerOpts{Registry: n.reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := n.readiness(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	if n.console != nil {
		mux.Handle("/", n.console)
	}
	return mux
}

// readiness reports why the node cannot take work now: the store unreachable,
// no model loaded, or the disk under the free-space floor.
func (n *node) readiness() error {
	n.mu.Lock()
	ready, works := n.ready, n.cfg.Node.Works()
	n.mu.Unlock()
	if !ready {
		return errors.New("starting")
	}
	if !n.js.Conn.IsConnected() {
		return errors.New("store: not connected to NATS")
	}
	if len(n.served) == 0 && works {
		return errors.New("no model loaded")
	}
	if err := n.svc.CheckSpace(); err != nil {
		return err
	}
	return nil
}

// run serves until ctx is done, then shuts down in order: stop taking
// instances (DIMSE, folders), let the pipeline finish what is in flight, and
// force the rest to stop at the deadline; everything not acknowledged stays
// queued durably for the next start.
func (n *node) run(ctx context.Context, grace time.Duration) error {
	intake, stopIntake := context.WithCancel(context.Background())
	work, stopWork := context.WithCancel(context.Background())
	defer stopIntake()
	defer stopWork()

	errc := make(chan error, 8)
	// The admin listener is bound first, so a port clash stops the node
	// before any stage has started.
	if n.admin != nil {
		ln, err := net.Listen("tcp", n.admin.Addr)
		if err != nil {
			return fmt.Errorf("admin listen: %w", err)
		}
		if n.admin.TLSConfig != nil {
			ln = tls.NewListener(ln, n.admin.TLSConfig)
		}
		go func() {
			if err := n.admin.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("admin: %w", err)
			}
		}()
	}
	var intakeWG, workWG sync.WaitGroup
	start := func(wg *sync.WaitGroup, name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if p := recover(); p != nil {
					errc <- fmt.Errorf("%s: panic: %v", name, p)
				}
			}()
			if err := f(); err != nil {
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	if n.dimseLn != nil {
		start(&intakeWG, "dimse", func() error { return n.scp.Serve(intake, n.dimseLn) })
	}
	for _, w := range n.watch {
		start(&intakeWG, "watch", func() error { return w.Run(intake) })
	}
	if n.worker != nil {
		start(&workWG, "inference", func() error { return n.worker.Run(work) })
	}
	var consumers ingest.Consumers
	if n.fin != nil {
		consumers.Completions = n.fin
	}
	if n.worker != nil {
		consumers.Slices = n.worker
	}
	start(&workWG, "ingest", func() error { return n.svc.Run(work, consumers) })
	if n.queue != nil {
		start(&workWG, "export", func() error { return n.queue.Run(work) })
	}
	n.mu.Lock()
	n.ready = true
	n.mu.Unlock()
	dimseAddr := "(none: worker)"
	if n.dimseLn != nil {
		dimseAddr = n.dimseLn.Addr().String()
	}
	n.log.Info().Str("role", n.cfg.Node.Role).Str("dimse", dimseAddr).Str("ae", n.cfg.DIMSE.AETitle).Str("admin", n.cfg.Admin.Listen).
		Int("models", len(n.served)).Int("watched_folders", len(n.watch)).Bool("embedded_nats", n.js.Embedded).Msg("node: serving")

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-hup:
			_ = n.reload() // it logs why a reload was refused
		case err := <-errc:
			runErr = err
			n.log.Error().Err(err).Msg("node: a stage failed; shutting down")
			break loop
		}
	}

	n.mu.Lock()
	n.ready = false
	n.mu.Unlock()
	n.log.Info().Dur("grace", grace).Msg("node: shutting down: intake stops, in-flight work finishes")
	deadline := time.Now().Add(grace)
	stopIntake()
	waitUntil(&intakeWG, deadline)
	stopWork()
	if !waitUntil(&workWG, deadline) {
		n.log.Warn().Msg("node: shutdown deadline reached; unfinished work stays queued for the next start")
	}
	if n.admin != nil {
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = n.admin.Shutdown(sctx)
		cancel()
	}
	return runErr
}

func waitUntil(wg *sync.WaitGroup, deadline time.Time) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(time.Until(deadline)):
		return false
	}
}

// reload re-reads the configuration on SIGHUP. An invalid file is refused and
// the running configuration kept; a valid one replaces the acceptance policy
// and routing rules without touching open associations. Changes that need a
// restart (models, destinations, listeners, store) are logged as such. The
// error (the console shows it) is nil when the new configuration is in force.
func (n *node) reload() error {
	cfg, err := loadConfig(n.path, n.over)
	if err != nil {
		n.reloads.WithLabelValues("invalid").Inc()
		n.log.Error().Err(err).Msg("node: reload refused; keeping the running configuration")
		return err
	}
	scpCfg, err := dimseServerConfig(cfg)
	if err != nil {
		n.reloads.WithLabelValues("invalid").Inc()
		n.log.Error().Err(err).Msg("node: reload refused; keeping the running configuration")
		return err
	}
	router, err := ingest.NewRouter(cfg.Routes, cfg.Ingest.SeriesTimeout)
	if err != nil {
		n.reloads.WithLabelValues("invalid").Inc()
		n.log.Error().Err(err).Msg("node: reload refused; keeping the running configuration")
		return err
	}
	n.mu.Lock()
	old := n.cfg
	n.cfg = cfg
	n.mu.Unlock()
	n.scp.SetPolicy(scpCfg)
	n.svc.SetRouter(router)
	for what, changed := range map[string]bool{
		"models":        !reflect.DeepEqual(old.Models, cfg.Models),
		"destinations":  !reflect.DeepEqual(old.Destinations, cfg.Destinations),
		"dimse.listen":  old.DIMSE.Listen != cfg.DIMSE.Listen,
		"nats":          !reflect.DeepEqual(old.NATS, cfg.NATS),
		"ingest.watch":  !reflect.DeepEqual(old.Ingest.Watch, cfg.Ingest.Watch),
		"node.data_dir": old.Node.DataDir != cfg.Node.DataDir,
		"admin":         !reflect.DeepEqual(old.Admin, cfg.Admin),
		"node.role":     old.Node.Role != cfg.Node.Role,
		"inference":     !reflect.DeepEqual(old.Inference, cfg.Inference),
	} {
		if changed {
			n.log.Warn().Str("section", what).Msg("node: reload: this change takes effect at the next restart")
		}
	}
	n.reloads.WithLabelValues("ok").Inc()
	n.log.Info().Int("routes", len(cfg.Routes)).Msg("node: configuration reloaded (AE policy, routing rules)")
	return nil
}

// close releases what openNode opened.
func (n *node) close() {
	for _, s := range n.served {
		_ = s.Close()
	}
	if n.dimseLn != nil {
		_ = n.dimseLn.Close()
	}
	if n.js != nil {
		_ = n.js.Close()
	}
}
