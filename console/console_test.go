package console

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"anomalynode/configs"
	"anomalynode/ingest"
	"anomalynode/internal/synth"
	"anomalynode/output"
)

const testConfig = `
node: {name: console-test}
admin: {listen: "127.0.0.1:9090"}
models:
  ct-chest: {path: ct.dpmm, embedder: e.onnx}
  mr-brain: {path: mr.dpmm, embedder: e.onnx}
destinations:
  pacs: {address: "127.0.0.1:11112", called_ae: PACS}
routes:
  - name: ct-chest
    match: {modality: [CT]}
    model: ct-chest
    destinations: [pacs]
  - name: mr-brain
    match: {modality: [MR]}
    model: mr-brain
    destinations: [pacs]
  - {name: everything-else, ignore: true}
`

// fakeDead is an in-memory dead-letter store.
type fakeDead struct {
	mu       sync.Mutex
	letters  []output.DeadLetter
	replayed [][]uint64
}

func (f *fakeDead) DeadLetters(context.Context) ([]output.DeadLetter, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]output.DeadLetter(nil), f.letters...), nil
}

func (f *fakeDead) Replay(_ context.Context, seqs ...uint64) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.replayed = append(f.replayed, seqs)
	if len(seqs) == 0 {
		return len(f.letters), nil
	}
	return len(seqs), nil
}

type fixture struct {
	h       http.Handler
	journal *Journal
	dead    *fakeDead
	log     *bytes.Buffer
	reloads int
	cfg     *configs.Config
}

func newFixture(t *testing.T, mod func(*Options)) *fixture {
	t.Helper()
	cfg, err := configs.Parse([]byte(testConfig), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	router, err := ingest.NewRouter(cfg.Routes, cfg.Ingest.SeriesTimeout)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{dead: &fakeDead{}, log: &bytes.Buffer{}, cfg: cfg}
	reg := prometheus.NewRegistry()
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "anomalynode_export_queue_depth", Help: "h"}, []string{"destination"})
	g.WithLabelValues("pacs").Set(3)
	reg.MustRegister(g)
	o := Options{
		Gatherer:    reg,
		Ready:       func() error { return nil },
		Disk:        func() (Disk, error) { return Disk{Free: 50 << 30, Total: 100 << 30, FloorBytes: 1 << 30}, nil },
		Config:      func() *configs.Config { return cfg },
		Router:      func() *ingest.Router { return router },
		DeadLetters: f.dead,
		Reload:      func() error { f.reloads++; return nil },
		Log:         zerolog.New(f.log),
		Tick:        20 * time.Millisecond,
	}
	if mod != nil {
		mod(&o)
	}
	if o.Journal == nil {
		o.Journal = NewJournal(JournalOptions{ShowPHI: o.ShowPHI})
	}
	f.journal = o.Journal
	h, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	f.h = h
	return f
}

