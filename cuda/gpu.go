//go:build cuda

package cuda

//go:generate go run -tags cuda ./internal/genptx kernels.cu kernels_ptx.go

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"unsafe"

	"gonum.org/v1/gonum/blas"
	"gorgonia.org/cu"
	cublas "gorgonia.org/cu/blas"

	"anomalynode/inference"
	"anomalynode/inference/dpmm"
)

// Available reports whether a CUDA device is present, naming it, or why not.
// gorgonia.org/cu initialises the driver when the program starts and exits the
// process when that fails, so a binary built with the tag only reaches this
// on a machine with a working NVIDIA driver.
func Available() (bool, string) {
	n, err := cu.NumDevices()
	if err != nil {
		return false, fmt.Sprintf("cuda: count devices: %v", err)
	}
	if n == 0 {
		return false, "cuda: the driver reports no CUDA device"
	}
	dev, err := cu.GetDevice(0)
	if err != nil {
		return false, fmt.Sprintf("cuda: device 0: %v", err)
	}
	name, _ := dev.Name()
	maj, _ := dev.Attribute(cu.ComputeCapabilityMajor)
	mnr, _ := dev.Attribute(cu.ComputeCapabilityMinor)
	return true, fmt.Sprintf("%d device(s); device 0: %s (compute %d.%d), driver API %d", n, name, maj, mnr, cu.Version())
}

// threads is the block size of the row kernels (kernels.cu's BLOCK).
const threads = 256

// ErrClosed is returned by a Scorer or Stepper used after Close.
var ErrClosed = errors.New("cuda: closed")

// device owns one CUDA context, the kernels and a cuBLAS handle. A CUDA
// context is current on one OS thread, so all device work runs on a goroutine
// locked to its thread and callers hand it closures; this also serialises
// concurrent callers.
type device struct {
	work chan func()
	done chan struct{}

	mu     sync.Mutex
	closed bool

	ctx                        cu.CUContext
	mod                        cu.Module
	blas                       *cublas.Standard
	rowMax, buildZ, respKernel cu.Function
	bufs                       []*buffer
}

func openDevice(ordinal int) (*device, error) {
	d := &device{work: make(chan func()), done: make(chan struct{})}
	errc := make(chan error, 1)
	go d.loop(ordinal, errc)
	if err := <-errc; err != nil {
		return nil, err
	}
	return d, nil
}

func (d *device) loop(ordinal int, errc chan<- error) {
	defer close(d.done)
	// The thread stays locked for the goroutine's life: it holds the context.
	runtime.LockOSThread()
	defer d.release()
	if err := d.init(ordinal); err != nil {
		errc <- err
		return
	}
	errc <- nil
	for f := range d.work {
		f()
	}
}

func (d *device) init(ordinal int) error {
	n, err := cu.NumDevices()
	if err != nil {
		return fmt.Errorf("cuda: count devices: %w", err)
	}
	if ordinal < 0 || ordinal >= n {
		return fmt.Errorf("cuda: device %d requested, %d present", ordinal, n)
	}
	dev, err := cu.GetDevice(ordinal)
	if err != nil {
		return fmt.Errorf("cuda: device %d: %w", ordinal, err)
	}
	if d.ctx, err = dev.MakeContext(cu.SchedAuto); err != nil {
		return fmt.Errorf("cuda: create context: %w", err)
	}
	if d.mod, err = cu.LoadData(kernelsPTX); err != nil {
		return fmt.Errorf("cuda: load kernels: %w", err)
	}
	for name, fn := range map[string]*cu.Function{"rowMaxScore": &d.rowMax, "buildZ": &d.buildZ, "responsibilities": &d.respKernel} {
		if *fn, err = d.mod.Function(name); err != nil {
			return fmt.Errorf("cuda: kernel %s: %w", name, err)
		}
	}
	b := &cublas.Standard{}
	if err := b.Init(); err != nil {
		return fmt.Errorf("cuda: cublas: %w", err)
	}
	d.blas = b
	return nil
}

