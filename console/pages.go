package console

import (
	"bytes"
	"context"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/suyashkumar/dicom/pkg/tag"
	"gopkg.in/yaml.v3"

	"anomalynode/configs"
	"anomalynode/ingest"
)

var funcs = template.FuncMap{
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return time.Since(t).Round(time.Second).String() + " ago"
	},
	"clock": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.Format("15:04:05.000")
	},
	"dur": func(d time.Duration) string {
		if d <= 0 {
			return "—"
		}
		return d.Round(time.Millisecond).String()
	},
	"join": strings.Join,
	"bytes": func(n uint64) string {
		const gib = 1 << 30
		return fmt.Sprintf("%.1f GiB", float64(n)/gib)
	},
	"fields": func(m map[string]string) string {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, 0, len(keys))
		for _, k := range keys {
			if m[k] != "" {
				parts = append(parts, k+"="+m[k])
			}
		}
		return strings.Join(parts, "  ")
	},
}

// page is what every template gets: its own data plus the layout's.
type page struct {
	Title   string
	Nav     string
	CSRF    string
	User    string
	ShowPHI bool
	Data    any
	Flash   string
	Error   string
}

func (h *handler) render(w http.ResponseWriter, r *http.Request, name string, p page) {
	p.CSRF = csrfToken(w, r)
	p.User, _ = h.o.Auth.user(r)
	p.ShowPHI = h.o.ShowPHI
	var buf bytes.Buffer
	if err := h.tmpl[name].Execute(&buf, p); err != nil {
		h.o.Log.Error().Err(err).Str("page", name).Msg("console: template failed")
		http.Error(w, "console: template: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(buf.Bytes())
}

// metricRow is one gauge sample shown on the Overview.
type metricRow struct {
	Name, Labels string
	Value        float64
}

// overviewData is the live part of the Overview.
type overviewData struct {
	Now     time.Time
	Ready   string
	Disk    *diskView
	Gauges  []metricRow
	AEs     []aeRow
	Open    []Series
	Recent  []Series
	ShowPHI bool
}

type aeRow struct {
	AE           string
	Associations int
}

type diskView struct {
	Free, Total uint64
	Floor       string
	Percent     float64
	Below       bool
	Err         string
}

// liveGauges are the metrics the Overview shows: what is connected, what is
// waiting, what is open.
var liveGauges = []string{"associations_active", "queue_depth", "series_open"}

func (h *handler) gauges() []metricRow {
	if h.o.Gatherer == nil {
		return nil
	}
	mfs, err := h.o.Gatherer.Gather()
	if err != nil && len(mfs) == 0 {
		return nil
	}
	var out []metricRow
	for _, mf := range mfs {
		name := mf.GetName()
		keep := false
		for _, g := range liveGauges {
			keep = keep || strings.HasSuffix(name, g)
		}
		if !keep || mf.GetType() != dto.MetricType_GAUGE {
			continue
		}
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			out = append(out, metricRow{Name: strings.TrimPrefix(name, "anomalynode_"), Labels: strings.Join(labels, ", "), Value: m.GetGauge().GetValue()})
		}
	}
	return out
}

func (h *handler) overviewNow(ctx context.Context) overviewData {
	d := overviewData{Now: time.Now(), Gauges: h.gauges(), ShowPHI: h.o.ShowPHI}
	if h.o.Ready != nil {
		if err := h.o.Ready(); err != nil {
			d.Ready = err.Error()
		}
	}
	if h.o.Disk != nil {
		dv := &diskView{}
		if disk, err := h.o.Disk(); err != nil {
			dv.Err = err.Error()
		} else {
			dv.Free, dv.Total = disk.Free, disk.Total
			if disk.Total > 0 {
				dv.Percent = float64(disk.Free) * 100 / float64(disk.Total)
			}
			var floors []string
			if disk.FloorBytes > 0 {
				floors = append(floors, fmt.Sprintf("%.1f GiB", float64(disk.FloorBytes)/(1<<30)))
				dv.Below = dv.Below || disk.Free < uint64(disk.FloorBytes)
			}
			if disk.FloorPercent > 0 {
				floors = append(floors, fmt.Sprintf("%.1f%%", disk.FloorPercent))
				dv.Below = dv.Below || dv.Percent < disk.FloorPercent
			}
			dv.Floor = strings.Join(floors, " and ")
			if dv.Floor == "" {
				dv.Floor = "none"
			}
		}
		d.Disk = dv
	}
	for ae, n := range h.o.Journal.CallingAEs() {
		d.AEs = append(d.AEs, aeRow{AE: ae, Associations: n})
	}
	sort.Slice(d.AEs, func(a, b int) bool { return d.AEs[a].AE < d.AEs[b].AE })
	for _, s := range h.o.Journal.All() {
		h.describe(ctx, &s)
		if s.Completed.IsZero() {
			d.Open = append(d.Open, s)
		} else if len(d.Recent) < h.o.Recent {
			d.Recent = append(d.Recent, s)
		}
	}
	return d
}

// describe fills in a series' modality and description from its first
// instance, once.
func (h *handler) describe(ctx context.Context, s *Series) {
	if h.o.Describe == nil || s.FirstSOP == "" || s.Info != (SeriesInfo{}) {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	info, err := h.o.Describe(ctx, s.FirstSOP)
	if err != nil {
		return
	}
	if info == (SeriesInfo{}) {
		info.Description = "(none)"
	}
	h.o.Journal.SetInfo(s.UID, info)
	if !h.o.ShowPHI {
		info.PatientName, info.PatientID = "", ""
	}
	s.Info = info
}

func (h *handler) overview(w http.ResponseWriter, r *http.Request) {
	h.render(w, r, "overview", page{Title: "Overview", Nav: "overview", Data: h.overviewNow(r.Context())})
}

// events streams the Overview's live part as server-sent events: one
// rendered fragment whenever it changed, checked every Tick.
func (h *handler) events(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	var last string
	t := time.NewTicker(h.o.Tick)
	defer t.Stop()
	for {
		var buf bytes.Buffer
		if err := h.tmpl["overview"].ExecuteTemplate(&buf, "live", page{ShowPHI: h.o.ShowPHI, Data: h.overviewNow(r.Context())}); err != nil {
			return
		}
		// The "ago" columns change every second, so every tick sends.
		if frag := buf.String(); frag != last {
			last = frag
			fmt.Fprint(w, "event: overview\n")
			for _, line := range strings.Split(frag, "\n") {
				fmt.Fprintf(w, "data: %s\n", line)
			}
			fmt.Fprint(w, "\n")
			fl.Flush()
		}
		select {
		case <-r.Context().Done():
			return
		case <-t.C:
		}
	}
}

func (h *handler) seriesPage(w http.ResponseWriter, r *http.Request) {
	s, ok := h.o.Journal.Series(r.PathValue("uid"))
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		h.render(w, r, "series", page{Title: "Series", Nav: "overview", Error: "This series is not in the journal (it keeps the last series the node saw since it started)."})
		return
	}
	h.describe(r.Context(), &s)
	h.render(w, r, "series", page{Title: "Series " + s.UID, Nav: "overview", Data: s})
}

// routingData is the Routing page: the rules and, after a test, the explanation.
type routingData struct {
	Rules     []configs.Route
	RulesYAML string
	Result    *ingest.Explanation
	// Text is the explanation as 'anomalynode route' prints it.
	Text    string
	Earlier []ingest.RuleTrace
	Input   routingInput
}

type routingInput struct {
	Tags, CallingAE, Source, Path, File string
}

func (h *handler) routingPage(w http.ResponseWriter, r *http.Request, d routingData, errMsg string) {
	cfg := h.o.Config()
	d.Rules = cfg.Routes
	if b, err := yaml.Marshal(map[string]any{"routes": cfg.Routes}); err == nil {
		d.RulesYAML = string(b)
	}
	if d.Input.Source == "" {
		d.Input.Source = ingest.SourceNetwork
	}
	if d.Result != nil {
		for _, tr := range d.Result.Traces {
			if !tr.Matched {
				d.Earlier = append(d.Earlier, tr)
			}
		}
	}
	if errMsg != "" {
		w.WriteHeader(http.StatusBadRequest)
	}
	h.render(w, r, "routing", page{Title: "Routing", Nav: "routing", Data: d, Error: errMsg})
}

func (h *handler) routing(w http.ResponseWriter, r *http.Request) {
	h.routingPage(w, r, routingData{}, "")
}

// routingTest explains the routing of an uploaded file or of pasted tags,
// with the same functions as 'anomalynode route'.
func (h *handler) routingTest(w http.ResponseWriter, r *http.Request) {
	in := routingInput{Tags: r.FormValue("tags"), CallingAE: strings.TrimSpace(r.FormValue("calling_ae")),
		Source: r.FormValue("source"), Path: strings.TrimSpace(r.FormValue("path"))}
	d := routingData{Input: in}
	cfg := h.o.Config()
	src := ingest.Source{Kind: ingest.SourceFolder, Path: in.Path}
	if in.Source != ingest.SourceFolder {
		src = ingest.Source{Kind: ingest.SourceNetwork, CallingAE: in.CallingAE, CalledAE: cfg.DIMSE.AETitle}
	}
	router := h.o.Router()
	f, fh, err := r.FormFile("file")
	switch {
	case err == nil:
		defer f.Close()
		d.Input.File = fh.Filename
		ex, err := explainUpload(router, f, fh.Filename, src)
		if err != nil {
			h.routingPage(w, r, d, err.Error())
			return
		}
		d.Result = ex
	case strings.TrimSpace(in.Tags) != "":
		hd, err := parseTags(in.Tags)
		if err != nil {
			h.routingPage(w, r, d, err.Error())
			return
		}
		ex := &ingest.Explanation{Path: "(pasted tags)"}
		ex.SOPInstanceUID, ex.SeriesInstanceUID = hd.Str(tag.SOPInstanceUID), hd.Str(tag.SeriesInstanceUID)
		ex.Modality, ex.SOPClassUID = hd.Str(tag.Modality), hd.Str(tag.SOPClassUID)
		if src.Kind == ingest.SourceFolder && src.Path == "" {
			src.Path = "/"
		}
		ex.Decision, ex.Traces = router.Explain(src, hd)
		d.Result = ex
	default:
		h.routingPage(w, r, d, "choose a DICOM file or paste tags (one per line: Keyword=Value)")
		return
	}
	h.o.Log.Info().Str("user", h.who(r)).Str("action", "route-test").Str("rule", d.Result.Decision.Rule).Msg("console: action")
	var text bytes.Buffer
	d.Result.Write(&text)
	d.Text = text.String()
	h.routingPage(w, r, d, "")
}

// explainUpload writes the upload to a temporary file for ingest.ExplainFile
// (which reads files, as 'anomalynode route' does).
func explainUpload(router *ingest.Router, f io.Reader, name string, src ingest.Source) (*ingest.Explanation, error) {
	tmp, err := os.CreateTemp("", "anomalynode-console-*.dcm")
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, io.LimitReader(f, 64<<20)); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("console: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	if src.Kind == ingest.SourceFolder && src.Path == "" {
		src.Path = "/" + filepath.Base(name)
	}
	ex, err := ingest.ExplainFile(router, tmp.Name(), src)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	ex.Path = name
	return ex, nil
}

