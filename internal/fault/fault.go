// Package fault holds the error markers that cross stage boundaries, so that
// a stage can recognise another's faults without importing it (inference's
// engine marks its recovered panics for ingest's consumers without linking
// ingest and NATS).
package fault

import "errors"

// ErrPanic marks a fault recovered from a panic at a stage boundary.
var ErrPanic = errors.New("panic")