// get serves a GET and returns the response and its body.
func (f *fixture) get(t *testing.T, path string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req := httptest.NewRequest("GET", path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return f.do(req)
}

func (f *fixture) do(req *http.Request) (*http.Response, string) {
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	res := rec.Result()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

// csrf loads a page and returns the CSRF cookie it set.
func (f *fixture) csrf(t *testing.T) *http.Cookie {
	t.Helper()
	res, _ := f.get(t, "/login")
	for _, c := range res.Cookies() {
		if c.Name == csrfCookie {
			return c
		}
	}
	t.Fatal("no CSRF cookie set by the sign-in page")
	return nil
}

// post sends a form with the CSRF cookie and field (tok "" leaves the field out).
func (f *fixture) post(t *testing.T, path string, form url.Values, cookie *http.Cookie, tok string) (*http.Response, string) {
	t.Helper()
	if tok != "" {
		form.Set("csrf", tok)
	}
	req := httptest.NewRequest("POST", path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if cookie != nil {
		req.AddCookie(cookie)
	}
	return f.do(req)
}

// logLines feeds the journal a series' life as the node logs it.
func logLines(j *Journal, series, seg string, slices int) {
	w := func(s string) { _, _ = j.Write([]byte(s + "\n")) }
	for i := 0; i < slices; i++ {
		w(fmt.Sprintf(`{"level":"debug","sop":"1.2.3.%d","series":%q,"outcome":"stored","rule":"mr-brain","calling_ae":"MRSCANNER","patient_name":"DOE^JANE","message":"ingest: c-store"}`, i, series))
		w(fmt.Sprintf(`{"level":"debug","sop":"1.2.3.%d","series":%q,"model":"mr-brain","frames":1,"message":"inference: slice scored"}`, i, series))
	}
	w(`{"level":"info","component":"dimse","calling_ae":"MRSCANNER","outcome":"released","stored":3,"message":"association ended"}`)
	w(fmt.Sprintf(`{"level":"info","series":%q,"version":1,"instances":%d,"reason":"timeout","message":"ingest: series complete"}`, series, slices))
	w(fmt.Sprintf(`{"level":"info","series":%q,"version":1,"model":"mr-brain","slices":%d,"anomalous_slices":1,"objects":2,"destinations":["pacs","archive"],"seg":%q,"message":"output: series finalised"}`, series, slices, seg))
	w(fmt.Sprintf(`{"level":"info","component":"export","destination":"pacs","sop_instance_uid":%q,"attempt":1,"message":"export: delivered"}`, seg))
}

func TestPagesRender(t *testing.T) {
	f := newFixture(t, nil)
	logLines(f.journal, "1.2.826.0.1.3680043.99.1", "1.2.826.0.1.3680043.99.2", 3)
	for path, want := range map[string]string{
		"/":                                "1.2.826.0.1.3680043.99.1",
		"/series/1.2.826.0.1.3680043.99.1": "ingest: series complete",
		"/routing":                         "everything-else",
		"/dead-letters":                    "no dead letters",
		"/config":                          "console-test",
		"/login":                           "Sign in",
		"/assets/console.js":               "EventSource",
		"/assets/console.css":              "font",
	} {
		res, body := f.get(t, path)
		if res.StatusCode != 200 {
			t.Errorf("GET %s: status %d: %.300s", path, res.StatusCode, body)
		}
		if !strings.Contains(body, want) {
			t.Errorf("GET %s: body lacks %q", path, want)
		}
		for h, v := range map[string]string{"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff"} {
			if res.Header.Get(h) != v {
				t.Errorf("GET %s: %s = %q, want %q", path, h, res.Header.Get(h), v)
			}
		}
		if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") || strings.Contains(csp, "unsafe-inline") {
			t.Errorf("GET %s: CSP %q", path, csp)
		}
	}
	_, body := f.get(t, "/")
	for _, want := range []string{"export_queue_depth", "destination=pacs", "MRSCANNER", "delivering", "1 of 3 slices anomalous", "archive", "floor 1.0 GiB"} {
		if !strings.Contains(body, want) {
			t.Errorf("Overview lacks %q", want)
		}
	}
	if res, _ := f.get(t, "/series/1.2.3.nope"); res.StatusCode != 404 {
		t.Errorf("unknown series: status %d, want 404", res.StatusCode)
	}
}

func TestAuthRefusals(t *testing.T) {
	const token = "0123456789abcdef0123"
	f := newFixture(t, func(o *Options) {
		o.Auth = Auth{Token: token, Users: map[string]string{"alice": "s3cret-pw"}}
		o.RequireAuth = true
	})
	cases := []struct {
		name string
		hdr  []string
		want int
	}{
		{"none", nil, 401},
		{"wrong bearer", []string{"Authorization", "Bearer nope"}, 401},
		{"bearer", []string{"Authorization", "Bearer " + token}, 200},
		{"wrong basic", []string{"Authorization", "Basic " + basic("alice", "x")}, 401},
		{"unknown user", []string{"Authorization", "Basic " + basic("bob", "s3cret-pw")}, 401},
		{"basic", []string{"Authorization", "Basic " + basic("alice", "s3cret-pw")}, 200},
	}
	for _, c := range cases {
		for _, path := range []string{"/", "/config", "/dead-letters", "/events?once"} {
			if path == "/events?once" && c.want == 200 {
				continue // a stream; its refusal is what matters here
			}
			res, _ := f.get(t, path, c.hdr...)
			if res.StatusCode != c.want {
				t.Errorf("%s: GET %s: status %d, want %d", c.name, path, res.StatusCode, c.want)
			}
			if c.want == 401 && !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Basic") {
				t.Errorf("%s: no basic-auth challenge", c.name)
			}
		}
	}
	// An unauthenticated POST is refused before anything happens.
	cookie := f.csrf(t)
	if res, _ := f.post(t, "/dead-letters/replay", url.Values{"seq": {"all"}, "confirm": {"yes"}}, cookie, cookie.Value); res.StatusCode != 401 {
		t.Errorf("unauthenticated replay: status %d, want 401", res.StatusCode)
	}
	if len(f.dead.replayed) != 0 {
		t.Errorf("a refused request replayed dead letters: %v", f.dead.replayed)
	}

	// Without authentication, a console that requires it is not built.
	_, err := New(Options{RequireAuth: true, Config: func() *configs.Config { return f.cfg }, Router: func() *ingest.Router { return nil }})
	if err == nil {
		t.Fatal("New with RequireAuth and no Auth succeeded")
	}
}

func basic(u, p string) string {
	req := httptest.NewRequest("GET", "/", nil)
	req.SetBasicAuth(u, p)
	return strings.TrimPrefix(req.Header.Get("Authorization"), "Basic ")
}

func TestTokenSignIn(t *testing.T) {
	const token = "0123456789abcdef0123"
	f := newFixture(t, func(o *Options) { o.Auth = Auth{Token: token}; o.RequireAuth = true })
	res, _ := f.get(t, "/", "Accept", "text/html")
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/login" {
		t.Fatalf("a browser without the token: status %d to %q, want 303 to /login", res.StatusCode, res.Header.Get("Location"))
	}
	res, _ = f.get(t, "/login")
	var cookie *http.Cookie
	for _, c := range res.Cookies() {
		if c.Name == csrfCookie {
			cookie = c
		}
	}
	if cookie == nil {
		t.Fatal("the sign-in page set no CSRF cookie")
	}
	if res, _ := f.post(t, "/login", url.Values{"token": {"wrong-token-value"}}, cookie, cookie.Value); res.StatusCode != 401 {
		t.Errorf("wrong token: status %d, want 401", res.StatusCode)
	}
	res, _ = f.post(t, "/login", url.Values{"token": {token}}, cookie, cookie.Value)
	var session *http.Cookie
	for _, c := range res.Cookies() {
		if c.Name == sessionCookie {
			session = c
		}
	}
	if session == nil || strings.Contains(session.Value, token) || !session.HttpOnly || session.SameSite != http.SameSiteStrictMode {
		t.Fatalf("session cookie %+v: want an HttpOnly, SameSite=Strict digest of the token", session)
	}
	req := httptest.NewRequest("GET", "/config", nil)
	req.AddCookie(session)
	if res, _ := f.do(req); res.StatusCode != 200 {
		t.Errorf("with the session cookie: status %d", res.StatusCode)
	}
}

