package inference

import (
	"anomalynode/inference/pixel"
	"anomalynode/internal/collect"
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"anomalynode/internal/fault"
	"anomalynode/internal/nice"
	"anomalynode/internal/par"
)

// Backbone is what the engine needs of an embedder (*Embedder implements it).
type Backbone interface {
	// Embed returns unit-length patch tokens of a [b,3,h,w] input.
	Embed(input []float32, b, h, w int) (*Embedding, error)
}

var _ Backbone = (*Embedder)(nil)

// ScoringBackbone is a Backbone that also scores its own patch tokens where
// they are: the GPU embedder hands its device-resident tokens to the GPU
// scorer, so no token crosses the bus. The engine then uses EmbedScore and
// not its Scorer.
type ScoringBackbone interface {
	Backbone
	// EmbedScore returns the patch scores [b*patches] of a [b,3,h,w] input
	// and the number of patches per slice.
	EmbedScore(input []float32, b, h, w int) (scores []float32, patches int, err error)
}

// DefaultTopFraction is the share of highest pixel scores averaged into the
// slice score.
const DefaultTopFraction = 0.01

// EngineOptions configures an Engine.
type EngineOptions struct {
	// Backbone embeds preprocessed slices.
	Backbone Backbone
	// Scorer scores patch tokens.
	Scorer Scorer
	// Preprocessor turns slices into model input.
	Preprocessor *Preprocessor
	// Threshold is the calibrated pixel threshold (mask = score > Threshold).
	Threshold float32
	// Batch is the most slices per model run (default 1).
	Batch int
	// TopFraction is the share of top pixel scores averaged into
	// Result.TopMean (default 0.01).
	TopFraction float64
	// Registerer, when set, receives the per-stage duration histogram.
	Registerer prometheus.Registerer
	// Nice, when above 0, is the niceness of the threads that decode,
	// preprocess, run the model and map (internal/nice), so that work
	// sharing their cores, such as receiving and storing, goes first. The
	// backbone's own threads keep the niceness of the thread that created
	// it: OpenModel creates it at Nice.
	Nice int
}

// Engine is the inference path shared by 'anomalynode score' and the node:
// decode -> preprocess -> embed (batched) -> score -> upsample -> mask.
type Engine struct {
	o       EngineOptions
	stageHx *prometheus.HistogramVec
}

// Input is one unit of work: a DICOM file by path, its bytes, or slices
// already decoded. Exactly one should be set.
type Input struct {
	// Path is a Part-10 file to read.
	Path string
	// Data is a Part-10 file's bytes.
	Data []byte
	// Slices are decoded frames.
	Slices []*pixel.Slice
}

// Timings are the per-slice durations of each stage; batch-level stages
// (decoding a multi-frame file, a model run) are split evenly over their slices.
type Timings struct {
	// Decode is parsing and pixel decoding.
	Decode time.Duration `json:"decode_ns"`
	// Preprocess is VOI, resize, crop and normalisation.
	Preprocess time.Duration `json:"preprocess_ns"`
	// Model is the slice's share of its ONNX Runtime run.
	Model time.Duration `json:"model_ns"`
	// Score is the patch scoring.
	Score time.Duration `json:"score_ns"`
	// Upsample is the map back to source pixels, the mask, the slice scores
	// and the display image.
	Upsample time.Duration `json:"upsample_ns"`
}

// Total is the sum of the stages.
func (t Timings) Total() time.Duration {
	return t.Decode + t.Preprocess + t.Model + t.Score + t.Upsample
}

// Add returns the stage-wise sum.
func (t Timings) Add(u Timings) Timings {
	return Timings{t.Decode + u.Decode, t.Preprocess + u.Preprocess, t.Model + u.Model, t.Score + u.Score, t.Upsample + u.Upsample}
}

// Result is the outcome for one slice (or, with Err set and Slice nil, for an
// input that could not be decoded).
type Result struct {
	// Input is the index of the Input this came from.
	Input int
	// Source is the input's path ("" for bytes or slices).
	Source string
	// Slice is the decoded slice (nil when decoding failed).
	Slice *pixel.Slice
	// Geometry maps the patch grid to the source.
	Geometry Geometry
	// VOI is the VOI policy applied.
	VOI string
	// PatchScores is the [GridRows*GridCols] patch score grid.
	PatchScores []float32
	// Map is the pixel score map [Rows*Cols] at source resolution.
	Map []float32
	// Mask is Map > threshold, 0/1, [Rows*Cols].
	Mask []uint8
	// MaskedPixels counts the ones in Mask.
	MaskedPixels int
	// Max and TopMean are the slice scores: the largest pixel score and the
	// mean of the top TopFraction of pixel scores.
	Max, TopMean float32
	// Display is the source slice after VOI as 8-bit grey at source resolution
	// (what a viewer shows), for heat-map overlays.
	Display []uint8
	// Timings are this slice's stage durations.
	Timings Timings
	// Err is why this input or slice produced no map (decode errors wrap
	// pixel.ErrUnsupported or ErrBadPixelData: quarantine material).
	Err error
}