// parseTags reads pasted attributes, one per line: "Modality=CT",
// "(0008,0060)=CT" or "0008,0060 CT". The instance is taken to be an image
// (with pixel data), as the tester's question is which rule would score it.
func parseTags(s string) (*ingest.Header, error) {
	h := &ingest.Header{HasPixelData: true}
	for n, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok {
			key, val, ok = strings.Cut(line, " ")
		}
		if !ok {
			return nil, fmt.Errorf("line %d: want Keyword=Value, got %q", n+1, line)
		}
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		t, err := parseTag(key)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n+1, err)
		}
		h.Set(t, val)
	}
	if h.Len() == 0 {
		return nil, fmt.Errorf("no tags given")
	}
	return h, nil
}

func parseTag(key string) (tag.Tag, error) {
	k := strings.Trim(key, "()")
	if g, e, ok := strings.Cut(k, ","); ok {
		gv, err1 := strconv.ParseUint(strings.TrimSpace(g), 16, 16)
		ev, err2 := strconv.ParseUint(strings.TrimSpace(e), 16, 16)
		if err1 == nil && err2 == nil {
			return tag.Tag{Group: uint16(gv), Element: uint16(ev)}, nil
		}
	}
	info, err := tag.FindByName(key)
	if err != nil {
		return tag.Tag{}, fmt.Errorf("unknown attribute %q (use a DICOM keyword such as Modality, or (gggg,eeee))", key)
	}
	return info.Tag, nil
}

