package linalg

import "golang.org/x/sys/cpu"

// kern6x16 adds the product of a packed 6 x k panel of A and a packed k x 16
// panel of B to the 6 x 16 tile of C at c (row stride ldc elements).
//
//go:noescape
func kern6x16(k int, a, b, c *float32, ldc int)

// haveKernel reports whether the assembly micro-kernel may run on this CPU.
var haveKernel = cpu.X86.HasAVX2 && cpu.X86.HasFMA