// NewEngine checks the options and returns an engine.
func NewEngine(o EngineOptions) (*Engine, error) {
	if o.Backbone == nil || o.Scorer == nil || o.Preprocessor == nil {
		return nil, errors.New("inference: engine needs a backbone, a scorer and a preprocessor")
	}
	if o.Batch < 1 {
		o.Batch = 1
	}
	if o.TopFraction <= 0 || o.TopFraction > 1 {
		o.TopFraction = DefaultTopFraction
	}
	e := &Engine{o: o}
	if o.Registerer != nil {
		h := prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "anomalynode_inference_stage_seconds",
			Help:    "Per-slice time spent in each inference stage.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"stage"})
		if err := collect.Register(o.Registerer, &h); err != nil {
			return nil, fmt.Errorf("inference: engine metrics: %w", err)
		}
		e.stageHx = h
	}
	return e, nil
}

// pending is a decoded, preprocessed slice waiting for a model run.
type pending struct {
	res *Result
	pr  *Prepared
}

// Process runs every input through the pipeline and returns one Result per
// decoded slice (in input order, frames in order) plus one per input that
// failed to decode. Slices are batched up to Batch per model run while
// consecutive slices share the input size. The inputs are decoded and
// preprocessed ahead of the model, one goroutine per core, so up to every
// input of one call is held preprocessed at once: callers bound memory by the
// inputs they pass (ScoreSeries' Chunk). It stops early, with ctx's error, when ctx is done.
func (e *Engine) Process(ctx context.Context, inputs []Input) ([]*Result, error) {
	var out []*Result
	var queue []pending
	flush := func() error {
		if len(queue) == 0 {
			return nil
		}
		err := e.runBatch(queue)
		queue = queue[:0]
		return err
	}
	preps := e.prepareAll(ctx, inputs)
	for i, in := range inputs {
		<-preps[i].done
		if err := ctx.Err(); err != nil {
			return out, err
		}
		slices, prs, dec, err := preps[i].slices, preps[i].prs, preps[i].dec, preps[i].err
		if err != nil {
			out = append(out, &Result{Input: i, Source: in.Path, Err: err})
			continue
		}
		for j, s := range slices {
			r := &Result{Input: i, Source: in.Path, Slice: s}
			r.Timings.Decode = dec / time.Duration(len(slices))
			out = append(out, r)
			p := prs[j]
			if p.err != nil {
				r.Err = p.err
				continue
			}
			r.Timings.Preprocess = p.took
			r.Geometry, r.VOI = p.pr.Geometry, p.pr.VOI
			if len(queue) > 0 && !sameInput(queue[0].pr.Geometry, p.pr.Geometry) {
				if err := flush(); err != nil {
					return out, err
				}
			}
			queue = append(queue, pending{res: r, pr: p.pr})
			if len(queue) >= e.o.Batch {
				if err := flush(); err != nil {
					return out, err
				}
			}
		}
	}
	if err := flush(); err != nil {
		return out, err
	}
	return out, nil
}

// prepared is one input decoded and preprocessed; done is closed when it is.
type prepared struct {
	slices []*pixel.Slice
	prs    []prepResult
	dec    time.Duration
	err    error
	done   chan struct{}
}

// prepareAll starts decoding and preprocessing the inputs, one goroutine per
// core, and returns at once: Process takes each input when its done channel
// closes, so the first batch runs on the model while later inputs are still
// being prepared, and a series of single-frame files keeps a fast backbone
// fed. A panic on one input fails that input only.
func (e *Engine) prepareAll(ctx context.Context, inputs []Input) []*prepared {
	out := make([]*prepared, len(inputs))
	for i := range out {
		out[i] = &prepared{done: make(chan struct{})}
	}
	one := func(i int) {
		p := out[i]
		defer close(p.done)
		defer func() {
			if r := recover(); r != nil {
				p.slices, p.prs, p.err = nil, nil, fmt.Errorf("inference: decode input %d: %w", i, &PanicError{Value: r, Stack: debug.Stack()})
			}
		}()
		if ctx.Err() != nil {
			return // Process reports ctx's error
		}
		e.do(func() {
			t0 := time.Now()
			p.slices, p.err = e.decode(inputs[i])
			p.dec = time.Since(t0)
			if p.err == nil {
				p.prs = e.preprocessAll(p.slices)
			}
		})
	}
	// one recovers its own panics, so ForEach never raises one here.
	go par.ForEach(len(inputs), one)
	return out
}