// release frees everything init and the buffers took, on the device thread.
func (d *device) release() {
	for _, b := range d.bufs {
		b.free()
	}
	if d.blas != nil {
		d.blas.Close()
	}
	var none cu.Module
	if d.mod != none {
		d.mod.Unload()
	}
	var noCtx cu.CUContext
	if d.ctx != noCtx {
		d.ctx.Destroy()
	}
}

// do runs f on the device thread and returns its error.
func (d *device) do(f func() error) error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return ErrClosed
	}
	errc := make(chan error, 1)
	d.work <- func() { errc <- f() }
	d.mu.Unlock()
	return <-errc
}

func (d *device) close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	close(d.work)
	d.mu.Unlock()
	<-d.done
	return nil
}

// buffer is device memory of float32 that grows on demand.
type buffer struct {
	p   cu.DevicePtr
	cap int
}

func (d *device) newBuffer() *buffer {
	b := &buffer{}
	d.bufs = append(d.bufs, b)
	return b
}

// ensure makes room for n floats (device thread only).
func (b *buffer) ensure(n int) error {
	if n <= b.cap {
		return nil
	}
	b.free()
	p, err := cu.MemAlloc(int64(n) * 4)
	if err != nil {
		return fmt.Errorf("cuda: allocate %d bytes: %w", n*4, err)
	}
	b.p, b.cap = p, n
	return nil
}

func (b *buffer) free() {
	if b.cap > 0 {
		cu.MemFree(b.p)
		b.p, b.cap = 0, 0
	}
}

func (b *buffer) upload(src []float32) error {
	if len(src) == 0 {
		return nil
	}
	if err := b.ensure(len(src)); err != nil {
		return err
	}
	if err := cu.MemcpyHtoD(b.p, unsafe.Pointer(&src[0]), int64(len(src))*4); err != nil {
		return fmt.Errorf("cuda: copy to device: %w", err)
	}
	return nil
}

func (b *buffer) download(dst []float32) error {
	if len(dst) == 0 {
		return nil
	}
	if err := cu.MemcpyDtoH(unsafe.Pointer(&dst[0]), b.p, int64(len(dst))*4); err != nil {
		return fmt.Errorf("cuda: copy from device: %w", err)
	}
	return nil
}

// slice presents device memory as the []float32 gorgonia's cuBLAS binding
// takes: it passes &s[0] to cuBLAS unchanged and never dereferences it. The
// address is read through a pointer to the uintptr because it is not Go
// memory (the garbage collector ignores addresses outside its heap).
func (b *buffer) slice(n int) []float32 {
	u := uintptr(b.p)
	return unsafe.Slice((*float32)(*(*unsafe.Pointer)(unsafe.Pointer(&u))), n)
}

// gemm runs c (cuBLAS's column-major convention, see plan.go) on the
// buffers (device thread only).
func (d *device) gemm(c gemmCall, a, b, out *buffer) error {
	op := func(t bool) blas.Transpose {
		if t {
			return blas.Trans
		}
		return blas.NoTrans
	}
	// Sizes of the stored column-major arrays, for the binding's slices.
	acols, bcols := c.k, c.n
	if c.tA {
		acols = c.m
	}
	if c.tB {
		bcols = c.k
	}
	d.blas.Sgemm(op(c.tA), op(c.tB), c.m, c.n, c.k, c.alpha, a.slice(c.lda*acols), c.lda, b.slice(c.ldb*bcols), c.ldb, 0, out.slice(c.ldc*c.n), c.ldc)
	if err := d.blas.Err(); err != nil {
		return fmt.Errorf("cuda: cublasSgemm: %w", err)
	}
	return nil
}

// launch runs fn on grid blocks of threads threads (device thread only). Every
// argument is passed as 8 bytes (device pointers and long long in kernels.cu).
func (d *device) launch(fn cu.Function, grid int, args ...uint64) error {
	params := make([]unsafe.Pointer, len(args))
	for i := range args {
		params[i] = unsafe.Pointer(&args[i])
	}
	if err := fn.Launch(grid, 1, 1, threads, 1, 1, 0, cu.NoStream, params); err != nil {
		return fmt.Errorf("cuda: launch: %w", err)
	}
	return nil
}

