//go:build cuda

package cuda

/*
#cgo LDFLAGS: -lcublas -lcuda
#include <cuda.h>
#include <cublas_v2.h>
*/
import "C"

import (
	"fmt"
	"unsafe"

	"gorgonia.org/cu"
)

// exBLAS is a cuBLAS handle for the mixed-precision GEMMs of the ViT forward
// pass (cublasGemmEx and its strided-batched form), which gorgonia's binding
// does not wrap. It is bound to one stream and used on the device thread only.
type exBLAS struct {
	h C.cublasHandle_t
}

func newExBLAS(stream cu.Stream) (*exBLAS, error) {
	var h C.cublasHandle_t
	if st := C.cublasCreate(&h); st != C.CUBLAS_STATUS_SUCCESS {
		return nil, fmt.Errorf("cuda: cublasCreate: status %d", int(st))
	}
	if st := C.cublasSetStream(h, C.cudaStream_t(unsafe.Pointer(stream.C()))); st != C.CUBLAS_STATUS_SUCCESS {
		C.cublasDestroy(h)
		return nil, fmt.Errorf("cuda: cublasSetStream: status %d", int(st))
	}
	return &exBLAS{h: h}, nil
}

func (b *exBLAS) close() {
	if b != nil && b.h != nil {
		C.cublasDestroy(b.h)
		b.h = nil
	}
}

// gemmType is the storage type of the GEMM inputs and the compute type.
type gemmType struct {
	in      C.cudaDataType
	compute C.cublasComputeType_t
	size    int // bytes per input element
}

func gemmTypeOf(p Precision) gemmType {
	switch p {
	case PrecisionBF16:
		return gemmType{in: C.CUDA_R_16BF, compute: C.CUBLAS_COMPUTE_32F, size: 2}
	case PrecisionTF32:
		return gemmType{in: C.CUDA_R_32F, compute: C.CUBLAS_COMPUTE_32F_FAST_TF32, size: 4}
	}
	return gemmType{in: C.CUDA_R_32F, compute: C.CUBLAS_COMPUTE_32F, size: 4}
}

// rowMajor computes the row-major product c[m,n] = alpha * a[m,k] . b[k,n]
// (all contiguous; a and b of type t.in, c float32) as cuBLAS's column-major
// c^T = b^T . a^T.
func (b *exBLAS) rowMajor(t gemmType, m, n, k int, alpha float32, a, bm, c cu.DevicePtr) error {
	beta := float32(0)
	st := C.cublasGemmEx(b.h, C.CUBLAS_OP_N, C.CUBLAS_OP_N, C.int(n), C.int(m), C.int(k),
		unsafe.Pointer(&alpha), devptr(bm), t.in, C.int(n), devptr(a), t.in, C.int(k),
		unsafe.Pointer(&beta), devptr(c), C.CUDA_R_32F, C.int(n), t.compute, C.CUBLAS_GEMM_DEFAULT)
	if st != C.CUBLAS_STATUS_SUCCESS {
		return fmt.Errorf("cuda: cublasGemmEx %dx%dx%d: status %d", m, n, k, int(st))
	}
	return nil
}

// scores computes, for each of batch pairs, s[t,t] = alpha * q[t,hd] . k[t,hd]^T
// (row-major; consecutive pairs t*hd apart, scores t*t apart). The scores are
// stored in the input type: bf16 halves the attention's memory traffic, as
// PyTorch's bf16 autocast does; the softmax reads them into float.
func (b *exBLAS) scores(ty gemmType, batch, t, hd int, alpha float32, q, k, s cu.DevicePtr) error {
	beta := float32(0)
	st := C.cublasGemmStridedBatchedEx(b.h, C.CUBLAS_OP_T, C.CUBLAS_OP_N, C.int(t), C.int(t), C.int(hd),
		unsafe.Pointer(&alpha), devptr(k), ty.in, C.int(hd), C.longlong(t*hd),
		devptr(q), ty.in, C.int(hd), C.longlong(t*hd),
		unsafe.Pointer(&beta), devptr(s), ty.in, C.int(t), C.longlong(t*t),
		C.int(batch), ty.compute, C.CUBLAS_GEMM_DEFAULT)
	if st != C.CUBLAS_STATUS_SUCCESS {
		return fmt.Errorf("cuda: cublasGemmStridedBatchedEx (scores, %d x %dx%d): status %d", batch, t, t, int(st))
	}
	return nil
}

// context computes, for each of batch pairs, c[t,hd] = p[t,t] . v[t,hd] (row-major).
func (b *exBLAS) context(ty gemmType, batch, t, hd int, p, v, c cu.DevicePtr) error {
	alpha, beta := float32(1), float32(0)
	st := C.cublasGemmStridedBatchedEx(b.h, C.CUBLAS_OP_N, C.CUBLAS_OP_N, C.int(hd), C.int(t), C.int(t),
		unsafe.Pointer(&alpha), devptr(v), ty.in, C.int(hd), C.longlong(t*hd),
		devptr(p), ty.in, C.int(t), C.longlong(t*t),
		unsafe.Pointer(&beta), devptr(c), C.CUDA_R_32F, C.int(hd), C.longlong(t*hd),
		C.int(batch), ty.compute, C.CUBLAS_GEMM_DEFAULT)
	if st != C.CUBLAS_STATUS_SUCCESS {
		return fmt.Errorf("cuda: cublasGemmStridedBatchedEx (context, %d x %dx%d): status %d", batch, t, hd, int(st))
	}
	return nil
}

// devptr passes device address p to C as a pointer. The address is read
// through a pointer to the uintptr because it is not Go memory (vet's
// unsafe.Pointer rules are for Go's heap).
func devptr(p cu.DevicePtr) unsafe.Pointer {
	u := uintptr(p)
	return *(*unsafe.Pointer)(unsafe.Pointer(&u))
}

// pinned is page-locked host memory, so uploads run at full bus speed and
// asynchronously on the stream.
type pinned struct {
	p    unsafe.Pointer
	size int
}

func (h *pinned) ensure(size int) error {
	if size <= h.size {
		return nil
	}
	h.free()
	var p unsafe.Pointer
	if r := C.cuMemAllocHost(&p, C.size_t(size)); r != C.CUDA_SUCCESS {
		return fmt.Errorf("cuda: allocate %d bytes of pinned host memory: error %d", size, int(r))
	}
	h.p, h.size = p, size
	return nil
}

func (h *pinned) free() {
	if h.size > 0 {
		C.cuMemFreeHost(h.p)
		h.p, h.size = nil, 0
	}
}

// floats presents the first n float32s of h as a Go slice.
func (h *pinned) floats(n int) []float32 { return unsafe.Slice((*float32)(h.p), n) }