// deadData is the Dead letters page.
type deadData struct {
	Letters []deadRow
	Confirm string
	Seq     string
}

type deadRow struct {
	Seq                             uint64
	Destination, SOP, Series, Error string
	// Source is the series the object was made from, when the journal knows.
	Source   string
	Attempts int
	DeadAt   time.Time
}

func (h *handler) deadLettersPage(w http.ResponseWriter, r *http.Request, d deadData, flash, errMsg string) {
	if h.o.DeadLetters == nil {
		errMsg = "this node has no export queue"
	} else if dead, err := h.o.DeadLetters.DeadLetters(r.Context()); err != nil {
		errMsg = err.Error()
	} else {
		for _, dl := range dead {
			d.Letters = append(d.Letters, deadRow{Seq: dl.Seq, Destination: dl.Job.Destination, SOP: dl.Job.SOPInstanceUID,
				Series: dl.Job.SeriesInstanceUID, Error: dl.Job.LastError, Attempts: dl.Job.Attempts, DeadAt: dl.Job.DeadAt,
				Source: h.o.Journal.SeriesOf(dl.Job.SOPInstanceUID)})
		}
	}
	h.render(w, r, "deadletters", page{Title: "Dead letters", Nav: "dead", Data: d, Flash: flash, Error: errMsg})
}

