package configs

import (
	"regexp"
	"strings"
	"time"
)

// Output configures the SEG and SC objects the node builds.
type Output struct {
	// SEGSeriesDescription is the SeriesDescription of SEG series (the version is appended).
	SEGSeriesDescription string `yaml:"seg_series_description"`
	// SEGSeriesNumber is the SeriesNumber of SEG series; 0 uses the source's plus 1000.
	SEGSeriesNumber int `yaml:"seg_series_number"`
	// SEGAllSlices writes a SEG frame for every source slice, not only slices with findings.
	SEGAllSlices bool `yaml:"seg_all_slices"`
	// SEGMaxSegments is how many findings of a stack get a SEG segment of their own (by peak score); the rest share one "Other findings" segment.
	SEGMaxSegments int `yaml:"seg_max_segments"`
	// ContentLabel is the SEG's ContentLabel (a code string: upper case, at most 16 characters).
	ContentLabel string `yaml:"content_label"`
	// SegmentLabel names the SEG's one segment in viewers when the model has no finding calibration (per-pixel masks).
	SegmentLabel string `yaml:"segment_label"`
	// SegmentType is the segmented property type code (default SCT 52988006 "Lesion").
	SegmentType CodeConfig `yaml:"segment_type"`
	// SC enables the Secondary Capture heat-map series (default true; see SCEnabled).
	SC *bool `yaml:"sc"`
	// SCSeriesDescription is the SeriesDescription of heat-map series (version and "NOT FOR DIAGNOSTIC USE" are appended).
	SCSeriesDescription string `yaml:"sc_series_description"`
	// SCSeriesNumber is the SeriesNumber of heat-map series; 0 uses the source's plus 2000.
	SCSeriesNumber int `yaml:"sc_series_number"`
	// SCOnlyFindings builds heat maps only for slices with findings.
	SCOnlyFindings bool `yaml:"sc_only_findings"`
	// HeatmapOpacity is the heat map's opacity at the highest score, in (0, 1].
	HeatmapOpacity float64 `yaml:"heatmap_opacity"`
	// SR enables the DICOM SR measurement report (TID 1500) of every analysed series (default true; see SREnabled).
	SR *bool `yaml:"sr"`
	// SRSeriesDescription is the SeriesDescription of report series (the version is appended).
	SRSeriesDescription string `yaml:"sr_series_description"`
	// SRSeriesNumber is the SeriesNumber of report series; 0 uses the source's plus 3000.
	SRSeriesNumber int `yaml:"sr_series_number"`
	// Manufacturer is written to the outputs' equipment modules.
	Manufacturer string `yaml:"manufacturer"`
	// DeviceSerialNumber identifies this installation in the outputs.
	DeviceSerialNumber string `yaml:"device_serial_number"`
}

// CodeConfig is a coded concept (PS3.3 Code Sequence macro).
type CodeConfig struct {
	// Value is the CodeValue, e.g. "52988006".
	Value string `yaml:"value"`
	// Scheme is the CodingSchemeDesignator, e.g. "SCT".
	Scheme string `yaml:"scheme"`
	// Meaning is the CodeMeaning, e.g. "Lesion".
	Meaning string `yaml:"meaning"`
}

// SCEnabled reports whether heat-map series are built (the default).
func (o *Output) SCEnabled() bool { return o.SC == nil || *o.SC }

// SREnabled reports whether measurement reports are built (the default).
func (o *Output) SREnabled() bool { return o.SR == nil || *o.SR }

