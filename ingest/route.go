package ingest

import (
	"fmt"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/suyashkumar/dicom/pkg/tag"

	"anomalynode/configs"
)

// Source kinds.
const (
	SourceNetwork = "network"
	SourceFolder  = "folder"
)

// Source says where an instance came from.
type Source struct {
	// Kind is SourceNetwork or SourceFolder.
	Kind string `json:"kind"`
	// CallingAE and CalledAE are the association's AE titles (network).
	CallingAE string `json:"calling_ae,omitempty"`
	CalledAE  string `json:"called_ae,omitempty"`
	// RemoteAddr is the sender's address (network).
	RemoteAddr string `json:"remote_addr,omitempty"`
	// Path is the dropped file's path (folder).
	Path string `json:"path,omitempty"`
}

// Decision is the outcome of routing one instance.
type Decision struct {
	// Rule is the name of the matching rule; "" when none matched.
	Rule string `json:"rule"`
	// Model names the model that processes the series.
	Model string `json:"model,omitempty"`
	// Destinations receive the outputs.
	Destinations []string `json:"destinations,omitempty"`
	// Ignore is true when the instance does not enter inference.
	Ignore bool `json:"ignore,omitempty"`
	// SeriesTimeout completes the series after this long without instances.
	SeriesTimeout time.Duration `json:"series_timeout,omitempty"`
	// ImpliedSettle, when set, replaces ingest.implied_settle for the series.
	ImpliedSettle *time.Duration `json:"implied_settle,omitempty"`
	// Reasons explain the decision: the conditions that matched, or why the
	// instance was ignored.
	Reasons []string `json:"reasons,omitempty"`
}

// NonImageRule is the Decision.Rule of objects that never enter inference
// (structured reports, presentation states, key objects, segmentations,
// anything without pixel data).
const NonImageRule = "(non-image)"

// OwnOutputRule is the Decision.Rule of an image this node (or another
// anomalynode) made coming back: a heat map, or a DERIVED image whose
// Manufacturer is anomalynode (as lossy compression of a synth series makes).
// It is an image, and is ignored so that outputs are never scored again.
const OwnOutputRule = "(own output)"

// NoRuleMatched is the Decision.Rule when no rule matched (the instance is ignored).
const NoRuleMatched = "(no rule matched)"

// Router evaluates the ordered routing rules of the configuration.
type Router struct {
	rules          []rule
	defaultTimeout time.Duration
}

type rule struct {
	cfg   configs.Route
	conds []cond
}

// cond is one condition of a rule; check returns whether it holds and a
// human-readable account of the value it saw.
type cond struct {
	name  string
	check func(src Source, h *Header) (bool, string)
}

// NewRouter compiles the rules (already validated by configs; errors here mean
// a configuration that bypassed validation).
func NewRouter(routes []configs.Route, defaultTimeout time.Duration) (*Router, error) {
	r := &Router{defaultTimeout: defaultTimeout}
	for i, rc := range routes {
		cr, err := compileRule(rc)
		if err != nil {
			return nil, fmt.Errorf("ingest: routes[%d] (%s): %w", i, rc.Name, err)
		}
		r.rules = append(r.rules, cr)
	}
	return r, nil
}

// RuleTrace is how one rule fared against an instance (for 'anomalynode route').
type RuleTrace struct {
	// Rule is the rule's name.
	Rule string
	// Matched is true when every condition held.
	Matched bool
	// Held lists the conditions that held; Failed the first that did not.
	Held   []string
	Failed string
}

// Route returns the decision for an instance.
func (r *Router) Route(src Source, h *Header) Decision {
	d, _ := r.Explain(src, h)
	return d
}

// Explain returns the decision and the trace of every rule evaluated up to the
// one that matched.
func (r *Router) Explain(src Source, h *Header) (Decision, []RuleTrace) {
	if rule, why := nonImage(h); why != "" {
		return Decision{Rule: rule, Ignore: true, Reasons: []string{why}}, nil
	}
	var traces []RuleTrace
	for _, ru := range r.rules {
		tr := RuleTrace{Rule: ru.cfg.Name, Matched: true}
		for _, c := range ru.conds {
			ok, saw := c.check(src, h)
			if !ok {
				tr.Matched, tr.Failed = false, fmt.Sprintf("%s: %s", c.name, saw)
				break
			}
			tr.Held = append(tr.Held, fmt.Sprintf("%s: %s", c.name, saw))
		}
		traces = append(traces, tr)
		if !tr.Matched {
			continue
		}
		d := Decision{Rule: ru.cfg.Name, Ignore: ru.cfg.Ignore, Reasons: tr.Held}
		if len(ru.conds) == 0 {
			d.Reasons = []string{"fallback rule (no conditions)"}
		}
		if !d.Ignore {
			d.Model = ru.cfg.Model
			d.Destinations = append([]string(nil), ru.cfg.Destinations...)
			d.SeriesTimeout = ru.cfg.SeriesTimeout
			if d.SeriesTimeout == 0 {
				d.SeriesTimeout = r.defaultTimeout
			}
			d.ImpliedSettle = ru.cfg.ImpliedSettle
		}
		return d, traces
	}
	return Decision{Rule: NoRuleMatched, Ignore: true, Reasons: []string{"no rule matched"}}, traces
}

