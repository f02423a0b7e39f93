package output

import (
	"anomalynode/internal/collect"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/suyashkumar/dicom"

	"anomalynode/inference"
	"anomalynode/inference/findings"
	"anomalynode/ingest"
)

// InstanceOpener reads a stored source instance (ingest.Service has it).
type InstanceOpener interface {
	// OpenInstance returns the bare data set of an instance and its transfer syntax.
	OpenInstance(ctx context.Context, sopInstanceUID string) (io.ReadCloser, string, error)
}

// ResultReader reads back the scored slices of a series (the inference
// stage's result store has it). Get returns an error wrapping
// inference.ErrNoRecord for a slice that has no result.
type ResultReader interface {
	// Get loads the record of one frame of one slice.
	Get(ctx context.Context, series, sop string, frame int) (*inference.SliceRecord, error)
}

// ServedModel is what the finaliser needs to know of a model.
type ServedModel struct {
	Identity  ModelIdentity
	Threshold float32
	// Findings are the model's finding limits ((*inference.Model).FindingParams);
	// nil for a model file without finding calibration, whose series keep
	// per-pixel masks.
	Findings *findings.Params
}

// FinaliserOptions configures a Finaliser.
type FinaliserOptions struct {
	// Results holds the scored slices.
	Results ResultReader
	// Instances reads the source instances (their headers).
	Instances InstanceOpener
	// Queue receives the built objects for delivery.
	Queue *Queue
	// Models maps model names (as routing rules name them) to their identity.
	Models map[string]ServedModel
	SEG    SEGOptions
	SC     SCOptions
	SR     SROptions
	// SRDestinations picks, from a decision's destinations, those that take
	// measurement reports (output.SRDestinations); nil: all of them.
	SRDestinations func(dests []string) []string
	// Log receives one line per finalised series.
	Log zerolog.Logger
	// Registerer receives the finaliser's metrics (optional).
	Registerer prometheus.Registerer
}

// Finaliser turns a completed series into its SEG and SC objects and makes
// them durable export jobs; only then is the completion acknowledged. Output
// UIDs are derived from the series, model and version, so a completion that
// is redelivered after a crash rebuilds the same objects, and the queue's
// de-duplication keeps them from being delivered twice.
type Finaliser struct {
	o FinaliserOptions

	series   *prometheus.CounterVec
	latency  prometheus.Histogram
	findings prometheus.Histogram
	// warned remembers the models already warned about lacking a finding
	// calibration, so the warning comes once per model, not per series.
	warned sync.Map
}

var _ ingest.CompletionConsumer = (*Finaliser)(nil)

// NewFinaliser returns a Finaliser.
func NewFinaliser(o FinaliserOptions) (*Finaliser, error) {
	if o.Results == nil || o.Instances == nil || o.Queue == nil {
		return nil, errors.New("output: finaliser needs results, instances and a queue")
	}
	f := &Finaliser{
		o: o,
		series: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "anomalynode_series_completed_total", Help: "Series finalised (SEG and SC built and queued), by result.",
		}, []string{"result"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "anomalynode_series_finalise_seconds",
			Help:    "Time from a series' last scored slice to its outputs being queued for delivery.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 14),
		}),
		findings: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "anomalynode_series_findings",
			Help:    "Findings per finalised series (all its stacks), for models with a finding calibration.",
			Buckets: []float64{0, 1, 2, 3, 5, 8, 13, 21},
		}),
	}
	if err := errors.Join(collect.Register(o.Registerer, &f.series), collect.Register(o.Registerer, &f.latency),
		collect.Register(o.Registerer, &f.findings)); err != nil {
		return nil, fmt.Errorf("output: register finaliser metrics: %w", err)
	}
	return f, nil
}