func (h *handler) deadLetters(w http.ResponseWriter, r *http.Request) {
	h.deadLettersPage(w, r, deadData{}, "", "")
}

// replay re-queues one dead letter (seq) or all; without confirm=yes it
// only asks for confirmation.
func (h *handler) replay(w http.ResponseWriter, r *http.Request) {
	seq := strings.TrimSpace(r.FormValue("seq"))
	var seqs []uint64
	if seq != "" && seq != "all" {
		n, err := strconv.ParseUint(seq, 10, 64)
		if err != nil {
			h.deadLettersPage(w, r, deadData{}, "", fmt.Sprintf("%q is not a sequence number", seq))
			return
		}
		seqs = []uint64{n}
	} else {
		seq = "all"
	}
	if r.FormValue("confirm") != "yes" {
		what := "every dead letter"
		if seq != "all" {
			what = "dead letter " + seq
		}
		h.deadLettersPage(w, r, deadData{Confirm: what, Seq: seq}, "", "")
		return
	}
	if h.o.DeadLetters == nil {
		h.deadLettersPage(w, r, deadData{}, "", "this node has no export queue")
		return
	}
	n, err := h.o.DeadLetters.Replay(r.Context(), seqs...)
	ev := h.o.Log.Info()
	if err != nil {
		ev = h.o.Log.Error().Err(err)
	}
	ev.Str("user", h.who(r)).Str("action", "replay").Str("seq", seq).Int("replayed", n).Msg("console: action")
	if err != nil {
		h.deadLettersPage(w, r, deadData{}, "", err.Error())
		return
	}
	h.deadLettersPage(w, r, deadData{}, fmt.Sprintf("replayed %d job(s)", n), "")
}

// configData is the Configuration page.
type configData struct {
	YAML        string
	Check       string
	CheckFile   string
	CheckOK     bool
	Confirm     bool
	ReloadError string
}

// redactedKey names configuration keys whose values are secrets; paths to
// secret files are not secrets and stay.
func redactedKey(k string) bool {
	k = strings.ToLower(k)
	if strings.HasSuffix(k, "_file") {
		return false
	}
	for _, s := range []string{"password", "secret", "token", "passphrase"} {
		if strings.Contains(k, s) {
			return true
		}
	}
	return false
}