func TestLoadAuth(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	users := filepath.Join(dir, "users")
	os.WriteFile(tok, []byte("0123456789abcdef0123\n"), 0o600)
	os.WriteFile(users, []byte("# IT staff\nalice:pw1\nbob:pw2\n"), 0o600)
	a, err := LoadAuth(configs.Admin{TokenFile: tok, BasicAuthFile: users})
	if err != nil {
		t.Fatal(err)
	}
	if a.Token != "0123456789abcdef0123" || a.Users["alice"] != "pw1" || a.Users["bob"] != "pw2" || a.ClientCert {
		t.Fatalf("LoadAuth = %+v", a)
	}
	os.WriteFile(tok, []byte("short\n"), 0o600)
	if _, err := LoadAuth(configs.Admin{TokenFile: tok}); err == nil {
		t.Error("a 5-character token was accepted")
	}
	os.WriteFile(users, []byte("alice\n"), 0o600)
	if _, err := LoadAuth(configs.Admin{BasicAuthFile: users}); err == nil || !strings.Contains(err.Error(), ":1:") {
		t.Errorf("a line without password: err %v, want one naming line 1", err)
	}
	if _, err := LoadAuth(configs.Admin{TokenFile: filepath.Join(dir, "missing")}); err == nil {
		t.Error("a missing token file was accepted")
	}
}

