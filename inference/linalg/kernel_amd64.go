package linalg

import "golang.org/x/sys/cpu"

// kern6x16 adds the product of a packed 6 x k panel of A and a packed k x 16
// panel of B to the 6 x 16 tile of C at c (row stride ldc elements). AVX2+FMA.
//
//go:noescape
func kern6x16(k int, a, b, c *float32, ldc int)

// kern12x32 is the 12 x 32 AVX-512F version of kern6x16.
//
//go:noescape
func kern12x32(k int, a, b, c *float32, ldc int)

var (
	avx2Kernel   = microKernel{name: "avx2-6x16", mr: 6, nr: 16, fn: kern6x16}
	avx512Kernel = microKernel{name: "avx512-12x32", mr: 12, nr: 32, fn: kern12x32}
)

// kernels lists the micro-kernels this CPU can run, preferred first.
func kernels() []microKernel {
	var ks []microKernel
	if cpu.X86.HasAVX512F {
		ks = append(ks, avx512Kernel)
	}
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		ks = append(ks, avx2Kernel)
	}
	return ks
}
