package dpmm

import (
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Data is a set of slices' patch embeddings held in memory: slice i is rows
// Offsets[i] to Offsets[i+1] of the row-major matrix X with D columns.
type Data struct {
	// X holds the embeddings, Rows()*D values.
	X []float32
	// D is the embedding dimension.
	D int
	// Offsets has one entry per slice plus a final one equal to Rows().
	Offsets []int
}

// Slices is the number of slices.
func (d *Data) Slices() int { return max(0, len(d.Offsets)-1) }

// Rows is the number of embeddings.
func (d *Data) Rows() int {
	if len(d.Offsets) == 0 {
		return 0
	}
	return d.Offsets[len(d.Offsets)-1]
}

// Append adds one slice of n rows.
func (d *Data) Append(rows []float32, n int) {
	if len(d.Offsets) == 0 {
		d.Offsets = []int{0}
	}
	d.X = append(d.X, rows[:n*d.D]...)
	d.Offsets = append(d.Offsets, d.Rows()+n)
}

// Validate checks shapes.
func (d *Data) Validate(name string) error {
	if d == nil || d.D < 1 || d.Slices() < 1 {
		return fmt.Errorf("dpmm: %s data is empty", name)
	}
	for i := 1; i < len(d.Offsets); i++ {
		if d.Offsets[i] < d.Offsets[i-1] {
			return fmt.Errorf("dpmm: %s data offsets decrease at slice %d", name, i-1)
		}
	}
	if d.Offsets[0] != 0 || len(d.X) != d.Rows()*d.D {
		return fmt.Errorf("dpmm: %s data has %d values for %d rows of %d", name, len(d.X), d.Rows(), d.D)
	}
	return nil
}

// FitOptions controls the training schedule.
type FitOptions struct {
	// Epochs is the number of passes over the training slices (40).
	Epochs int
	// BatchSlices is the number of slices per EM step (12).
	BatchSlices int
	// Checkpoint is a file written after every epoch; when it exists at start
	// and matches this fit, the fit resumes after its last epoch. Empty: none.
	Checkpoint string
	// Progress, when set, receives a one-line progress bar redrawn with \r.
	Progress io.Writer
	// OnEpoch, when set, is called after every epoch (also resumed ones are
	// not replayed: History holds them).
	OnEpoch func(EpochStats)
}

// EpochStats is what one epoch achieved.
type EpochStats struct {
	// Epoch is 1-based.
	Epoch int `json:"epoch"`
	// ValLogLikelihood is the mean validation log-likelihood per embedding.
	ValLogLikelihood float64 `json:"val_log_likelihood"`
	// TrainLogLikelihood is the mean over the epoch's batches of the batch
	// log-likelihood under the parameters before each step.
	TrainLogLikelihood float64 `json:"train_log_likelihood"`
	// Active counts components with weight > Tau.
	Active int `json:"active_components"`
	// Alpha is the concentration after the epoch.
	Alpha float64 `json:"alpha"`
	// Seconds is the epoch's wall time.
	Seconds float64 `json:"seconds"`
}

// Result is a finished fit.
type Result struct {
	// Best is the mixture after the epoch with the highest validation
	// log-likelihood.
	Best *Mixture
	// BestEpoch is that epoch (1-based).
	BestEpoch int
	// History has one entry per epoch, including those of a resumed run.
	History []EpochStats
	// ResumedFrom is the last epoch read from a checkpoint (0: fresh start).
	ResumedFrom int
}

// ErrCheckpointMismatch is returned when a checkpoint exists but belongs to a
// different fit (configuration or data differ).
var ErrCheckpointMismatch = errors.New("dpmm: checkpoint belongs to a different fit")

// checkpoint is the gob-encoded resumable state.
type checkpoint struct {
	Version     int
	Fingerprint string
	Epoch       int
	Current     *Mixture
	Best        *Mixture
	BestEpoch   int
	BestVal     float64
	History     []EpochStats
}

const checkpointVersion = 1

// fingerprint identifies a fit: configuration, schedule and data shape plus a
// sample of the data, so a checkpoint is never resumed on other inputs.
func fingerprint(cfg Config, opt FitOptions, train, val *Data) string {
	h := 1469598103934665603.0
	sample := func(d *Data) {
		step := max(1, len(d.X)/4096)
		for i := 0; i < len(d.X); i += step {
			h = math.Mod(h*1.000003+float64(d.X[i])*7919, 1e15)
		}
	}
	sample(train)
	sample(val)
	// Epochs is left out: the slice order of an epoch does not depend on it, so
	// an interrupted fit may be resumed with a different epoch count.
	return fmt.Sprintf("%+v|b%d|t%d/%d/%d|v%d/%d|%.6f", cfg, opt.BatchSlices,
		train.Slices(), train.Rows(), train.D, val.Slices(), val.Rows(), h)
}

// Fit runs batched EM: every epoch visits the training slices in a seeded random
// order, BatchSlices at a time, one EM step per batch; after each epoch it scores
// the validation data and keeps the best epoch's mixture. The first batch of the
// first epoch initialises the mixture. The result depends only on the inputs and
// cfg.Seed. When ctx is cancelled Fit returns ctx.Err(); the checkpoint then
// holds the last completed epoch.
func Fit(ctx context.Context, cfg Config, train, val *Data, opt FitOptions) (*Result, error) {
	cfg = cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opt.Epochs == 0 {
		opt.Epochs = 40
	}
	if opt.BatchSlices == 0 {
		opt.BatchSlices = 12
	}
	if opt.Epochs < 1 || opt.BatchSlices < 1 {
		return nil, fmt.Errorf("%w: epochs %d and batch %d must be >= 1", ErrBadConfig, opt.Epochs, opt.BatchSlices)
	}
	if err := train.Validate("training"); err != nil {
		return nil, err
	}
	if err := val.Validate("validation"); err != nil {
		return nil, err
	}
	if val.D != train.D {
		return nil, fmt.Errorf("dpmm: validation dimension %d differs from training %d", val.D, train.D)
	}
	fp := fingerprint(cfg, opt, train, val)
	st := &checkpoint{Version: checkpointVersion, Fingerprint: fp, BestVal: math.Inf(-1)}
	res := &Result{}
	if opt.Checkpoint != "" {
		prev, err := readCheckpoint(opt.Checkpoint)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return nil, err
		case prev.Fingerprint != fp:
			return nil, fmt.Errorf("%w: %s (delete it to start afresh)", ErrCheckpointMismatch, opt.Checkpoint)
		default:
			st = prev
			res.ResumedFrom = st.Epoch
		}
	}
	d := train.D
	slices := train.Slices()
	batches := (slices + opt.BatchSlices - 1) / opt.BatchSlices
	maxRows := 0
	for i := 0; i < slices; i++ {
		maxRows = max(maxRows, train.Offsets[i+1]-train.Offsets[i])
	}
	buf := make([]float32, 0, opt.BatchSlices*maxRows*d)
	mix := st.Current
	for epoch := st.Epoch + 1; epoch <= opt.Epochs; epoch++ {
		start := time.Now()
		perm := rand.New(rand.NewPCG(uint64(cfg.Seed), uint64(epoch))).Perm(slices)
		trainLL := 0.0
		for b := 0; b < batches; b++ {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			buf = buf[:0]
			for _, s := range perm[b*opt.BatchSlices : min(slices, (b+1)*opt.BatchSlices)] {
				buf = append(buf, train.X[train.Offsets[s]*d:train.Offsets[s+1]*d]...)
			}
			n := len(buf) / d
			if n == 0 {
				continue
			}
			if mix == nil {
				var err error
				if mix, err = NewMixture(cfg, buf, n, d); err != nil {
					return nil, err
				}
			}
			ll, err := mix.Step(buf, n)
			if err != nil {
				return nil, err
			}
			trainLL += ll
			if opt.Progress != nil {
				drawProgress(opt.Progress, epoch, opt.Epochs, b+1, batches, start)
			}
		}
		if mix == nil {
			return nil, errors.New("dpmm: training slices hold no embeddings")
		}
		es := EpochStats{Epoch: epoch, TrainLogLikelihood: trainLL / float64(batches),
			ValLogLikelihood: mix.LogLikelihood(val.X, val.Rows(), cfg.Tau) / float64(val.Rows()),
			Active:           mix.Active(cfg.Tau), Alpha: mix.Alpha}
		es.Seconds = time.Since(start).Seconds()
		st.History = append(st.History, es)
		st.Epoch = epoch
		st.Current = mix
		if es.ValLogLikelihood > st.BestVal || st.Best == nil {
			st.BestVal, st.BestEpoch, st.Best = es.ValLogLikelihood, epoch, mix.Clone()
		}
		if opt.Progress != nil {
			fmt.Fprint(opt.Progress, "\r\033[K")
		}
		if opt.Checkpoint != "" {
			if err := writeCheckpoint(opt.Checkpoint, st); err != nil {
				return nil, err
			}
		}
		if opt.OnEpoch != nil {
			opt.OnEpoch(es)
		}
	}
	res.Best, res.BestEpoch, res.History = st.Best, st.BestEpoch, st.History
	return res, nil
}