func TestCSRFRefusals(t *testing.T) {
	f := newFixture(t, nil)
	f.dead.letters = []output.DeadLetter{{Seq: 7, Job: output.Job{Destination: "pacs", SOPInstanceUID: "1.2.3.4", Attempts: 5, LastError: "refused"}}}
	cookie := f.csrf(t)
	form := func() url.Values { return url.Values{"seq": {"7"}, "confirm": {"yes"}} }
	other := &http.Cookie{Name: csrfCookie, Value: strings.Repeat("a", 32)}
	for _, c := range []struct {
		name   string
		cookie *http.Cookie
		tok    string
		hdr    []string
	}{
		{"no cookie, no field", nil, "", nil},
		{"cookie, no field", cookie, "", nil},
		{"field, no cookie", nil, cookie.Value, nil},
		{"mismatch", other, cookie.Value, nil},
		{"cross-site fetch", cookie, cookie.Value, []string{"Sec-Fetch-Site", "cross-site"}},
		{"foreign origin", cookie, cookie.Value, []string{"Origin", "http://evil.example"}},
	} {
		fm := form()
		if c.tok != "" {
			fm.Set("csrf", c.tok)
		}
		req := httptest.NewRequest("POST", "/dead-letters/replay", strings.NewReader(fm.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for i := 0; i+1 < len(c.hdr); i += 2 {
			req.Header.Set(c.hdr[i], c.hdr[i+1])
		}
		if c.cookie != nil {
			req.AddCookie(c.cookie)
		}
		if res, _ := f.do(req); res.StatusCode != http.StatusForbidden {
			t.Errorf("%s: status %d, want 403", c.name, res.StatusCode)
		}
	}
	if len(f.dead.replayed) != 0 {
		t.Fatalf("refused requests replayed: %v", f.dead.replayed)
	}
	if !strings.Contains(f.log.String(), "request refused (CSRF)") {
		t.Error("CSRF refusals are not logged")
	}
	// The same request, same-origin with the token: replayed, and logged with who.
	req := httptest.NewRequest("POST", "/dead-letters/replay", strings.NewReader(url.Values{"seq": {"7"}, "confirm": {"yes"}, "csrf": {cookie.Value}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set("Origin", "http://example.com")
	req.AddCookie(cookie)
	res, body := f.do(req)
	if res.StatusCode != 200 || !strings.Contains(body, "replayed 1 job(s)") {
		t.Fatalf("good replay: status %d, body lacks the result", res.StatusCode)
	}
	if len(f.dead.replayed) != 1 || len(f.dead.replayed[0]) != 1 || f.dead.replayed[0][0] != 7 {
		t.Fatalf("replayed %v, want [[7]]", f.dead.replayed)
	}
	if !strings.Contains(f.log.String(), `"action":"replay"`) || !strings.Contains(f.log.String(), `"user":"anonymous@`) {
		t.Errorf("the replay is not logged with its user: %s", f.log.String())
	}
}

func TestReplayAsksFirst(t *testing.T) {
	f := newFixture(t, nil)
	logLines(f.journal, "1.2.3.7", "1.2.3.9", 1)
	f.dead.letters = []output.DeadLetter{{Seq: 3, Job: output.Job{Destination: "pacs", SOPInstanceUID: "1.2.3.9", Attempts: 2, LastError: "connection refused"}}}
	_, body := f.get(t, "/dead-letters")
	for _, want := range []string{"connection refused", "1.2.3.9", `data-seq="3"`, "Replay all", `href="/series/1.2.3.7"`} {
		if !strings.Contains(body, want) {
			t.Errorf("dead-letter list lacks %q", want)
		}
	}
	cookie := f.csrf(t)
	_, body = f.post(t, "/dead-letters/replay", url.Values{"seq": {"all"}}, cookie, cookie.Value)
	if !strings.Contains(body, "Replay every dead letter?") || len(f.dead.replayed) != 0 {
		t.Fatalf("replay without confirm=yes: replayed %v; want a confirmation only", f.dead.replayed)
	}
	_, body = f.post(t, "/dead-letters/replay", url.Values{"seq": {"all"}, "confirm": {"yes"}}, cookie, cookie.Value)
	if len(f.dead.replayed) != 1 || len(f.dead.replayed[0]) != 0 || !strings.Contains(body, "replayed 1 job(s)") {
		t.Fatalf("confirmed replay of all: %v", f.dead.replayed)
	}
	if _, body := f.post(t, "/dead-letters/replay", url.Values{"seq": {"x"}, "confirm": {"yes"}}, cookie, cookie.Value); !strings.Contains(body, "is not a sequence number") {
		t.Error("a bad sequence number is not refused")
	}
}

func TestNoPHI(t *testing.T) {
	const series = "1.2.826.0.1.3680043.99.5"
	describe := func(context.Context, string) (SeriesInfo, error) {
		return SeriesInfo{Modality: "MR", Description: "T1 AX", PatientName: "DOE^JANE", PatientID: "PID-4711"}, nil
	}
	for _, show := range []bool{false, true} {
		f := newFixture(t, func(o *Options) { o.ShowPHI = show; o.Describe = describe })
		logLines(f.journal, series, "1.2.826.0.1.3680043.99.6", 2)
		_, _ = f.journal.Write([]byte(`{"level":"warn","series":"` + series + `","PatientID":"PID-4711","patient_name":"DOE^JANE","message":"something about the series"}` + "\n"))
		var all strings.Builder
		for _, p := range []string{"/", "/series/" + series} {
			_, body := f.get(t, p)
			all.WriteString(body)
		}
		body := all.String()
		if !strings.Contains(body, "T1 AX") || !strings.Contains(body, "MRSCANNER") {
			t.Fatalf("show_phi=%v: description or AE missing", show)
		}
		for _, phi := range []string{"DOE^JANE", "PID-4711"} {
			if got := strings.Contains(body, phi); got != show {
				t.Errorf("show_phi=%v: %q shown = %v", show, phi, got)
			}
		}
		s, _ := f.journal.Series(series)
		for _, ev := range s.Events {
			for k := range ev.Fields {
				if isPHI(k) && !show {
					t.Errorf("the journal kept PHI field %q without show_phi", k)
				}
			}
		}
	}
}

// multipartPost sends a multipart form with one file.
func (f *fixture) multipartPost(t *testing.T, path string, fields map[string]string, file, name string, data []byte, cookie *http.Cookie) (*http.Response, string) {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for k, v := range fields {
		mw.WriteField(k, v)
	}
	mw.WriteField("csrf", cookie.Value)
	if file != "" {
		fw, _ := mw.CreateFormFile(file, name)
		fw.Write(data)
	}
	mw.Close()
	req := httptest.NewRequest("POST", path, &b)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.AddCookie(cookie)
	return f.do(req)
}

func TestRoutingTester(t *testing.T) {
	f := newFixture(t, nil)
	dir := t.TempDir()
	man, err := synth.WriteSeries(dir, synth.Options{Seed: 3, Slices: 1, Rows: 32, Cols: 32, Source: synth.SourcePhantom})
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, man.Slices[0].File))
	if err != nil {
		t.Fatal(err)
	}
	cookie := f.csrf(t)
	res, body := f.multipartPost(t, "/routing/test", map[string]string{"source": "network", "calling_ae": "MRSCANNER"}, "file", "IM0001.dcm", data, cookie)
	if res.StatusCode != 200 {
		t.Fatalf("status %d: %s", res.StatusCode, body)
	}
	for _, want := range []string{"rule <b>mr-brain</b>", "model <b>mr-brain</b>", "ct-chest</b>: modality", man.Slices[0].SOPInstanceUID, `rule &#34;mr-brain&#34; -&gt; model`} {
		if !strings.Contains(body, want) {
			t.Errorf("explanation lacks %q", want)
		}
	}
	_, body = f.multipartPost(t, "/routing/test", map[string]string{"tags": "Modality=CT\n(0018,0015)=CHEST"}, "", "", nil, cookie)
	if !strings.Contains(body, "rule <b>ct-chest</b>") {
		t.Errorf("pasted CT tags not routed to ct-chest")
	}
	_, body = f.multipartPost(t, "/routing/test", map[string]string{"tags": "Modality=US"}, "", "", nil, cookie)
	if !strings.Contains(body, "ignored (everything-else)") || !strings.Contains(body, "mr-brain</b>: modality") {
		t.Errorf("pasted US tags: want ignored by everything-else with the MR rule's failed condition")
	}
	res, body = f.multipartPost(t, "/routing/test", map[string]string{"tags": "NoSuchKeyword=1"}, "", "", nil, cookie)
	if res.StatusCode != 400 || !strings.Contains(body, "unknown attribute") {
		t.Errorf("unknown keyword: status %d", res.StatusCode)
	}
	_, body = f.multipartPost(t, "/routing/test", nil, "file", "notes.txt", []byte("hello"), cookie)
	if !strings.Contains(body, "not a DICOM file") {
		t.Errorf("a text file is not reported as skipped")
	}
}

func TestConfigCheckAndReload(t *testing.T) {
	f := newFixture(t, nil)
	cookie := f.csrf(t)
	bad := "node: {name: x}\nadmin:\n  listen: \"0.0.0.0:9090\"\nlog:\n  level: loud\n"
	_, body := f.multipartPost(t, "/config/check", nil, "file", "site.yaml", []byte(bad), cookie)
	for _, want := range []string{"site.yaml:3: admin.listen", "site.yaml:5: log.level"} {
		if !strings.Contains(body, want) {
			t.Errorf("check lacks %q", want)
		}
	}
	_, body = f.multipartPost(t, "/config/check", nil, "file", "good.yaml", []byte(testConfig), cookie)
	if !strings.Contains(body, "good.yaml: ok") {
		t.Error("a good file is not reported ok")
	}
	_, body = f.post(t, "/config/reload", url.Values{}, cookie, cookie.Value)
	if f.reloads != 0 || !strings.Contains(body, "Yes, reload") {
		t.Fatalf("reload without confirm: %d reloads", f.reloads)
	}
	_, body = f.post(t, "/config/reload", url.Values{"confirm": {"yes"}}, cookie, cookie.Value)
	if f.reloads != 1 || !strings.Contains(body, "configuration reloaded") {
		t.Fatalf("confirmed reload: %d reloads", f.reloads)
	}
	f2 := newFixture(t, func(o *Options) {
		o.Reload = func() error { return errors.New("configs: invalid configuration:\n  node.yaml:4: log.level: bad") }
	})
	c2 := f2.csrf(t)
	_, body = f2.post(t, "/config/reload", url.Values{"confirm": {"yes"}}, c2, c2.Value)
	if !strings.Contains(body, "reload refused") || !strings.Contains(body, "node.yaml:4") {
		t.Error("a refused reload does not say why")
	}
	if !strings.Contains(f2.log.String(), `"action":"reload"`) {
		t.Error("the reload is not logged")
	}
}

func TestRedaction(t *testing.T) {
	f := newFixture(t, nil)
	_, body := f.get(t, "/config")
	if !strings.Contains(body, "ct-chest") {
		t.Fatal("effective configuration missing")
	}
	var n struct {
		Password string `yaml:"password"`
		APIToken string `yaml:"api_token"`
		File     string `yaml:"token_file"`
	}
	n.Password, n.APIToken, n.File = "hunter2", "abc", "/etc/t"
	out := effectiveYAML(n)
	if strings.Contains(out, "hunter2") || strings.Contains(out, "abc") || !strings.Contains(out, "/etc/t") {
		t.Errorf("redaction: %s", out)
	}
}

func TestEventsStream(t *testing.T) {
	f := newFixture(t, nil)
	srv := httptest.NewServer(f.h)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/events", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	sc := bufio.NewScanner(res.Body)
	const series = "1.2.826.0.1.3680043.99.77"
	fed := false
	for sc.Scan() {
		line := sc.Text()
		if line == "event: overview" && !fed {
			logLines(f.journal, series, "1.2.826.0.1.3680043.99.78", 1)
			fed = true
		}
		if strings.Contains(line, series) {
			return
		}
	}
	t.Fatalf("the stream never showed the new series (err %v)", sc.Err())
}
