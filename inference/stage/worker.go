package stage

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"anomalynode/inference"
	"anomalynode/ingest"
	"anomalynode/internal/collect"
)

// Worker is the node's inference stage: it takes routed slices from ingest as
// soon as they are durable, runs them through the inference.Engine of the
// model their rule names (batching across series: each engine run takes
// whatever slices are queued, up to its batch size), stores each slice's result durably and
// only then acknowledges the slice. A slice that cannot be decoded is set
// aside with the reason (it never blocks its series); a model failure, a
// panic or a store failure hands the slice back with a growing delay, and
// sets it aside once it has had its bounded deliveries (ingest.Slice.Fail).
type Worker struct {
	engines map[string]*inference.Engine
	queues  map[string]chan inference.Job
	results *ResultStore
	gate    *ingest.Gate
	log     zerolog.Logger

	scored  *prometheus.CounterVec
	failed  *prometheus.CounterVec
	waiting prometheus.Gauge
	yielded prometheus.Counter
}

var _ ingest.SliceConsumer = (*Worker)(nil)

// WorkerOptions configures a Worker.
type WorkerOptions struct {
	// Engines maps model names (as routing rules name them) to their engines.
	Engines map[string]*inference.Engine
	// Results keeps scored slices until their series is finalised.
	Results *ResultStore
	// Queue is how many slices may wait per model (default 2 x 8).
	Queue int
	// Log receives one line per failed slice.
	Log zerolog.Logger
	// Registerer receives the worker's metrics (optional).
	Registerer prometheus.Registerer
	// Gate, when set, holds a scored slice's writes (results,
	// acknowledgement) while this node's ingest stores instances, for a
	// bounded time (ingest.Gate): receiving comes first.
	Gate *ingest.Gate
}

// NewWorker returns a worker; Run must be running for slices to be processed.
func NewWorker(o WorkerOptions) (*Worker, error) {
	if len(o.Engines) == 0 {
		return nil, errors.New("stage: worker needs at least one model")
	}
	if o.Results == nil {
		return nil, errors.New("stage: worker needs a result store")
	}
	if o.Queue <= 0 {
		o.Queue = 16
	}
	w := &Worker{
		engines: o.Engines,
		queues:  map[string]chan inference.Job{},
		results: o.Results,
		gate:    o.Gate,
		log:     o.Log,
		scored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "anomalynode_slices_scored_total", Help: "Slices scored and stored, by model (every frame of a multi-frame instance counts).",
		}, []string{"model"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "anomalynode_slices_failed_total", Help: "Failed attempts at slices, by model and reason (decode: set aside at once; model, panic, store: redelivered, set aside after the bounded deliveries).",
		}, []string{"model", "reason"}),
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "anomalynode_inference_queue_depth", Help: "Slices waiting for a model run.",
		}),
		yielded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "anomalynode_inference_yield_seconds_total", Help: "Seconds scored slices waited before their writes while instances were being received (receiving comes first).",
		}),
	}
	// Registered first: a second worker on the same registry counts into
	// the collectors the first one registered.
	if err := errors.Join(collect.Register(o.Registerer, &w.scored), collect.Register(o.Registerer, &w.failed),
		collect.Register(o.Registerer, &w.waiting), collect.Register(o.Registerer, &w.yielded)); err != nil {
		return nil, fmt.Errorf("stage: register worker metrics: %w", err)
	}
	for name := range o.Engines {
		w.queues[name] = make(chan inference.Job, o.Queue)
		// Exported at 0 from the start, so a rate or an alert has its series.
		w.scored.WithLabelValues(name)
		for _, reason := range []string{"decode", "model", "panic", "store"} {
			w.failed.WithLabelValues(name, reason)
		}
	}
	return w, nil
}

// Run runs every model's engine until ctx is done; the batch in flight then
// finishes and is acknowledged before Run returns.
func (w *Worker) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for name, e := range w.engines {
		wg.Add(1)
		go func(e *inference.Engine, q chan inference.Job) {
			defer wg.Done()
			_ = e.Run(ctx, q)
		}(e, w.queues[name])
	}
	wg.Wait()
	return nil
}

