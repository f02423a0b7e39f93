package output

import (
	"anomalynode/internal/collect"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/suyashkumar/dicom"

	"anomalynode/inference"
	"anomalynode/ingest"
)

// InstanceOpener reads a stored source instance (ingest.Service has it).
type InstanceOpener interface {
	// OpenInstance returns the bare data set of an instance and its transfer syntax.
	OpenInstance(ctx context.Context, sopInstanceUID string) (io.ReadCloser, string, error)
}

// ServedModel is what the finaliser needs to know of a model.
type ServedModel struct {
	Identity  ModelIdentity
	Threshold float32
}

// FinaliserOptions configures a Finaliser.
type FinaliserOptions struct {
	// Results holds the scored slices.
	Results *inference.ResultStore
	// Instances reads the source instances (their headers).
	Instances InstanceOpener
	// Queue receives the built objects for delivery.
	Queue *Queue
	// Models maps model names (as routing rules name them) to their identity.
	Models map[string]ServedModel
	SEG    SEGOptions
	SC     SCOptions
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

	series  *prometheus.CounterVec
	latency prometheus.Histogram
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
	}
	if o.Registerer != nil {
		for _, c := range []prometheus.Collector{f.series, f.latency} {
			if _, err := collect.Register(o.Registerer, c); err != nil {
				return nil, fmt.Errorf("output: register finaliser metrics: %w", err)
			}
		}
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
	seg, err := BuildSEG(res, f.o.SEG)
	if err != nil {
		f.series.WithLabelValues("build-failed").Inc()
		log.Error().Err(err).Msg("output: SEG not built; series dropped")
		return c.Ack(ctx)
	}
	scs, err := BuildSC(res, f.o.SC)
	if err != nil {
		f.series.WithLabelValues("build-failed").Inc()
		log.Error().Err(err).Msg("output: SC not built; series dropped")
		return c.Ack(ctx)
	}
	objs := append([]*Object{seg}, scs...)
	dests := c.Decision.Destinations
	if len(dests) > 0 {
		for _, obj := range objs {
			if err := f.o.Queue.Enqueue(ctx, obj, dests...); err != nil {
				return fmt.Errorf("output: enqueue %s: %w", obj.SOPInstanceUID, err)
			}
		}
	}
	if err := c.Ack(ctx); err != nil {
		return err
	}
	anomalous := 0
	for _, s := range res.Sources {
		for _, m := range s.Mask {
			if m {
				anomalous++
				break
			}
		}
	}
	f.series.WithLabelValues("ok").Inc()
	f.latency.Observe(time.Since(last).Seconds())
	log.Info().Int("slices", len(res.Sources)).Int("anomalous_slices", anomalous).Int("objects", len(objs)).
		Strs("destinations", dests).Str("seg", seg.SOPInstanceUID).Msg("output: series finalised")
	return nil
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
	r := io.MultiReader(bytes.NewReader(ingest.Part10Header("", sop, ts)), rc)
	ds, err := dicom.ParseUntilEOF(r, nil, dicom.SkipPixelData(), dicom.AllowMissingMetaElementGroupLength())
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
