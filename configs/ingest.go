package configs

import (
	"fmt"
	"path"
	"regexp"
	"time"

	"github.com/suyashkumar/dicom/pkg/tag"
)

// NATS configures the durable store and queue (JetStream).
type NATS struct {
	// URL of an external NATS cluster; empty runs the embedded server under
	// node.data_dir.
	URL string `yaml:"url"`
	// CredentialsFile is a NATS .creds file (JWT + NKey) for an external cluster.
	CredentialsFile string `yaml:"credentials_file"`
	// TLS configures TLS towards an external cluster.
	TLS NATSTLS `yaml:"tls"`
	// Replicas is the replica count of streams created on an external cluster
	// (the embedded server always uses 1).
	Replicas int `yaml:"replicas"`
	// Listen makes the embedded server also listen on this loopback HOST:PORT
	// (for inspection with the nats CLI); empty means in-process only.
	Listen string `yaml:"listen"`
	// SyncInterval is how often the embedded server flushes to disk; 0 (the
	// default) flushes an instance before acknowledging it (every write is
	// synced, but the work stream of a node with instance files, whose items
	// are kept in the flushed records: docs/ingest.md), so an accepted
	// instance survives a power cut. A positive interval survives a crash of
	// the process but not of the machine, for a higher rate.
	SyncInterval time.Duration `yaml:"sync_interval"`
	// Prefix is prepended to every stream, bucket and subject name so several
	// nodes or test runs can share one cluster.
	Prefix string `yaml:"prefix"`
}

// NATSTLS holds the client TLS files used with an external NATS cluster.
type NATSTLS struct {
	// CA is the PEM file of the certificate authorities to trust.
	CA string `yaml:"ca"`
	// Cert is the PEM client certificate (mutual TLS).
	Cert string `yaml:"cert"`
	// Key is the PEM private key of Cert.
	Key string `yaml:"key"`
}

func (n *NATS) setDefaults() {
	if n.Replicas == 0 {
		n.Replicas = 1
	}
	if n.Prefix == "" {
		n.Prefix = "ANOMALYNODE"
	}
}

var natsNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func (n *NATS) validate(p *problems, path string) {
	if n.Replicas < 1 || n.Replicas > 5 {
		p.add(path+".replicas", "must be between 1 and 5, got %d", n.Replicas)
	}
	if !natsNameRE.MatchString(n.Prefix) {
		p.add(path+".prefix", "only letters, digits, '-' and '_' allowed, got %q", n.Prefix)
	}
	if (n.TLS.Cert == "") != (n.TLS.Key == "") {
		p.add(path+".tls", "cert and key must be given together")
	}
	if n.URL == "" && (n.CredentialsFile != "" || n.TLS.CA != "" || n.TLS.Cert != "") {
		p.add(path+".url", "credentials_file and tls need an external url")
	}
	if n.SyncInterval < 0 {
		p.add(path+".sync_interval", "must not be negative")
	}
	if n.URL != "" && n.SyncInterval != 0 {
		p.add(path+".sync_interval", "only for the embedded server (url is set)")
	}
	if n.URL != "" && n.Listen != "" {
		p.add(path+".listen", "only for the embedded server (url is set)")
	}
}

