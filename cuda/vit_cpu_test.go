//go:build !cuda

package cuda

import (
	"os"
	"testing"
)

// Without the tag the Embedder is the CPU forward pass, checked in fp32.
func embedPrecisions() []Precision { return []Precision{PrecisionFP32} }

func needEmbedDevice(testing.TB) {}

func makeTempDir() (string, error) { return os.MkdirTemp("", "cuda-vit-test") }