func (o *Output) setDefaults() {
	if o.SEGSeriesDescription == "" {
		o.SEGSeriesDescription = "Anomaly segmentation (anomalynode)"
	}
	if o.SEGMaxSegments == 0 {
		o.SEGMaxSegments = 8
	}
	if o.ContentLabel == "" {
		o.ContentLabel = "ANOMALY"
	}
	if o.SegmentLabel == "" {
		o.SegmentLabel = "Anomaly"
	}
	if o.SegmentType == (CodeConfig{}) {
		o.SegmentType = CodeConfig{Value: "52988006", Scheme: "SCT", Meaning: "Lesion"}
	}
	if o.SC == nil {
		on := true
		o.SC = &on
	}
	if o.SCSeriesDescription == "" {
		o.SCSeriesDescription = "Anomaly heat map (anomalynode)"
	}
	if o.SR == nil {
		on := true
		o.SR = &on
	}
	if o.SRSeriesDescription == "" {
		o.SRSeriesDescription = "Anomaly report (anomalynode)"
	}
	if o.HeatmapOpacity == 0 {
		o.HeatmapOpacity = 0.6
	}
	if o.Manufacturer == "" {
		o.Manufacturer = "anomalynode"
	}
	if o.DeviceSerialNumber == "" {
		o.DeviceSerialNumber = "0"
	}
}

var csRE = regexp.MustCompile(`^[A-Z0-9_ ]{1,16}$`)

func (o *Output) validate(p *problems, path string) {
	if len(o.SEGSeriesDescription) > 60 {
		p.add(path+".seg_series_description", "at most 60 characters (the version is appended to 64), got %d", len(o.SEGSeriesDescription))
	}
	if len(o.SCSeriesDescription) > 36 {
		p.add(path+".sc_series_description", "at most 36 characters (version and legend are appended to 64), got %d", len(o.SCSeriesDescription))
	}
	if len(o.SRSeriesDescription) > 60 {
		p.add(path+".sr_series_description", "at most 60 characters (the version is appended to 64), got %d", len(o.SRSeriesDescription))
	}
	if o.SRSeriesNumber < 0 {
		p.add(path+".sr_series_number", "series numbers must not be negative")
	}
	if o.SEGSeriesNumber < 0 || o.SCSeriesNumber < 0 {
		p.add(path+".seg_series_number", "series numbers must not be negative")
	}
	if o.SEGMaxSegments < 1 || o.SEGMaxSegments > 99 {
		p.add(path+".seg_max_segments", "must be 1 to 99, got %d", o.SEGMaxSegments)
	}
	if !csRE.MatchString(o.ContentLabel) {
		p.add(path+".content_label", "must be upper case A-Z, 0-9, '_' or space, at most 16 characters, got %q", o.ContentLabel)
	}
	if len(o.SegmentLabel) > 64 {
		p.add(path+".segment_label", "at most 64 characters")
	}
	if o.SegmentType.Value == "" || o.SegmentType.Scheme == "" || o.SegmentType.Meaning == "" {
		p.add(path+".segment_type", "value, scheme and meaning are all required")
	}
	if o.HeatmapOpacity <= 0 || o.HeatmapOpacity > 1 {
		p.add(path+".heatmap_opacity", "must be in (0, 1], got %g", o.HeatmapOpacity)
	}
	if len(o.Manufacturer) > 64 || len(o.DeviceSerialNumber) > 64 {
		p.add(path+".manufacturer", "manufacturer and device_serial_number are at most 64 characters")
	}
}

// Destination is where outputs are delivered: a DICOM AE (C-STORE) and/or a folder.
type Destination struct {
	// Address is HOST:PORT of a C-STORE SCP.
	Address string `yaml:"address"`
	// CalledAE is the destination's AE title.
	CalledAE string `yaml:"called_ae"`
	// CallingAE is our AE title towards it; empty uses dimse.ae_title.
	CallingAE string `yaml:"calling_ae"`
	// TLS makes the association DICOM TLS.
	TLS DestinationTLS `yaml:"tls"`
	// Folder writes outputs as files <folder>/<study>/<series>/<sop>.dcm instead of (or as well as) sending them.
	Folder string `yaml:"folder"`
	// Concurrency bounds the deliveries in flight to this destination.
	Concurrency int `yaml:"concurrency"`
	// Timeout bounds one delivery attempt (connect, store, release).
	Timeout time.Duration `yaml:"timeout"`
	// SR: false keeps measurement reports from this destination (an archive that refuses SR); unset sends them whenever output.sr is on.
	SR *bool `yaml:"sr"`
}

