//go:build !amd64

package linalg

// haveKernel is false where no assembly micro-kernel exists; Sgemm uses gonum.
var haveKernel = false

func kern6x16(k int, a, b, c *float32, ldc int) {
	panic("linalg: no micro-kernel on this architecture")
}
