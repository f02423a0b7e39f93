package console

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Log messages the Journal understands. They are the node's own log lines
// (ingest, inference, output, dimse); a line it does not know but that names
// a series still becomes an event of that series' timeline.
const (
	msgCStore      = "ingest: c-store"
	msgWatchAccept = "ingest: watch: accepted"
	msgScored      = "inference: slice scored"
	msgComplete    = "ingest: series complete"
	msgFinalised   = "output: series finalised"
	msgDelivered   = "export: delivered"
	msgRetry       = "export: delivery failed, will retry"
	msgDead        = "export: gave up, job dead-lettered"
	msgAssocEnded  = "association ended"
)

// Event is one entry of a series' timeline.
type Event struct {
	// Time is when the journal saw the log line.
	Time time.Time
	// Level is the log level (info, warn, error...).
	Level string
	// Message is the log message.
	Message string
	// Fields are the line's other fields, values as text, PHI removed.
	Fields map[string]string
}

// Series is what the journal knows of one series, from the log.
type Series struct {
	// UID is the Series Instance UID.
	UID string
	// CallingAE is the sender's AE title (network) and Rule the routing rule
	// of its instances.
	CallingAE, Rule string
	// Model scored the series.
	Model string
	// Info is the series' description from its first instance (filled in
	// by the console through Options.Describe).
	Info SeriesInfo
	// FirstSOP is the first instance received (what Describe reads).
	FirstSOP string
	// Received counts instances accepted, Scored slices scored.
	Received, Scored int
	// FirstSlice and LastSlice are when the first and last instance arrived.
	FirstSlice, LastSlice time.Time
	// Completed is when the series was declared complete, and why.
	Completed      time.Time
	CompleteReason string
	// Version is the completion's version (a series that grows is redone).
	Version int
	// Finalised is when its outputs were built; Slices, Anomalous and
	// Objects are the output's counts; Findings the findings when the model
	// decides by finding (HasFindings). SEG is the SOP Instance UID whose
	// delivery is tracked: the segmentation's, else (no finding) the report's.
	Finalised                  time.Time
	Slices, Anomalous, Objects int
	Findings                   int
	HasFindings                bool
	SEG                        string
	// Problem is the last error or warning about the series, if any.
	Problem string
	// Destinations are where the outputs go; Delivered says when the SEG
	// reached each; Dead holds the reason of each dead-lettered one.
	Destinations []string
	Delivered    map[string]time.Time
	Dead         map[string]string
	// Retries counts failed delivery attempts that will be retried.
	Retries int
	// Events is the timeline (per-slice lines are counted, not listed).
	Events []Event
}

// SeriesInfo describes a series from the header of one of its instances.
type SeriesInfo struct {
	// Modality and Description (Series Description) are always shown.
	Modality, Description string
	// PatientName and PatientID are shown only with ShowPHI.
	PatientName, PatientID string
}

// State says where the series stands: receiving, completed (outputs being
// built), delivering, delivered, failed.
func (s Series) State() string {
	switch {
	case len(s.Dead) > 0:
		return "failed"
	case s.Completed.IsZero():
		return "receiving"
	case s.Finalised.IsZero() && s.Problem != "":
		return "failed"
	case s.Finalised.IsZero():
		return "completed"
	case len(s.Delivered) < len(s.Destinations):
		return "delivering"
	default:
		return "delivered"
	}
}

// Pending lists the destinations that do not have the SEG yet and have not
// given up (those are in Dead).
func (s Series) Pending() []string {
	var out []string
	for _, d := range s.Destinations {
		_, dead := s.Dead[d]
		if _, ok := s.Delivered[d]; !ok && !dead {
			out = append(out, d)
		}
	}
	return out
}

// DeliveredIn is the time from the last slice received to the last
// destination served; 0 while any is pending.
func (s Series) DeliveredIn() time.Duration {
	if s.LastSlice.IsZero() || len(s.Destinations) == 0 || len(s.Delivered) < len(s.Destinations) {
		return 0
	}
	var last time.Time
	for _, t := range s.Delivered {
		if t.After(last) {
			last = t
		}
	}
	return last.Sub(s.LastSlice)
}