// Ingest configures how instances get in: the store's free-space floor,
// watched folders and series completion.
type Ingest struct {
	// SeriesTimeout completes a series after this long without new instances
	// (a route may override it).
	SeriesTimeout time.Duration `yaml:"series_timeout"`
	// ImpliedSettle completes a series sooner than series_timeout when its
	// instances form a complete, gap-free regular stack (single-frame slices on
	// one line, evenly spaced, at least 3) and it has been quiet this long; 0s
	// disables it; never longer than series_timeout; default 3s. Set it above
	// the longest pause your senders make between slices of one series.
	ImpliedSettle *time.Duration `yaml:"implied_settle"`
	// MinFreeBytes refuses new instances (C-STORE status A700) while the data
	// directory's file system has fewer free bytes than this.
	MinFreeBytes int64 `yaml:"min_free_bytes"`
	// MinFreePercent is the same floor as a percentage of the file system size.
	MinFreePercent float64 `yaml:"min_free_percent"`
	// DuplicateWindow is how long the work queue remembers a SOP Instance UID to
	// drop a re-send that races a crash; older duplicates are caught by the
	// instance index.
	DuplicateWindow time.Duration `yaml:"duplicate_window"`
	// AckWait is how long a consumer may hold a work item without acknowledging
	// it (or signalling progress) before it is redelivered. A node signals
	// progress on every item it holds every ack_wait/3, so this bounds how
	// long the work of a crashed node waits before another node takes it
	// over; default 30s.
	AckWait time.Duration `yaml:"ack_wait"`
	// StoreTimeout bounds how long the store may make no progress on an
	// offered instance (JetStream slow or unreachable) before the C-STORE is
	// answered A700 (out of resources) and a watched file is left for a
	// retry; default 10s.
	StoreTimeout time.Duration `yaml:"store_timeout"`
	// MaxDeliver bounds redeliveries of one work item (then it is dropped and
	// logged); -1 retries forever.
	MaxDeliver int `yaml:"max_deliver"`
	// MaxInFlight bounds the slices handed to the slice consumer and not yet
	// acknowledged; keep MaxInFlight x (time per slice) well below AckWait.
	MaxInFlight int `yaml:"max_in_flight"`
	// MaxHeaderBytes bounds the part of a data set read before the pixel data
	// to route it; larger headers are refused.
	MaxHeaderBytes int64 `yaml:"max_header_bytes"`
	// Retention keeps stored instances (and the duplicate index) this long,
	// so late slices, re-runs and the SC builder can read them.
	Retention time.Duration `yaml:"retention"`
	// InstanceStore is where received data sets are kept: "files" (under
	// data_dir/instances: records in 64 MiB segment files written ahead of
	// time, so a record's flush is data alone, or one file each while no
	// segment is ready; flushed in parallel with the work item and with other
	// associations' records), "stream" (one synced
	// message each in JetStream; the only choice with nats.url, where every
	// node of the cluster reads the bytes). Empty (the default) means files
	// on an embedded node and stream with nats.url. Objects too large for
	// one message go to the JetStream object store either way.
	InstanceStore string `yaml:"instance_store"`
	// Watch lists the folders watched for dropped DICOM files.
	Watch []WatchFolder `yaml:"watch"`
}

// WatchFolder is one watched input folder.
type WatchFolder struct {
	// Path of the folder; sub-folders are watched too.
	Path string `yaml:"path"`
	// DoneDir receives processed files (their relative path kept); empty
	// deletes them instead.
	DoneDir string `yaml:"done_dir"`
	// QuarantineDir receives files that fail to parse, each with a
	// <name>.reason.txt sidecar; empty uses <data_dir>/quarantine.
	QuarantineDir string `yaml:"quarantine_dir"`
	// StableFor is how long a file's size must stay unchanged before it is read
	// when no close-after-write event is seen.
	StableFor time.Duration `yaml:"stable_for"`
	// RescanInterval rescans the whole tree this often to catch events the
	// kernel dropped; 0 uses the default, negative disables periodic rescans
	// (overflow still triggers one).
	RescanInterval time.Duration `yaml:"rescan_interval"`
}

// DefaultImpliedSettle is the default of ingest.implied_settle. Network
// senders push the slices of a series milliseconds apart and scanners that
// stream while reconstructing send several per second, so a 3 s pause after a
// complete-looking stack means the series is done, ten times sooner than the
// default series_timeout.
const DefaultImpliedSettle = 3 * time.Second

func (i *Ingest) setDefaults() {
	if i.SeriesTimeout == 0 {
		i.SeriesTimeout = 30 * time.Second
	}
	if i.ImpliedSettle == nil {
		// A pointer, so an explicit 0s (disabled) differs from absent.
		d := min(DefaultImpliedSettle, i.SeriesTimeout)
		i.ImpliedSettle = &d
	}
	if i.DuplicateWindow == 0 {
		i.DuplicateWindow = 10 * time.Minute
	}
	if i.AckWait == 0 {
		i.AckWait = 30 * time.Second
	}
	if i.StoreTimeout == 0 {
		i.StoreTimeout = 10 * time.Second
	}
	if i.MaxDeliver == 0 {
		i.MaxDeliver = -1
	}
	if i.Retention == 0 {
		i.Retention = 72 * time.Hour
	}
	if i.MaxHeaderBytes == 0 {
		i.MaxHeaderBytes = 64 << 20
	}
	if i.MaxInFlight == 0 {
		i.MaxInFlight = 256
	}
	for k := range i.Watch {
		w := &i.Watch[k]
		if w.StableFor == 0 {
			w.StableFor = 2 * time.Second
		}
		if w.RescanInterval == 0 {
			w.RescanInterval = time.Minute
		}
	}
}

