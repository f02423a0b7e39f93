package cuda

import (
	"errors"
	"fmt"
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

// Values of the inference.device setting.
const (
	DeviceCPU  = "cpu"
	DeviceCUDA = "cuda"
)

// ErrUnavailable is wrapped by Require when device cuda is asked of a build or
// machine without a usable GPU.
var ErrUnavailable = errors.New("cuda: GPU path unavailable")

// Require is the gate for the inference.device setting: nil for cpu (or
// empty); for cuda, nil only when Available, else an error wrapping
// ErrUnavailable that says why. Callers check it once before building a Scorer
// or Stepper, so asking for cuda never falls back to the CPU silently.
func Require(device string) error {
	switch device {
	case "", DeviceCPU:
		return nil
	case DeviceCUDA:
		if ok, why := Available(); !ok {
			return fmt.Errorf("%w: %s", ErrUnavailable, why)
		}
		return nil
	}
	return fmt.Errorf("cuda: device %q must be %s or %s", device, DeviceCPU, DeviceCUDA)
}