// JournalOptions configure a Journal.
type JournalOptions struct {
	// MaxSeries bounds the series kept (oldest forgotten first); default 500.
	MaxSeries int
	// MaxEvents bounds each series' timeline; default 200.
	MaxEvents int
	// ShowPHI keeps fields about the patient; by default they are dropped
	// before anything is stored.
	ShowPHI bool
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Journal is an io.Writer for the node's JSON log: it turns every line that
// names a series into an event of that series' timeline, keeps the last
// MaxSeries series in memory, and counts associations per calling AE today.
// It is safe for concurrent use; Write never fails, so it can sit next to
// the normal log writer without ever holding the log up.
type Journal struct {
	o JournalOptions

	mu     sync.Mutex
	series map[string]*Series
	order  []string
	bySOP  map[string]string
	// orphans hold export lines about objects not yet known: the export
	// queue may try (and fail, or succeed) before the finaliser's log line
	// names the SEG. They are taken up when it does.
	orphans map[string][]map[string]any
	nOrphan int
	day     string
	perAE   map[string]int
}

// NewJournal returns an empty journal.
func NewJournal(o JournalOptions) *Journal {
	if o.MaxSeries <= 0 {
		o.MaxSeries = 500
	}
	if o.MaxEvents <= 0 {
		o.MaxEvents = 200
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Journal{o: o, series: map[string]*Series{}, bySOP: map[string]string{}, perAE: map[string]int{}, orphans: map[string][]map[string]any{}}
}

// isPHI says whether a log field is about the patient (name, ID, birth date...).
func isPHI(key string) bool {
	k := strings.ToLower(key)
	return strings.Contains(k, "patient") || strings.Contains(k, "birth")
}

// Write takes one or more JSON log lines. Lines that are not JSON objects are
// ignored: the journal is a reader of the log, never its judge.
func (j *Journal) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(p, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var raw map[string]any
		if err := json.Unmarshal(line, &raw); err != nil {
			continue
		}
		j.mu.Lock()
		j.take(raw)
		j.mu.Unlock()
	}
	return len(p), nil
}

// maxOrphans bounds the export lines kept for objects not yet known.
const maxOrphans = 10000

// text renders a JSON value as the console shows it.
func text(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = text(e)
		}
		return strings.Join(parts, ", ")
	default:
		return fmt.Sprint(x)
	}
}

// take turns one log line into journal state; j.mu is held.
func (j *Journal) take(raw map[string]any) {
	fields := map[string]string{}
	var list []string
	for k, v := range raw {
		if !j.o.ShowPHI && isPHI(k) {
			continue
		}
		switch k {
		case "time", "level", "message", "component", "_seen":
			continue
		}
		fields[k] = text(v)
		if k == "destinations" {
			if a, ok := v.([]any); ok {
				for _, e := range a {
					list = append(list, text(e))
				}
			}
		}
	}
	msg, level := text(raw["message"]), text(raw["level"])
	now := j.o.Now()
	if t, ok := raw["_seen"].(time.Time); ok {
		now = t
	}
	if msg == msgAssocEnded {
		if ae := fields["calling_ae"]; ae != "" {
			day := now.Format("2006-01-02")
			if day != j.day {
				j.day, j.perAE = day, map[string]int{}
			}
			j.perAE[ae]++
		}
		return
	}
	uid := fields["series"]
	if uid == "" {
		// Export lines name the output object; the SEG's UID leads back to
		// its series.
		uid = j.bySOP[fields["sop_instance_uid"]]
	}
	if uid == "" {
		if sop := fields["sop_instance_uid"]; sop != "" && strings.HasPrefix(msg, "export: ") {
			if j.nOrphan >= maxOrphans {
				j.orphans, j.nOrphan = map[string][]map[string]any{}, 0
			}
			raw["_seen"] = now
			j.orphans[sop] = append(j.orphans[sop], raw)
			j.nOrphan++
		}
		return
	}
	s := j.get(uid, now)
	ev := Event{Time: now, Level: level, Message: msg, Fields: fields}
	switch msg {
	case msgCStore, msgWatchAccept:
		if fields["outcome"] == "duplicate" {
			return
		}
		if !s.Completed.IsZero() {
			s.Completed, s.Finalised, s.CompleteReason = time.Time{}, time.Time{}, ""
			s.record(Event{Time: now, Level: "info", Message: "series reopened: a new instance arrived"}, j.o.MaxEvents)
		}
		if s.Received == 0 {
			s.FirstSlice, s.FirstSOP = now, fields["sop"]
			s.CallingAE, s.Rule = fields["calling_ae"], fields["rule"]
			s.record(Event{Time: now, Level: level, Message: "first instance received",
				Fields: map[string]string{"sop": fields["sop"], "calling_ae": fields["calling_ae"], "rule": fields["rule"]}}, j.o.MaxEvents)
		}
		s.Received++
		s.LastSlice = now
		return
	case msgScored:
		n := 1
		if f, err := strconv.Atoi(fields["frames"]); err == nil && f > 0 {
			n = f
		}
		s.Scored += n
		s.Model = fields["model"]
		return
	case msgComplete:
		s.Completed, s.CompleteReason = now, fields["reason"]
		if v, err := strconv.Atoi(fields["version"]); err == nil {
			s.Version = v
		}
	case msgFinalised:
		s.Finalised, s.Model, s.SEG = now, fields["model"], firstOf(raw["seg"])
		if s.SEG == "" {
			s.SEG = firstOf(raw["sr"])
		}
		_, s.HasFindings = raw["findings"]
		s.Findings, _ = strconv.Atoi(fields["findings"])
		s.Slices, _ = strconv.Atoi(fields["slices"])
		s.Anomalous, _ = strconv.Atoi(fields["anomalous_slices"])
		s.Objects, _ = strconv.Atoi(fields["objects"])
		s.Destinations, s.Delivered, s.Dead, s.Problem = list, map[string]time.Time{}, map[string]string{}, ""
		if s.SEG != "" {
			j.bySOP[s.SEG] = uid
			if early := j.orphans[s.SEG]; len(early) > 0 {
				delete(j.orphans, s.SEG)
				j.nOrphan -= len(early)
				s.record(ev, j.o.MaxEvents)
				for _, e := range early {
					j.take(e)
				}
				return
			}
		}
	case msgDelivered:
		if fields["sop_instance_uid"] == s.SEG {
			s.Delivered[fields["destination"]] = now
			delete(s.Dead, fields["destination"])
		}
	case msgRetry:
		s.Retries++
	case msgDead:
		if fields["sop_instance_uid"] == s.SEG {
			s.Dead[fields["destination"]] = fields["error"]
		}
	default:
		if level == "error" || level == "warn" {
			s.Problem = msg
			if e := fields["error"]; e != "" {
				s.Problem += ": " + e
			}
		}
	}
	s.record(ev, j.o.MaxEvents)
}