// Scorer scores patch embeddings against a DPMM model's prototypes on a GPU:
// the unit-length prototype matrix stays on the device, each batch of patches
// is one cuBLAS GEMM and a row-max kernel.
type Scorer struct {
	dev *device
	d   int
	p   *prototypes
	q   *buffer
}

// prototypes is the device side of DPMM scoring: the m unit prototypes and
// the scratch of one block of rows. Scorer and ScoringEmbedder share it.
type prototypes struct {
	protos, c, out *buffer
	m              int
}

// newPrototypes uploads m unit prototypes (rows of the token width) to dev
// (device thread).
func newPrototypes(dev *device, protos []float32, m int) (*prototypes, error) {
	p := &prototypes{protos: dev.newBuffer(), c: dev.newBuffer(), out: dev.newBuffer(), m: m}
	return p, p.protos.upload(protos)
}

// score writes to dst[i] (i < n) the score of row i of width d: 1 - its
// largest cosine to the prototypes. rows(q0, qn) hands over the device
// buffer that holds rows q0 .. q0+qn-1 (device thread).
func (p *prototypes) score(dev *device, n, d int, rows func(q0, qn int) (*buffer, error), dst []float32) error {
	for q0 := 0; q0 < n; q0 += scoreBlock {
		qn := min(scoreBlock, n-q0)
		q, err := rows(q0, qn)
		if err != nil {
			return err
		}
		if err := p.c.ensure(qn * p.m); err != nil {
			return err
		}
		if err := p.out.ensure(qn); err != nil {
			return err
		}
		if err := dev.gemm(scoreGEMM(p.m, qn, d), p.protos, q, p.c); err != nil {
			return err
		}
		if err := dev.launch(dev.rowMax, qn, uint64(p.c.p), uint64(qn), uint64(p.m), uint64(p.out.p)); err != nil {
			return err
		}
		if err := p.out.download(dst[q0 : q0+qn]); err != nil {
			return err
		}
	}
	return nil
}

// scoreBlock bounds the rows scored per GEMM, so the product (scoreBlock x
// prototypes floats) stays small whatever the batch.
const scoreBlock = 16384

// NewScorer uploads the prototypes of m (as inference.NewDPMMScorer selects
// and normalises them) to GPU device (an ordinal).
func NewScorer(m *inference.Model, device int) (*Scorer, error) {
	protos, idx, err := m.UnitPrototypes()
	if err != nil {
		return nil, err
	}
	dev, err := openDevice(device)
	if err != nil {
		return nil, err
	}
	s := &Scorer{dev: dev, d: m.D}
	err = dev.do(func() (err error) {
		s.q = dev.newBuffer()
		s.p, err = newPrototypes(dev, protos, len(idx))
		return err
	})
	if err != nil {
		dev.close()
		return nil, err
	}
	return s, nil
}

// Score implements inference.Scorer. A device failure panics (the interface
// has no error); ScoreErr returns it instead.
func (s *Scorer) Score(patches []float32, n int, out []float32) {
	if err := s.ScoreErr(patches, n, out); err != nil {
		panic(err)
	}
}

// ScoreErr is Score returning errors.
func (s *Scorer) ScoreErr(patches []float32, n int, out []float32) error {
	if n < 0 || len(patches) < n*s.d || len(out) < n {
		return fmt.Errorf("%w: score: %d values / %d outputs for n=%d, d=%d", ErrShape, len(patches), len(out), n, s.d)
	}
	if n == 0 {
		return nil
	}
	return s.dev.do(func() error {
		return s.p.score(s.dev, n, s.d, func(q0, qn int) (*buffer, error) {
			return s.q, s.q.upload(patches[q0*s.d : (q0+qn)*s.d])
		}, out)
	})
}

// Prototypes returns the number of prototypes scored against.
func (s *Scorer) Prototypes() int { return s.p.m }