// Clone returns a deep copy of the mixture's state.
func (m *Mixture) Clone() *Mixture {
	c := *m
	c.Mu = append([]float32(nil), m.Mu...)
	c.S2 = append([]float32(nil), m.S2...)
	c.V = append([]float64(nil), m.V...)
	c.LogPi = append([]float64(nil), m.LogPi...)
	c.R = append([]float64(nil), m.R...)
	c.M = append([]float64(nil), m.M...)
	c.S = append([]float64(nil), m.S...)
	c.scratch = nil
	return &c
}

func drawProgress(w io.Writer, epoch, epochs, b, batches int, start time.Time) {
	const width = 30
	done := width * b / batches
	rate := float64(b) / max(time.Since(start).Seconds(), 1e-9)
	fmt.Fprintf(w, "\repoch %d/%d [%s%s] %d/%d batches %.1f/s", epoch, epochs,
		strings.Repeat("=", done), strings.Repeat(" ", width-done), b, batches, rate)
}

func readCheckpoint(path string) (*checkpoint, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("dpmm: read checkpoint: %w", err)
	}
	var st checkpoint
	if err := gob.NewDecoder(bytes.NewReader(data)).Decode(&st); err != nil {
		return nil, fmt.Errorf("dpmm: decode checkpoint %s: %w", path, err)
	}
	if st.Version != checkpointVersion || st.Current == nil || st.Best == nil {
		return nil, fmt.Errorf("dpmm: checkpoint %s: unsupported version %d or incomplete", path, st.Version)
	}
	return &st, nil
}

// writeCheckpoint writes atomically (temporary file, fsync, rename), so an
// interruption mid-write leaves the previous epoch's checkpoint intact.
func writeCheckpoint(path string, st *checkpoint) error {
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(st); err != nil {
		return fmt.Errorf("dpmm: encode checkpoint: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("dpmm: write checkpoint: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		return fmt.Errorf("dpmm: write checkpoint: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("dpmm: write checkpoint: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("dpmm: write checkpoint: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("dpmm: write checkpoint: %w", err)
	}
	return nil
}