// nonImageSOPPrefixes are SOP class roots that are never images to score.
var nonImageSOPPrefixes = map[string]string{
	"1.2.840.10008.5.1.4.1.1.88.":  "structured report / key object selection",
	"1.2.840.10008.5.1.4.1.1.11.":  "presentation state",
	"1.2.840.10008.5.1.4.1.1.66":   "segmentation / registration / raw data",
	"1.2.840.10008.5.1.4.1.1.481.": "radiotherapy object",
	"1.2.840.10008.5.1.4.1.1.104.": "encapsulated document",
	"1.2.840.10008.5.1.4.1.1.9.":   "waveform",
	"1.2.840.10008.5.1.4.1.1.91.":  "real-world value mapping",
}

// nonImageClass returns why a SOP class is never an image to score, "" when
// it may be one.
func nonImageClass(sop string) string {
	for prefix, what := range nonImageSOPPrefixes {
		if strings.HasPrefix(sop, prefix) {
			return fmt.Sprintf("SOP class %s is a %s", sop, what)
		}
	}
	return ""
}

// nonImage returns why an instance must not enter inference and the rule
// that says so (NonImageRule or OwnOutputRule), "" when it may.
func nonImage(h *Header) (rule, why string) {
	if why := nonImageClass(h.Str(tag.SOPClassUID)); why != "" {
		return NonImageRule, why
	}
	if ownOutput(h) {
		return OwnOutputRule, "our own output coming back: Manufacturer anomalynode and a derived image or secondary capture " +
			"(a scanner's image names its own manufacturer; a synth series made DERIVED by lossy compression needs one)"
	}
	if !h.HasPixelData {
		return NonImageRule, "no pixel data"
	}
	return "", ""
}