// get returns the series, creating it (and forgetting the oldest beyond
// MaxSeries); j.mu is held.
func (j *Journal) get(uid string, now time.Time) *Series {
	if s, ok := j.series[uid]; ok {
		return s
	}
	s := &Series{UID: uid, Delivered: map[string]time.Time{}, Dead: map[string]string{}}
	j.series[uid] = s
	j.order = append(j.order, uid)
	for len(j.order) > j.o.MaxSeries {
		old := j.series[j.order[0]]
		delete(j.series, j.order[0])
		if old != nil && old.SEG != "" {
			delete(j.bySOP, old.SEG)
		}
		j.order = j.order[1:]
	}
	return s
}

func (s *Series) record(ev Event, max int) {
	if len(s.Events) >= max {
		s.Events = s.Events[1:]
	}
	s.Events = append(s.Events, ev)
}

// copy returns a deep enough copy for rendering outside the lock.
func (s *Series) copy() Series {
	c := *s
	c.Destinations = append([]string(nil), s.Destinations...)
	c.Events = append([]Event(nil), s.Events...)
	c.Delivered = make(map[string]time.Time, len(s.Delivered))
	for k, v := range s.Delivered {
		c.Delivered[k] = v
	}
	c.Dead = make(map[string]string, len(s.Dead))
	for k, v := range s.Dead {
		c.Dead[k] = v
	}
	return c
}

// Series returns one series, if the journal still holds it.
func (j *Journal) Series(uid string) (Series, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	s, ok := j.series[uid]
	if !ok {
		return Series{}, false
	}
	return s.copy(), true
}

// All returns every series held, the most recently active first.
func (j *Journal) All() []Series {
	j.mu.Lock()
	out := make([]Series, 0, len(j.series))
	for _, s := range j.series {
		out = append(out, s.copy())
	}
	j.mu.Unlock()
	sort.Slice(out, func(a, b int) bool { return out[a].lastActive().After(out[b].lastActive()) })
	return out
}

func (s *Series) lastActive() time.Time {
	t := s.LastSlice
	if len(s.Events) > 0 && s.Events[len(s.Events)-1].Time.After(t) {
		t = s.Events[len(s.Events)-1].Time
	}
	return t
}

// SeriesOf returns the source series of an output object the journal has
// seen (the SEG), "" when unknown.
func (j *Journal) SeriesOf(sop string) string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.bySOP[sop]
}

// SetInfo records a series' description (looked up once by the console).
func (j *Journal) SetInfo(uid string, info SeriesInfo) {
	if !j.o.ShowPHI {
		info.PatientName, info.PatientID = "", ""
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if s, ok := j.series[uid]; ok {
		s.Info = info
	}
}

// CallingAEs returns today's association count per calling AE title.
func (j *Journal) CallingAEs() map[string]int {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := map[string]int{}
	if j.day != j.o.Now().Format("2006-01-02") {
		return out
	}
	for k, v := range j.perAE {
		out[k] = v
	}
	return out
}

// firstOf is the first value of a log field that is a list (or the field
// itself when it is a single value).
func firstOf(v any) string {
	if a, ok := v.([]any); ok {
		if len(a) == 0 {
			return ""
		}
		return text(a[0])
	}
	return text(v)
}