func sameInput(a, b Geometry) bool { return a.Rows == b.Rows && a.Cols == b.Cols }

func (e *Engine) decode(in Input) ([]*pixel.Slice, error) {
	switch {
	case in.Slices != nil:
		return in.Slices, nil
	case in.Data != nil:
		return pixel.Decode(in.Data)
	case in.Path != "":
		return pixel.DecodeFile(in.Path)
	}
	return nil, errors.New("inference: engine: empty input")
}

type prepResult struct {
	pr   *Prepared
	took time.Duration
	err  error
}

// preprocessAll preprocesses the frames of one input, in parallel when there
// are several.
func (e *Engine) preprocessAll(slices []*pixel.Slice) []prepResult {
	out := make([]prepResult, len(slices))
	one := func(i int) {
		// A panic on one frame's goroutine would stop the process: recover
		// it here, where the frame is known.
		defer func() {
			if p := recover(); p != nil {
				out[i] = prepResult{err: fmt.Errorf("inference: preprocess frame %d: %w", i, &PanicError{Value: p, Stack: debug.Stack()})}
			}
		}()
		e.do(func() {
			t0 := time.Now()
			pr, err := e.o.Preprocessor.Preprocess(slices[i])
			out[i] = prepResult{pr: pr, took: time.Since(t0), err: err}
		})
	}
	par.ForEach(len(slices), one)
	return out
}

// embedScore returns the patch scores of a batch, and the model and scoring
// time per slice: the backbone's own EmbedScore when it is a
// ScoringBackbone, else its tokens scored by the engine's Scorer.
func (e *Engine) embedScore(input []float32, b, h, w int) (scores []float32, patches int, model, score time.Duration, err error) {
	t0 := time.Now()
	if sb, ok := e.o.Backbone.(ScoringBackbone); ok {
		scores, patches, err = sb.EmbedScore(input, b, h, w)
		return scores, patches, time.Since(t0) / time.Duration(b), 0, err
	}
	emb, err := e.o.Backbone.Embed(input, b, h, w)
	if err != nil {
		return nil, 0, 0, 0, err
	}
	model = time.Since(t0) / time.Duration(b)
	t1 := time.Now()
	scores = make([]float32, b*emb.Patches)
	for i := range b {
		e.o.Scorer.Score(emb.Slice(i), emb.Patches, scores[i*emb.Patches:(i+1)*emb.Patches])
	}
	return scores, emb.Patches, model, time.Since(t1) / time.Duration(b), nil
}

// runBatch embeds the queued slices in one model run, then scores and maps
// each. A model failure fails the batch's slices (and is returned: it is not a
// property of the data).
func (e *Engine) runBatch(q []pending) error {
	g := q[0].pr.Geometry
	n := 3 * g.Rows * g.Cols
	var input []float32
	if len(q) == 1 {
		input = q[0].pr.Tensor
	} else {
		input = make([]float32, 0, len(q)*n)
		for _, p := range q {
			input = append(input, p.pr.Tensor...)
		}
	}
	var (
		scores       []float32
		patches      int
		model, score time.Duration
		err          error
	)
	e.do(func() { scores, patches, model, score, err = e.embedScore(input, len(q), g.Rows, g.Cols) })
	if err == nil && patches != g.Patches() {
		err = fmt.Errorf("inference: engine: model returned %d patches for a %dx%d grid", patches, g.GridRows, g.GridCols)
	}
	if err != nil {
		for _, p := range q {
			p.res.Err = err
		}
		return err
	}
	// Maps, masks and display pixels per slice, one goroutine per core.
	par.ForEach(len(q), func(i int) {
		r := q[i].res
		r.Timings.Model, r.Timings.Score = model, score
		r.PatchScores = scores[i*patches : (i+1)*patches]
		e.do(func() { e.mapSlice(q[i]) })
	})
	return nil
}