// ownOutput recognises the heat-map series the output stage writes (SEG is
// already excluded by its SOP class): made by anomalynode and derived or a
// secondary capture. Synthetic test series carry the same manufacturer but are
// ORIGINAL images, so they are routed normally.
func ownOutput(h *Header) bool {
	made := false
	for _, t := range []tag.Tag{tag.Manufacturer, tag.ManufacturerModelName, tag.SecondaryCaptureDeviceManufacturer} {
		if strings.Contains(strings.ToLower(h.Str(t)), "anomalynode") {
			made = true
		}
	}
	if !made {
		return false
	}
	if strings.HasPrefix(h.Str(tag.SOPClassUID), "1.2.840.10008.5.1.4.1.1.7") {
		return true
	}
	first, _, _ := strings.Cut(h.Str(tag.ImageType), `\`)
	return strings.EqualFold(strings.TrimSpace(first), "DERIVED")
}

func compileRule(rc configs.Route) (rule, error) {
	ru := rule{cfg: rc}
	m := rc.Match
	add := func(name string, f func(Source, *Header) (bool, string)) {
		ru.conds = append(ru.conds, cond{name: name, check: f})
	}
	if len(m.Source) > 0 {
		pats := m.Source
		add("source", func(s Source, _ *Header) (bool, string) {
			for _, p := range pats {
				switch {
				case p == s.Kind:
					return true, fmt.Sprintf("%s is \"%s\"", s.Kind, p)
				case s.Kind == SourceFolder && globPath(p, s.Path):
					return true, fmt.Sprintf("path %s matches \"%s\"", s.Path, p)
				}
			}
			what := s.Kind
			if s.Path != "" {
				what += " " + s.Path
			}
			return false, fmt.Sprintf("%s not in %v", what, pats)
		})
	}
	if len(m.CallingAE) > 0 {
		add("calling_ae", listCond(m.CallingAE, false, func(s Source, _ *Header) (string, bool) { return s.CallingAE, s.Kind == SourceNetwork }))
	}
	if len(m.CalledAE) > 0 {
		add("called_ae", listCond(m.CalledAE, false, func(s Source, _ *Header) (string, bool) { return s.CalledAE, s.Kind == SourceNetwork }))
	}
	attr := func(t tag.Tag) func(Source, *Header) (string, bool) {
		return func(_ Source, h *Header) (string, bool) { return h.Get(t) }
	}
	if len(m.Modality) > 0 {
		add("modality", listCond(m.Modality, true, attr(tag.Modality)))
	}
	if len(m.BodyPart) > 0 {
		add("body_part", listCond(m.BodyPart, true, attr(tag.BodyPartExamined)))
	}
	if len(m.SOPClass) > 0 {
		add("sop_class", listCond(m.SOPClass, false, attr(tag.SOPClassUID)))
	}
	for _, rx := range []struct {
		name, re string
		t        tag.Tag
	}{{"series_description", m.SeriesDescription, tag.SeriesDescription}, {"protocol_name", m.ProtocolName, tag.ProtocolName}} {
		if rx.re == "" {
			continue
		}
		c, err := regexCond(rx.re, rx.t)
		if err != nil {
			return ru, fmt.Errorf("%s: %w", rx.name, err)
		}
		add(rx.name, c)
	}
	if len(m.ImageType) > 0 {
		want := m.ImageType
		add("image_type", func(_ Source, h *Header) (bool, string) {
			v, ok := h.Get(tag.ImageType)
			if !ok {
				return false, "ImageType absent"
			}
			have := map[string]bool{}
			for _, x := range strings.Split(v, `\`) {
				have[strings.ToUpper(strings.TrimSpace(x))] = true
			}
			for _, w := range want {
				if !have[strings.ToUpper(w)] {
					return false, fmt.Sprintf("\"%s\" lacks %s", v, w)
				}
			}
			return true, fmt.Sprintf("\"%s\" has %v", v, want)
		})
	}
	if rg := m.SliceThickness; rg != nil {
		add("slice_thickness", func(_ Source, h *Header) (bool, string) {
			f, ok := h.Float(tag.SliceThickness)
			if !ok {
				return false, "SliceThickness absent"
			}
			if (rg.Min != nil && f < *rg.Min) || (rg.Max != nil && f > *rg.Max) {
				return false, fmt.Sprintf("%v outside %s", f, rangeString(rg))
			}
			return true, fmt.Sprintf("%v within %s", f, rangeString(rg))
		})
	}
	kws := make([]string, 0, len(m.Tags))
	for kw := range m.Tags {
		kws = append(kws, kw)
	}
	sort.Strings(kws)
	for _, kw := range kws {
		info, err := tag.FindByKeyword(kw)
		if err != nil {
			return ru, fmt.Errorf("tags: %w", err)
		}
		c, err := regexCond(m.Tags[kw], info.Tag)
		if err != nil {
			return ru, fmt.Errorf("tags.%s: %w", kw, err)
		}
		add("tags."+kw, c)
	}
	return ru, nil
}

func rangeString(r *configs.Range) string {
	lo, hi := "-inf", "+inf"
	if r.Min != nil {
		lo = strconv.FormatFloat(*r.Min, 'g', -1, 64)
	}
	if r.Max != nil {
		hi = strconv.FormatFloat(*r.Max, 'g', -1, 64)
	}
	return "[" + lo + ", " + hi + "]"
}

// listCond matches a value against a list of globs; fold compares case-insensitively.
func listCond(pats []string, fold bool, get func(Source, *Header) (string, bool)) func(Source, *Header) (bool, string) {
	return func(s Source, h *Header) (bool, string) {
		v, ok := get(s, h)
		if !ok {
			return false, "absent"
		}
		cmp := v
		if fold {
			cmp = strings.ToUpper(v)
		}
		for _, p := range pats {
			pp := p
			if fold {
				pp = strings.ToUpper(p)
			}
			if m, _ := path.Match(pp, cmp); m {
				return true, fmt.Sprintf("\"%s\" matches \"%s\"", v, p)
			}
		}
		return false, fmt.Sprintf("\"%s\" not in %v", v, pats)
	}
}

func regexCond(expr string, t tag.Tag) (func(Source, *Header) (bool, string), error) {
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, err
	}
	return func(_ Source, h *Header) (bool, string) {
		v, ok := h.Get(t)
		if !ok {
			return false, "absent"
		}
		if re.MatchString(v) {
			return true, fmt.Sprintf("\"%s\" matches /%s/", v, expr)
		}
		return false, fmt.Sprintf("\"%s\" does not match /%s/", v, expr)
	}, nil
}

// globPath matches a file path against a glob; a trailing "/**" matches the
// whole tree below.
func globPath(pattern, p string) bool {
	if strings.HasSuffix(pattern, "/**") {
		base := strings.TrimSuffix(pattern, "/**")
		return p == base || strings.HasPrefix(p, base+"/")
	}
	m, _ := path.Match(pattern, p)
	return m
}
