// Package cuda runs DPMM scoring and EM fitting on an NVIDIA GPU (build tag
// cuda, gorgonia.org/cu); without the tag the same API is backed by the CPU
// code, so no caller branches on the build.
package cuda