func (i *Ingest) validate(p *problems, path string) {
	switch i.InstanceStore {
	case "", "files", "stream":
	default:
		p.add(path+".instance_store", "must be files or stream, not %q", i.InstanceStore)
	}
	if i.SeriesTimeout < 0 {
		p.add(path+".series_timeout", "must not be negative")
	}
	if d := i.ImpliedSettle; d != nil && *d < 0 {
		p.add(path+".implied_settle", "must not be negative (0s disables it)")
	} else if d != nil && *d > i.SeriesTimeout && i.SeriesTimeout > 0 {
		p.add(path+".implied_settle", "must not exceed series_timeout (%v), got %v", i.SeriesTimeout, *d)
	}
	if i.MinFreeBytes < 0 {
		p.add(path+".min_free_bytes", "must not be negative")
	}
	if i.MinFreePercent < 0 || i.MinFreePercent >= 100 {
		p.add(path+".min_free_percent", "must be in [0, 100), got %v", i.MinFreePercent)
	}
	if i.DuplicateWindow < time.Second {
		p.add(path+".duplicate_window", "must be at least 1s")
	}
	if i.AckWait < time.Second {
		p.add(path+".ack_wait", "must be at least 1s")
	}
	if i.StoreTimeout < 100*time.Millisecond {
		p.add(path+".store_timeout", "must be at least 100ms")
	}
	if i.MaxDeliver < -1 || i.MaxDeliver == 0 {
		p.add(path+".max_deliver", "must be -1 (forever) or at least 1")
	}
	if i.Retention < time.Minute {
		p.add(path+".retention", "must be at least 1m")
	}
	if i.MaxInFlight < 1 {
		p.add(path+".max_in_flight", "must be at least 1")
	}
	if i.MaxHeaderBytes < 4096 {
		p.add(path+".max_header_bytes", "must be at least 4096")
	}
	seen := map[string]bool{}
	for k, w := range i.Watch {
		wp := fmt.Sprintf("%s.watch[%d]", path, k)
		if w.Path == "" {
			p.add(wp+".path", "required")
		} else if seen[w.Path] {
			p.add(wp+".path", "folder %q is watched twice", w.Path)
		}
		seen[w.Path] = true
		if w.StableFor < 0 {
			p.add(wp+".stable_for", "must not be negative")
		}
		if w.DoneDir != "" && w.DoneDir == w.Path {
			p.add(wp+".done_dir", "must differ from path")
		}
		if w.QuarantineDir != "" && w.QuarantineDir == w.Path {
			p.add(wp+".quarantine_dir", "must differ from path")
		}
	}
}

// Route is one routing rule: a match and what to do with matching instances.
// Rules are evaluated in order; the first match wins; a rule without a match
// block matches everything (the fallback) and must come last.
type Route struct {
	// Name identifies the rule in logs and in 'anomalynode route' output.
	Name string `yaml:"name"`
	// Match holds the conditions; all given conditions must hold.
	Match Match `yaml:"match"`
	// Model names the entry of models that processes matching series.
	Model string `yaml:"model"`
	// Ignore drops matching instances instead of running a model.
	Ignore bool `yaml:"ignore"`
	// Destinations name the entries of destinations that receive the outputs.
	Destinations []string `yaml:"destinations"`
	// SeriesTimeout overrides ingest.series_timeout for matching series.
	SeriesTimeout time.Duration `yaml:"series_timeout"`
	// ImpliedSettle overrides ingest.implied_settle for matching series (0s
	// disables the implied-stack completion for them), e.g. for a scanner that
	// pauses between the slices it streams.
	ImpliedSettle *time.Duration `yaml:"implied_settle"`
}

// Match is the condition block of a rule. Lists match when any entry matches;
// AE titles, sources and exact-valued lists accept shell globs (*, ?, [..]);
// regex fields are Go regular expressions, unanchored (use ^...$ to anchor).
type Match struct {
	// CallingAE is the sender's AE title (network only).
	CallingAE []string `yaml:"calling_ae"`
	// CalledAE is the AE title the sender called (network only).
	CalledAE []string `yaml:"called_ae"`
	// Source is "network", "folder", or a glob on the path of a dropped file.
	Source []string `yaml:"source"`
	// Modality is (0008,0060), e.g. CT, MR.
	Modality []string `yaml:"modality"`
	// BodyPart is BodyPartExamined (0018,0015).
	BodyPart []string `yaml:"body_part"`
	// SeriesDescription is a regex on (0008,103E).
	SeriesDescription string `yaml:"series_description"`
	// ProtocolName is a regex on (0018,1030).
	ProtocolName string `yaml:"protocol_name"`
	// SOPClass lists SOP Class UIDs (or their globs).
	SOPClass []string `yaml:"sop_class"`
	// ImageType lists values that must all be present in ImageType (0008,0008).
	ImageType []string `yaml:"image_type"`
	// SliceThickness bounds SliceThickness (0018,0050) in mm.
	SliceThickness *Range `yaml:"slice_thickness"`
	// Tags maps a DICOM keyword (e.g. Manufacturer) to a regex on its value.
	Tags map[string]string `yaml:"tags"`
}