// AcceptsSR reports whether measurement reports go to this destination.
func (d *Destination) AcceptsSR() bool { return d.SR == nil || *d.SR }

// DestinationTLS configures DICOM TLS towards a destination.
type DestinationTLS struct {
	// Enabled turns TLS on.
	Enabled bool `yaml:"enabled"`
	// CA is the PEM file of the certificate authorities to trust; empty uses the system's.
	CA string `yaml:"ca"`
	// Cert is our PEM client certificate (mutual TLS); Key its private key.
	Cert string `yaml:"cert"`
	// Key is the PEM private key of Cert.
	Key string `yaml:"key"`
	// ServerName overrides the name checked against the server certificate.
	ServerName string `yaml:"server_name"`
}

func (d *Destination) setDefaults() {
	if d.Concurrency == 0 {
		d.Concurrency = 2
	}
	if d.Timeout == 0 {
		d.Timeout = 2 * time.Minute
	}
}

var destNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func (d *Destination) validate(p *problems, path string) {
	if name := strings.TrimPrefix(path, "destinations."); !destNameRE.MatchString(name) {
		p.add(path, "destination names are letters, digits, '-' and '_' only")
	}
	if d.Address == "" && d.Folder == "" {
		p.add(path, "needs an address or a folder")
	}
	if d.Address != "" {
		if i := strings.LastIndex(d.Address, ":"); i <= 0 || i == len(d.Address)-1 {
			p.add(path+".address", "must be HOST:PORT, got %q", d.Address)
		}
		if d.CalledAE == "" {
			p.add(path+".called_ae", "required with address")
		}
	}
	if len(d.CalledAE) > 16 || len(d.CallingAE) > 16 {
		p.add(path+".called_ae", "AE titles are at most 16 characters")
	}
	if d.TLS.Enabled && d.Address == "" {
		p.add(path+".tls", "needs an address")
	}
	if (d.TLS.Cert == "") != (d.TLS.Key == "") {
		p.add(path+".tls", "cert and key must be given together")
	}
	if d.Concurrency < 1 || d.Concurrency > 64 {
		p.add(path+".concurrency", "must be between 1 and 64, got %d", d.Concurrency)
	}
	if d.Timeout < time.Second {
		p.add(path+".timeout", "must be at least 1s, got %v", d.Timeout)
	}
}

// Export configures delivery retries and the dead-letter store.
type Export struct {
	// MaxAttempts is how many delivery attempts a job gets before it is dead-lettered.
	MaxAttempts int `yaml:"max_attempts"`
	// MaxAge dead-letters a job this long after it was queued, whatever its attempts.
	MaxAge time.Duration `yaml:"max_age"`
	// BackoffInitial is the delay before the first retry; it doubles per attempt, jittered.
	BackoffInitial time.Duration `yaml:"backoff_initial"`
	// BackoffMax caps the retry delay.
	BackoffMax time.Duration `yaml:"backoff_max"`
}

func (e *Export) setDefaults() {
	if e.MaxAttempts == 0 {
		e.MaxAttempts = 10
	}
	if e.MaxAge == 0 {
		e.MaxAge = 24 * time.Hour
	}
	if e.BackoffInitial == 0 {
		e.BackoffInitial = 2 * time.Second
	}
	if e.BackoffMax == 0 {
		e.BackoffMax = 10 * time.Minute
	}
}

func (e *Export) validate(p *problems, path string) {
	if e.MaxAttempts < 1 {
		p.add(path+".max_attempts", "must be at least 1")
	}
	if e.MaxAge < time.Minute {
		p.add(path+".max_age", "must be at least 1m, got %v", e.MaxAge)
	}
	if e.BackoffInitial <= 0 {
		p.add(path+".backoff_initial", "must be positive")
	}
	if e.BackoffMax < e.BackoffInitial {
		p.add(path+".backoff_max", "must be at least backoff_initial")
	}
}
