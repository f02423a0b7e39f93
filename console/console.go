package console

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"anomalynode/configs"
	"anomalynode/ingest"
	"anomalynode/output"
)

//go:embed templates/*.html assets/*
var files embed.FS

// DeadLetters is the dead-letter store (output.Queue).
type DeadLetters interface {
	DeadLetters(ctx context.Context) ([]output.DeadLetter, error)
	Replay(ctx context.Context, seqs ...uint64) (int, error)
}

// Disk is the data directory's free space against the configured floor.
type Disk struct {
	// Free and Total are bytes of the file system holding the data directory.
	Free, Total uint64
	// FloorBytes and FloorPercent are ingest.min_free_bytes and
	// ingest.min_free_percent (0 when unset).
	FloorBytes   int64
	FloorPercent float64
}

// Options are the console's data sources and policy. Every source is an
// interface or function so the node wires the real stages and tests fakes.
type Options struct {
	// Gatherer is the node's metric registry (associations, queue depths...).
	Gatherer prometheus.Gatherer
	// Journal holds the series timelines, from the node's log.
	Journal *Journal
	// Ready reports why the node cannot take work (nil: ready).
	Ready func() error
	// Disk reports free space; nil hides it.
	Disk func() (Disk, error)
	// Config returns the running configuration.
	Config func() *configs.Config
	// Router returns the routing rules in force.
	Router func() *ingest.Router
	// DeadLetters is the dead-letter store; nil when the node has none.
	DeadLetters DeadLetters
	// Reload re-reads the configuration file, with the safety of SIGHUP.
	Reload func() error
	// Describe reads the series description of an instance stored by the
	// node (for the Overview's modality and description); nil skips it.
	Describe func(ctx context.Context, sopInstanceUID string) (SeriesInfo, error)
	// Auth says who may use the console; zero means anyone who can reach it
	// (only allowed when RequireAuth is false: a loopback listener).
	Auth Auth
	// RequireAuth refuses to build a console without authentication.
	RequireAuth bool
	// ShowPHI shows patient name and ID.
	ShowPHI bool
	// Log records every action, with who did it.
	Log zerolog.Logger
	// Recent is how many completed series the Overview lists; default 20.
	Recent int
	// Tick is how often the live page is refreshed; default 1s.
	Tick time.Duration
}

type handler struct {
	o    Options
	tmpl map[string]*template.Template
	mux  *http.ServeMux
}

// New returns the console's handler, to be mounted at "/" of the admin
// listener. It fails when authentication is required but not configured.
func New(o Options) (http.Handler, error) {
	if o.Journal == nil {
		o.Journal = NewJournal(JournalOptions{ShowPHI: o.ShowPHI})
	}
	if o.Config == nil || o.Router == nil {
		return nil, errors.New("console: Options.Config and Options.Router are required")
	}
	if o.RequireAuth && !o.Auth.enabled() {
		return nil, errors.New("console: the admin listener is not loopback: authentication is required (admin.token_file, admin.basic_auth_file or admin.tls.client_ca)")
	}
	if o.Recent <= 0 {
		o.Recent = 20
	}
	if o.Tick <= 0 {
		o.Tick = time.Second
	}
	h := &handler{o: o, tmpl: map[string]*template.Template{}, mux: http.NewServeMux()}
	pages, err := fs.Glob(files, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	for _, p := range pages {
		name := strings.TrimSuffix(strings.TrimPrefix(p, "templates/"), ".html")
		if name == "layout" || name == "live" {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(files, "templates/layout.html", "templates/live.html", p)
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", p, err)
		}
		h.tmpl[name] = t
	}
	static, _ := fs.Sub(files, "assets")
	h.mux.Handle("GET /assets/", http.StripPrefix("/assets/", http.FileServerFS(static)))
	h.mux.HandleFunc("GET /{$}", h.overview)
	h.mux.HandleFunc("GET /events", h.events)
	h.mux.HandleFunc("GET /series/{uid}", h.seriesPage)
	h.mux.HandleFunc("GET /routing", h.routing)
	h.mux.HandleFunc("POST /routing/test", h.routingTest)
	h.mux.HandleFunc("GET /dead-letters", h.deadLetters)
	h.mux.HandleFunc("POST /dead-letters/replay", h.replay)
	h.mux.HandleFunc("GET /config", h.config)
	h.mux.HandleFunc("POST /config/check", h.configCheck)
	h.mux.HandleFunc("POST /config/reload", h.reload)
	h.mux.HandleFunc("GET /login", h.loginPage)
	h.mux.HandleFunc("POST /login", h.login)
	return h, nil
}

// ServeHTTP applies the security headers, authentication and the CSRF check,
// then serves the page.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cache-Control", "no-store")
	if !strings.HasPrefix(r.URL.Path, "/assets/") && !strings.HasPrefix(r.URL.Path, "/login") {
		if _, ok := h.o.Auth.user(r); !ok {
			h.o.Auth.challenge(w, r)
			return
		}
	}
	if r.Method == http.MethodPost {
		// Uploads are one DICOM file or one configuration file.
		r.Body = http.MaxBytesReader(w, r.Body, maxUpload)
		if err := checkCSRF(r); err != nil {
			h.o.Log.Warn().Str("user", h.who(r)).Str("path", r.URL.Path).Str("remote", r.RemoteAddr).Err(err).Msg("console: request refused (CSRF)")
			http.Error(w, "forbidden: "+err.Error(), http.StatusForbidden)
			return
		}
	}
	h.mux.ServeHTTP(w, r)
}

// who names the user for the action log.
func (h *handler) who(r *http.Request) string {
	u, _ := h.o.Auth.user(r)
	if u == "" {
		u = "anonymous"
	}
	return u + "@" + r.RemoteAddr
}

// maxUpload bounds a POST's body: a DICOM slice or a configuration file.
const maxUpload = 128 << 20

// csrfCookie is the double-submit token: a random value in a SameSite=Strict
// cookie that every form repeats in a hidden field.
const csrfCookie = "anomalynode_csrf"

// csrfToken returns the request's CSRF token, setting the cookie when absent.
func csrfToken(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(csrfCookie); err == nil && len(c.Value) == 32 {
		return c.Value
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	tok := hex.EncodeToString(b)
	http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: tok, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	return tok
}

// checkCSRF refuses cross-site POSTs: the browser's Sec-Fetch-Site and
// Origin must not name another site, and the form must carry the cookie's
// token.
func checkCSRF(r *http.Request) error {
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" && s != "same-origin" && s != "none" {
		return fmt.Errorf("cross-site request (Sec-Fetch-Site: %s)", s)
	}
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		host := strings.TrimPrefix(strings.TrimPrefix(o, "https://"), "http://")
		if host != r.Host {
			return fmt.Errorf("cross-origin request (Origin %s, host %s)", o, r.Host)
		}
	}
	c, err := r.Cookie(csrfCookie)
	if err != nil || c.Value == "" {
		return errors.New("missing CSRF cookie (load the page first)")
	}
	if err := r.ParseMultipartForm(32 << 20); err != nil && !errors.Is(err, http.ErrNotMultipart) {
		return fmt.Errorf("bad form: %w", err)
	}
	if v := r.FormValue("csrf"); v == "" || !same(v, c.Value) {
		return errors.New("CSRF token missing or wrong (reload the page)")
	}
	return nil
}