func redact(n *yaml.Node) {
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if redactedKey(n.Content[i].Value) && n.Content[i+1].Kind == yaml.ScalarNode {
				n.Content[i+1].Value, n.Content[i+1].Tag, n.Content[i+1].Style = "REDACTED", "!!str", 0
			}
		}
	}
	for _, c := range n.Content {
		redact(c)
	}
}

// effectiveYAML renders the running configuration, secrets redacted.
func effectiveYAML(c any) string {
	var n yaml.Node
	if err := n.Encode(c); err != nil {
		return "# cannot render: " + err.Error()
	}
	redact(&n)
	b, err := yaml.Marshal(&n)
	if err != nil {
		return "# cannot render: " + err.Error()
	}
	return string(b)
}

func (h *handler) configPage(w http.ResponseWriter, r *http.Request, d configData, flash, errMsg string) {
	d.YAML = effectiveYAML(h.o.Config())
	h.render(w, r, "config", page{Title: "Configuration", Nav: "config", Data: d, Flash: flash, Error: errMsg})
}

func (h *handler) config(w http.ResponseWriter, r *http.Request) {
	h.configPage(w, r, configData{}, "", "")
}

// configCheck validates an uploaded file as 'anomalynode config validate'
// does: every problem, with file:line.
func (h *handler) configCheck(w http.ResponseWriter, r *http.Request) {
	f, fh, err := r.FormFile("file")
	if err != nil {
		h.configPage(w, r, configData{}, "", "choose a configuration file to check")
		return
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 4<<20))
	if err != nil {
		h.configPage(w, r, configData{}, "", err.Error())
		return
	}
	d := configData{CheckFile: fh.Filename}
	if _, err := configs.Parse(data, filepath.Base(fh.Filename)); err != nil {
		d.Check = strings.TrimPrefix(err.Error(), "configs: ")
	} else {
		d.Check, d.CheckOK = fh.Filename+": ok", true
	}
	h.o.Log.Info().Str("user", h.who(r)).Str("action", "config-check").Str("file", fh.Filename).Bool("ok", d.CheckOK).Msg("console: action")
	h.configPage(w, r, d, "", "")
}

// reload re-reads the node's configuration file (with confirm=yes; else it
// asks), as SIGHUP does: an invalid file is refused and the running
// configuration kept.
func (h *handler) reload(w http.ResponseWriter, r *http.Request) {
	if r.FormValue("confirm") != "yes" {
		h.configPage(w, r, configData{Confirm: true}, "", "")
		return
	}
	if h.o.Reload == nil {
		h.configPage(w, r, configData{}, "", "this node cannot reload")
		return
	}
	err := h.o.Reload()
	ev := h.o.Log.Info()
	if err != nil {
		ev = h.o.Log.Error().Err(err)
	}
	ev.Str("user", h.who(r)).Str("action", "reload").Msg("console: action")
	if err != nil {
		h.configPage(w, r, configData{ReloadError: err.Error()}, "", "reload refused; the running configuration is kept")
		return
	}
	h.configPage(w, r, configData{}, "configuration reloaded (AE policy, routing rules; other changes need a restart, see the log)", "")
}

func (h *handler) loginPage(w http.ResponseWriter, r *http.Request) {
	h.render(w, r, "login", page{Title: "Sign in", Nav: "login"})
}

// login signs a browser in with the bearer token: a session cookie holding
// a digest of it.
func (h *handler) login(w http.ResponseWriter, r *http.Request) {
	a := h.o.Auth
	if a.Token == "" || !same(strings.TrimSpace(r.FormValue("token")), a.Token) {
		h.o.Log.Warn().Str("remote", r.RemoteAddr).Str("action", "login").Msg("console: sign-in refused")
		w.WriteHeader(http.StatusUnauthorized)
		h.render(w, r, "login", page{Title: "Sign in", Nav: "login", Error: "wrong token"})
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: a.session(), Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	h.o.Log.Info().Str("user", "token@"+r.RemoteAddr).Str("action", "login").Msg("console: action")
	http.Redirect(w, r, "/", http.StatusSeeOther)
}
