package cuda

import (
	"io"

	"anomalynode/inference"
)

// Compile-time checks: both builds offer the same API, and a Scorer is an
// inference.Scorer the engine can use unchanged.
var (
	_ inference.Scorer = (*Scorer)(nil)
	_ io.Closer        = (*Scorer)(nil)
	_ io.Closer        = (*Stepper)(nil)
	_ interface {
		ScoreErr(patches []float32, n int, out []float32) error
		Prototypes() int
		OnGPU() bool
	} = (*Scorer)(nil)
	_ interface {
		Stats(p Params, x []float32, n int) (*Stats, error)
		OnGPU() bool
	} = (*Stepper)(nil)
	_ func(*inference.Model, int) (*Scorer, error) = NewScorer
	_ func(int, int, int) (*Stepper, error)        = NewStepper
	_ func() (bool, string)                        = Available
)