// mapSlice turns a scored slice's patch scores into its map at source
// resolution, its mask, its slice scores and its display pixels.
func (e *Engine) mapSlice(p pending) {
	r := p.res
	t2 := time.Now()
	// The batch shares the model input size, not the source size: two
	// series of different matrix size (or a scout in a series) share a
	// batch, so the map is sized by the slice's own geometry.
	src := p.pr.Geometry.SrcRows * p.pr.Geometry.SrcCols
	r.Map = make([]float32, src)
	Upsample(r.PatchScores, p.pr.Geometry, r.Map)
	r.Mask = make([]uint8, src)
	r.MaskedPixels = Threshold(r.Map, e.o.Threshold, r.Mask)
	r.Max, r.TopMean = TopMean(r.Map, e.o.TopFraction)
	r.Display = make([]uint8, src)
	for k, v := range p.pr.Grey {
		r.Display[k] = uint8(v*255 + 0.5) // v is in [0,1]
	}
	r.Timings.Upsample = time.Since(t2)
	e.observe(r.Timings)
}

// do runs f on a thread at the engine's niceness (inline when it has none).
// A failure to raise it was reported when the model was opened.
func (e *Engine) do(f func()) { _ = nice.Run(e.o.Nice, f) }

func (e *Engine) observe(t Timings) {
	if e.stageHx == nil {
		return
	}
	e.stageHx.WithLabelValues("decode").Observe(t.Decode.Seconds())
	e.stageHx.WithLabelValues("preprocess").Observe(t.Preprocess.Seconds())
	e.stageHx.WithLabelValues("model").Observe(t.Model.Seconds())
	e.stageHx.WithLabelValues("score").Observe(t.Score.Seconds())
	e.stageHx.WithLabelValues("upsample").Observe(t.Upsample.Seconds())
}

// Job is an input queued for Run, carrying its completion callback: the
// callback is the acknowledgement and is called exactly once.
type Job struct {
	// Input is the work.
	Input Input
	// Done receives the job's results (and the model error, if the batch failed).
	Done func(results []*Result, err error)
}

// Run serves jobs until ctx is done or jobs is closed. Each model run takes the
// jobs already queued, up to Batch, so batches form from whichever series are
// waiting without delaying a lone slice. The batch in flight when ctx ends is
// finished and acknowledged; Run then returns nil.
func (e *Engine) Run(ctx context.Context, jobs <-chan Job) error {
	for {
		var batch []Job
		select {
		case <-ctx.Done():
			return nil
		case j, ok := <-jobs:
			if !ok {
				return nil
			}
			batch = append(batch, j)
		}
	drain:
		for len(batch) < e.o.Batch {
			select {
			case j, ok := <-jobs:
				if !ok {
					break drain
				}
				batch = append(batch, j)
			default:
				break drain
			}
		}
		// The in-flight batch finishes even if ctx is cancelled meanwhile.
		e.runJobs(context.WithoutCancel(ctx), batch)
	}
}

// runJobs processes a batch of jobs and calls each Done. When the batch
// fails as a whole (a model error, or a panic anywhere in the pipeline) and
// holds more than one job, each job is run again on its own, so that one
// poison input fails alone and the others are scored.
func (e *Engine) runJobs(ctx context.Context, batch []Job) {
	inputs := make([]Input, len(batch))
	for i, j := range batch {
		inputs[i] = j.Input
	}
	results, err := e.processGuarded(ctx, inputs)
	if err != nil && len(batch) > 1 {
		for _, j := range batch {
			e.runJobs(ctx, []Job{j})
		}
		return
	}
	per := make([][]*Result, len(batch))
	for _, r := range results {
		per[r.Input] = append(per[r.Input], r)
	}
	for i, j := range batch {
		if j.Done != nil {
			if err != nil {
				// Partial results of a failed run are not handed out.
				per[i] = nil
			}
			j.Done(per[i], err)
		}
	}
}

// PanicError is a panic recovered while processing work: a fault of the input
// or of the code, never a reason to stop the node.
type PanicError struct {
	// Value is what was passed to panic.
	Value any
	// Stack is the goroutine's stack at the panic.
	Stack []byte
}

func (p *PanicError) Error() string { return fmt.Sprintf("inference: panic: %v", p.Value) }

// Unwrap makes errors.Is(err, fault.ErrPanic) (and so ingest.ErrPanic) hold,
// as for panics the ingest stage recovers itself.
func (p *PanicError) Unwrap() error { return fault.ErrPanic }

// processGuarded is Process with a panic turned into a *PanicError.
func (e *Engine) processGuarded(ctx context.Context, inputs []Input) (results []*Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			results, err = nil, &PanicError{Value: p, Stack: debug.Stack()}
		}
	}()
	return e.Process(ctx, inputs)
}
