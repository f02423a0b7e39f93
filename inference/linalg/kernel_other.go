//go:build !amd64

package linalg

// kernels is empty where no assembly micro-kernel exists; Sgemm uses gonum.
func kernels() []microKernel { return nil }