// OnGPU reports whether this scorer runs on a GPU.
func (s *Scorer) OnGPU() bool { return true }

// Close frees the device memory and the context.
func (s *Scorer) Close() error { return s.dev.close() }

// Stepper runs EM steps of a dpmm.Mixture with the data-sized work on a GPU:
// the E-step GEMM, the log-sum-exp responsibilities and the statistics GEMM.
// The K x D parameter updates stay on the host (dpmm.Mixture.Apply).
type Stepper struct {
	dev  *device
	k, d int

	x, z, w, c, l, g, ll *buffer
	hw, hc, hg, hll      []float32
}

// NewStepper prepares EM steps for K components in D dimensions on GPU device
// (an ordinal).
func NewStepper(k, d, device int) (*Stepper, error) {
	if k < 1 || d < 1 {
		return nil, fmt.Errorf("%w: K=%d, D=%d", ErrShape, k, d)
	}
	dev, err := openDevice(device)
	if err != nil {
		return nil, err
	}
	s := &Stepper{dev: dev, k: k, d: d,
		hw: make([]float32, k*2*d), hc: make([]float32, k), hg: make([]float32, k*(2*d+1))}
	dev.do(func() error {
		for _, b := range []**buffer{&s.x, &s.z, &s.w, &s.c, &s.l, &s.g, &s.ll} {
			*b = dev.newBuffer()
		}
		return nil
	})
	return s, nil
}

// Stats computes the statistics of one EM step of the batch x (n rows of D)
// under p on the GPU.
func (s *Stepper) Stats(p Params, x []float32, n int) (*Stats, error) {
	if err := p.check(x, n); err != nil {
		return nil, err
	}
	if p.K != s.k || p.D != s.d {
		return nil, fmt.Errorf("%w: stepper for K=%d, D=%d given K=%d, D=%d", ErrShape, s.k, s.d, p.K, p.D)
	}
	k, d := s.k, s.d
	w2 := zWidth(d)
	p.mixture().EStepWeights(s.hw, s.hc)
	if cap(s.hll) < n {
		s.hll = make([]float32, n)
	}
	hll := s.hll[:n]
	err := s.dev.do(func() error {
		steps := []func() error{
			func() error { return s.w.upload(s.hw) },
			func() error { return s.c.upload(s.hc) },
			func() error { return s.x.upload(x[:n*d]) },
			func() error { return s.z.ensure(n * w2) },
			func() error { return s.l.ensure(n * k) },
			func() error { return s.g.ensure(k * w2) },
			func() error { return s.ll.ensure(n) },
			func() error {
				grid := min((n*d+threads-1)/threads, 4096)
				return s.dev.launch(s.dev.buildZ, grid, uint64(s.x.p), uint64(n), uint64(d), uint64(s.z.p))
			},
			func() error { return s.dev.gemm(eStepGEMM(k, n, d), s.w, s.z, s.l) },
			func() error {
				return s.dev.launch(s.dev.respKernel, n, uint64(s.l.p), uint64(s.c.p), uint64(n), uint64(k), uint64(s.ll.p))
			},
			func() error { return s.dev.gemm(statsGEMM(k, n, d), s.z, s.l, s.g) },
			func() error { return s.g.download(s.hg) },
			func() error { return s.ll.download(hll) },
		}
		for _, f := range steps {
			if err := f(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return statsFromDevice(s.hg, hll, k, d, n), nil
}

// Step runs one EM step of m on the batch x (n rows of D) and returns the
// batch's mean log-likelihood, as m.Step does.
func (s *Stepper) Step(m *dpmm.Mixture, x []float32, n int) (float64, error) {
	st, err := s.Stats(ParamsOf(m), x, n)
	if err != nil {
		return 0, err
	}
	return m.Apply(st)
}

// OnGPU reports whether this stepper runs on a GPU.
func (s *Stepper) OnGPU() bool { return true }

// Close frees the device memory and the context.
func (s *Stepper) Close() error { return s.dev.close() }