// ConsumeSlice implements ingest.SliceConsumer: it reads the stored instance
// and queues it for its model; the acknowledgement happens once the result
// is stored.
func (w *Worker) ConsumeSlice(ctx context.Context, sl *ingest.Slice) error {
	model := sl.Decision.Model
	q, ok := w.queues[model]
	if !ok {
		w.failed.WithLabelValues(model, "unknown-model").Inc()
		w.log.Error().Str("sop", sl.SOPInstanceUID).Str("series", sl.SeriesInstanceUID).Str("model", model).
			Msg("inference: routed to a model this node does not serve; slice set aside")
		return sl.DeadLetter(ctx, "unknown model "+model)
	}
	data, err := sl.ReadPart10(ctx)
	if err != nil {
		return fmt.Errorf("stage: read %s: %w", sl.SOPInstanceUID, err)
	}
	// The slice waits in the model's queue and batch: keep it ours until
	// finish answers it, so a short ack_wait never redelivers live work.
	sl.Hold()
	job := inference.Job{Input: inference.Input{Data: data}, Done: func(results []*inference.Result, err error) {
		w.waiting.Dec()
		w.finish(context.WithoutCancel(ctx), sl, model, results, err)
	}}
	w.waiting.Inc()
	select {
	case q <- job:
		return nil
	case <-ctx.Done():
		w.waiting.Dec()
		return ctx.Err()
	}
}

// finish stores a slice's results and acknowledges it; it runs on the engine's
// goroutine, so it must not block for long.
func (w *Worker) finish(ctx context.Context, sl *ingest.Slice, model string, results []*inference.Result, err error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	log := w.log.With().Str("sop", sl.SOPInstanceUID).Str("series", sl.SeriesInstanceUID).Str("model", model).
		Int("delivery", sl.Delivery).Logger()
	// fail hands the slice back with a growing delay, or sets it aside once
	// it has had its bounded deliveries: one poison slice never stops the
	// node or the slices behind it.
	fail := func(reason string, err error) {
		w.failed.WithLabelValues(model, reason).Inc()
		var pe *inference.PanicError
		if errors.As(err, &pe) {
			log.Error().Err(err).Str("stack", string(pe.Stack)).Msg("inference: slice processing panicked")
		} else {
			log.Error().Err(err).Msgf("inference: %s failed", reason)
		}
		if ferr := sl.Fail(ctx, err); ferr != nil {
			log.Error().Err(ferr).Msg("inference: failed slice not handed back; it is redelivered after ack_wait")
		}
	}
	defer func() {
		if p := recover(); p != nil {
			fail("panic", fmt.Errorf("stage: storing results: %w", &inference.PanicError{Value: p, Stack: debug.Stack()}))
		}
	}()
	if err != nil {
		reason := "model"
		if errors.As(err, new(*inference.PanicError)) {
			reason = "panic"
		}
		fail(reason, err)
		return
	}
	// Receiving comes first: the writes below wait while instances are
	// being stored (for a bounded time).
	if d := w.gate.Wait(ctx); d > 0 {
		w.yielded.Add(d.Seconds())
	}
	now := time.Now().UTC()
	for _, r := range results {
		if r.Err != nil || r.Slice == nil {
			w.failed.WithLabelValues(model, "decode").Inc()
			reason := "no image"
			if r.Err != nil {
				reason = r.Err.Error()
			}
			log.Warn().Str("reason", reason).Msg("inference: slice cannot be decoded; set aside (its series completes without it)")
			if err := sl.DeadLetter(ctx, reason); err != nil {
				log.Error().Err(err).Msg("inference: terminate slice")
			}
			return
		}
		rec := &inference.SliceRecord{
			SOPInstanceUID: sl.SOPInstanceUID, SeriesInstanceUID: sl.SeriesInstanceUID,
			Frame: r.Slice.Frame, Rows: r.Slice.Rows, Cols: r.Slice.Cols,
			Scores: r.Map, Mask: r.Mask, Display: r.Display,
			Max: r.Max, TopMean: r.TopMean, MaskedPixels: r.MaskedPixels,
			Model: model, Scored: now, Timings: r.Timings,
		}
		if err := w.results.Put(ctx, rec); err != nil {
			fail("store", err)
			return
		}
	}
	if err := sl.Ack(ctx); err != nil {
		// The results are stored but the slice is not recorded as done in
		// its series (a NATS server failing over can lose the answer): hand
		// it back now rather than after ack_wait, so its series is not held
		// open. It is re-scored (same results), or dropped as already done
		// if the record was written after all; like any store failure it is
		// set aside after its bounded deliveries.
		fail("store", fmt.Errorf("stage: results stored, slice not acknowledged: %w", err))
		return
	}
	// A multi-frame instance is as many slices as it has frames, as in its
	// outputs (a SEG frame and a heat map each).
	w.scored.WithLabelValues(model).Add(float64(len(results)))
	log.Debug().Int("frames", len(results)).Msg("inference: slice scored")
}