// ConsumeCompletion implements ingest.CompletionConsumer.
func (f *Finaliser) ConsumeCompletion(ctx context.Context, c *ingest.SeriesCompletion) error {
	log := f.o.Log.With().Str("series", c.SeriesInstanceUID).Int("version", c.Version).Str("model", c.Decision.Model).Logger()
	if c.Decision.Ignore {
		return c.Ack(ctx)
	}
	model, ok := f.o.Models[c.Decision.Model]
	if !ok {
		f.series.WithLabelValues("unknown-model").Inc()
		log.Error().Msg("output: series routed to a model this node does not serve; no outputs")
		return c.Ack(ctx)
	}
	res, last, err := f.load(ctx, c, model)
	if err != nil {
		return err
	}
	if len(res.Sources) == 0 {
		f.series.WithLabelValues("no-slices").Inc()
		log.Warn().Int("instances", len(c.Instances)).Msg("output: no scorable slice in the series; no outputs")
		return c.Ack(ctx)
	}
	analyses, err := Analyse(res, model.Findings, f.o.SEG.MaxSegments)
	if err != nil {
		f.series.WithLabelValues("build-failed").Inc()
		log.Error().Err(err).Msg("output: findings not extracted; series dropped")
		return c.Ack(ctx)
	}
	if model.Findings == nil {
		if _, done := f.warned.LoadOrStore(c.Decision.Model, true); !done {
			log.Warn().Msg("output: no finding limits (the model file has no finding calibration: fit it again; or the config sets findings: false); masks are per pixel, about 1 % of every healthy slice is painted")
		}
	}
	var objs, reports []*Object
	var segUIDs, srUIDs []string
	total := 0
	opts := AnalysisOptions{SEG: f.o.SEG, SC: f.o.SC, SR: f.o.SR}
	for _, a := range analyses {
		built, err := BuildAnalysis(a, opts)
		if err != nil {
			f.series.WithLabelValues("build-failed").Inc()
			log.Error().Err(err).Int("stack", a.Stack).Msg("output: outputs not built; series dropped")
			return c.Ack(ctx)
		}
		if built.SEG != nil {
			objs = append(objs, built.SEG)
			segUIDs = append(segUIDs, built.SEG.SOPInstanceUID)
		}
		objs = append(objs, built.SC...)
		if built.SR != nil {
			reports = append(reports, built.SR)
			srUIDs = append(srUIDs, built.SR.SOPInstanceUID)
		}
		total += len(a.Findings)
	}
	dests := c.Decision.Destinations
	srDests := dests
	if f.o.SRDestinations != nil {
		srDests = f.o.SRDestinations(dests)
	}
	for _, q := range []struct {
		objs  []*Object
		dests []string
	}{{objs, dests}, {reports, srDests}} {
		if len(q.dests) == 0 {
			continue
		}
		for _, obj := range q.objs {
			if err := f.o.Queue.Enqueue(ctx, obj, q.dests...); err != nil {
				return fmt.Errorf("output: enqueue %s: %w", obj.SOPInstanceUID, err)
			}
		}
	}
	objs = append(objs, reports...)
	if err := c.Ack(ctx); err != nil {
		return err
	}
	f.series.WithLabelValues("ok").Inc()
	f.latency.Observe(time.Since(last).Seconds())
	if model.Findings != nil {
		f.findings.Observe(float64(total))
	}
	ev := log.Info().Int("slices", len(res.Sources)).Int("stacks", len(analyses)).Int("objects", len(objs)).
		Strs("destinations", dests).Strs("seg", segUIDs).Strs("sr", srUIDs)
	if model.Findings != nil {
		ev = ev.Int("findings", total)
	} else {
		ev = ev.Int("anomalous_slices", anomalousSlices(res))
	}
	ev.Msg("output: series finalised")
	for _, a := range analyses {
		for i, fd := range a.Findings {
			log.Info().Int("stack", a.Stack).Int("finding", fd.ID).Int("segment", a.Segments[i]).Float64("volume_mm3", fd.VolumeMM3).
				Float32("peak", fd.Peak).Float32("mean", fd.Mean).Floats64("centroid_mm", fd.Centroid[:]).
				Int("first_slice", fd.FirstSlice).Int("last_slice", fd.LastSlice).Msg("output: finding")
		}
	}
	return nil
}

// anomalousSlices counts the slices with any pixel in their mask.
func anomalousSlices(res *SeriesResult) int {
	n := 0
	for _, s := range res.Sources {
		if anyTrue(s.Mask) {
			n++
		}
	}
	return n
}

// load gathers the scored slices of a completion, every frame of a
// multi-frame instance as a slice of its own; frames without a result
// (terminated as undecodable) are left out. Frame 0 is looked up first: the
// worker stores an instance's frames in order and stops at the first it
// cannot decode, so an instance without frame 0 has no result at all and its
// header is not read.
func (f *Finaliser) load(ctx context.Context, c *ingest.SeriesCompletion, model ServedModel) (*SeriesResult, time.Time, error) {
	res := &SeriesResult{Model: model.Identity, Version: c.Version, Threshold: model.Threshold}
	var last time.Time
	for _, sop := range c.Instances {
		rec, err := f.o.Results.Get(ctx, c.SeriesInstanceUID, sop, 0)
		if errors.Is(err, inference.ErrNoRecord) {
			continue
		}
		if err != nil {
			return nil, last, err
		}
		hdr, err := f.header(ctx, sop)
		if err != nil {
			return nil, last, err
		}
		frames := 1
		if n, ok := getInt(hdr, "NumberOfFrames"); ok && n > 1 {
			frames = n
		}
		for frame := 0; frame < frames; frame++ {
			if frame > 0 {
				rec, err = f.o.Results.Get(ctx, c.SeriesInstanceUID, sop, frame)
				if errors.Is(err, inference.ErrNoRecord) {
					continue
				}
				if err != nil {
					return nil, last, err
				}
			}
			res.Sources = append(res.Sources, SourceSlice{
				Header: hdr, Frame: frame, Rows: rec.Rows, Cols: rec.Cols, Scores: rec.Scores, Mask: BoolMask(rec.Mask), Display: rec.Display,
			})
			if rec.Scored.After(last) {
				last = rec.Scored
			}
		}
	}
	// The content date comes from the results, so a rebuild is byte-identical.
	res.Created = last
	return res, last, nil
}

func (f *Finaliser) header(ctx context.Context, sop string) (*dicom.Dataset, error) {
	rc, ts, err := f.o.Instances.OpenInstance(ctx, sop)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	// The source's bytes came from a sender: they go through the guarded
	// walk the decoder uses, which refuses a declared length past the end
	// before the parser can allocate it.
	buf := bytes.NewBuffer(ingest.Part10Header("", sop, ts))
	if _, err := buf.ReadFrom(rc); err != nil {
		return nil, fmt.Errorf("output: read source %s: %w", sop, err)
	}
	ds, err := inference.ParseHeader(buf.Bytes())
	if err != nil {
		return nil, fmt.Errorf("output: parse source %s: %w", sop, err)
	}
	return &ds, nil
}

// BoolMask turns a 0/1 byte mask (the scorer's) into the builders' form.
func BoolMask(m []uint8) []bool {
	out := make([]bool, len(m))
	for i, v := range m {
		out[i] = v != 0
	}
	return out
}
