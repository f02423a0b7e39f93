package inference

import (
	"errors"
	"time"
)

// SliceRecord is what the node keeps of one scored slice until its series is
// finalised: enough to build the SEG (mask) and the SC heat map (scores and
// the windowed source) without running the model again. The inference stage
// (package inference/stage) writes it; the finaliser (package output) reads
// it back through an interface, so neither depends on the other's store.
type SliceRecord struct {
	SOPInstanceUID    string
	SeriesInstanceUID string
	// Frame is the 0-based frame of a multi-frame source.
	Frame      int
	Rows, Cols int
	Scores     []float32
	Mask       []uint8
	Display    []uint8
	// Max and TopMean are the slice scores.
	Max, TopMean float32
	// MaskedPixels counts the anomalous pixels.
	MaskedPixels int
	// Model names the model (config name) that scored the slice.
	Model string
	// Scored is when the slice was scored; the finaliser derives the outputs'
	// content date from it so that a retried build is byte-identical.
	Scored time.Time
	// Timings are the slice's stage durations.
	Timings Timings
}

// ErrNoRecord means a slice has no stored result; a result store's Get wraps
// it, so that a reader can tell a missing slice from a failing store.
var ErrNoRecord = errors.New("inference: no result for slice")