// Range is a closed numeric interval; an absent bound is open.
type Range struct {
	// Min is the smallest accepted value.
	Min *float64 `yaml:"min"`
	// Max is the largest accepted value.
	Max *float64 `yaml:"max"`
}

// Empty reports whether the block has no condition (a catch-all rule).
func (m *Match) Empty() bool {
	return len(m.CallingAE) == 0 && len(m.CalledAE) == 0 && len(m.Source) == 0 &&
		len(m.Modality) == 0 && len(m.BodyPart) == 0 && m.SeriesDescription == "" &&
		m.ProtocolName == "" && len(m.SOPClass) == 0 && len(m.ImageType) == 0 &&
		m.SliceThickness == nil && len(m.Tags) == 0
}

func (r *Route) setDefaults() {}

func (r *Route) validate(p *problems, path string, c *Config) {
	if r.Name == "" {
		p.add(path+".name", "required")
	}
	for i, prev := range c.Routes {
		if &c.Routes[i] == r {
			break
		}
		if prev.Name == r.Name && r.Name != "" {
			p.add(path+".name", "duplicate rule name %q", r.Name)
		}
		if prev.Match.Empty() {
			p.add(path, "unreachable: rule %q before it matches everything", prev.Name)
		}
	}
	if r.SeriesTimeout < 0 {
		p.add(path+".series_timeout", "must not be negative")
	}
	if d := r.ImpliedSettle; d != nil && *d < 0 {
		p.add(path+".implied_settle", "must not be negative (0s disables it)")
	} else if d != nil && r.SeriesTimeout > 0 && *d > r.SeriesTimeout {
		p.add(path+".implied_settle", "must not exceed the rule's series_timeout (%v), got %v", r.SeriesTimeout, *d)
	}
	r.Match.validate(p, path+".match")
	if r.Ignore {
		if r.Model != "" || len(r.Destinations) > 0 {
			p.add(path+".ignore", "an ignore rule takes no model or destinations")
		}
		return
	}
	if r.Model == "" {
		p.add(path+".model", "required unless ignore is true")
	} else if _, ok := c.Models[r.Model]; !ok {
		p.add(path+".model", "unknown model %q", r.Model)
	}
	for i, d := range r.Destinations {
		if _, ok := c.Destinations[d]; !ok {
			p.add(path+".destinations", "destination %d: unknown destination %q", i, d)
		}
	}
}

func (m *Match) validate(p *problems, p0 string) {
	globs := map[string][]string{
		"calling_ae": m.CallingAE, "called_ae": m.CalledAE, "source": m.Source,
		"modality": m.Modality, "body_part": m.BodyPart, "sop_class": m.SOPClass,
	}
	for key, list := range globs {
		for _, g := range list {
			if _, err := path.Match(g, ""); err != nil {
				p.add(p0+"."+key, "bad glob %q: %v", g, err)
			}
		}
	}
	for key, re := range map[string]string{"series_description": m.SeriesDescription, "protocol_name": m.ProtocolName} {
		if re == "" {
			continue
		}
		if _, err := regexp.Compile(re); err != nil {
			p.add(p0+"."+key, "bad regex %q: %v", re, err)
		}
	}
	if r := m.SliceThickness; r != nil {
		if r.Min == nil && r.Max == nil {
			p.add(p0+".slice_thickness", "needs min and/or max")
		}
		if r.Min != nil && r.Max != nil && *r.Min > *r.Max {
			p.add(p0+".slice_thickness", "min %v is above max %v", *r.Min, *r.Max)
		}
	}
	for kw, re := range m.Tags {
		if _, err := tag.FindByKeyword(kw); err != nil {
			p.add(p0+".tags."+kw, "unknown DICOM keyword %q", kw)
		}
		if _, err := regexp.Compile(re); err != nil {
			p.add(p0+".tags."+kw, "bad regex %q: %v", re, err)
		}
	}
}
