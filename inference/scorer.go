package inference

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"

	"anomalynode/inference/linalg"
)

// Scorer turns patch embeddings into patch anomaly scores.
type Scorer interface {
	// Score writes to out[i] (i < n) the anomaly score of the unit-length patch
	// vector patches[i*D:(i+1)*D]: 1 - the largest cosine similarity to the
	// scorer's reference vectors. Safe for concurrent use.
	Score(patches []float32, n int, out []float32)
}

// Compile-time checks that every scorer satisfies Scorer.
var (
	_ Scorer = (*DPMMScorer)(nil)
	_ Scorer = (*KNNScorer)(nil)
	_ Scorer = (*CoresetScorer)(nil)
)

// Block sizes of the blocked cosine-max product: a query block times a reference
// block is one GEMM whose result (at most 16 MiB) stays bounded whatever the
// memory bank's size.
const (
	queryBlock = 1024
	refBlock   = 4096
)

// cosineMax holds L2-normalised reference vectors and scores queries against them.
type cosineMax struct {
	refs []float32 // [m, d] row-major, unit rows
	m, d int
	pool sync.Pool // *[]float32 scratch of queryBlock*min(m, refBlock)
}

func newCosineMax(refs []float32, m, d int) *cosineMax {
	c := &cosineMax{refs: refs, m: m, d: d}
	cols := min(m, refBlock)
	c.pool.New = func() any {
		s := make([]float32, queryBlock*cols)
		return &s
	}
	return c
}

// score computes out[i] = 1 - max_j <q_i, r_j> with one GEMM per (query block,
// reference block) and a running row max.
func (c *cosineMax) score(q []float32, n int, out []float32) {
	if len(q) < n*c.d || len(out) < n {
		panic(fmt.Sprintf("inference: Score: %d values / %d outputs for n=%d, d=%d", len(q), len(out), n, c.d))
	}
	sp := c.pool.Get().(*[]float32)
	defer c.pool.Put(sp)
	scratch := *sp
	best := out[:n]
	for i := range best {
		best[i] = float32(math.Inf(-1))
	}
	for q0 := 0; q0 < n; q0 += queryBlock {
		qn := min(queryBlock, n-q0)
		for r0 := 0; r0 < c.m; r0 += refBlock {
			rn := min(refBlock, c.m-r0)
			prod := scratch[:qn*rn]
			linalg.Sgemm(false, true, qn, rn, c.d, 1, q[q0*c.d:], c.d, c.refs[r0*c.d:], c.d, 0, prod, rn)
			for i := 0; i < qn; i++ {
				row := prod[i*rn : (i+1)*rn]
				mx := best[q0+i]
				for _, v := range row {
					if v > mx {
						mx = v
					}
				}
				best[q0+i] = mx
			}
		}
	}
	for i, v := range best {
		out[i] = 1 - v
	}
}

// normaliseRows scales each d-vector row of x to unit length (zero rows stay zero).
func normaliseRows(x []float32, d int) {
	for r := 0; r+d <= len(x); r += d {
		row := x[r : r+d]
		var s float64
		for _, v := range row {
			s += float64(v) * float64(v)
		}
		if s == 0 {
			continue
		}
		inv := float32(1 / math.Sqrt(s))
		for i := range row {
			row[i] *= inv
		}
	}
}

// DPMMScorer scores patches against a fitted model's prototypes: the means of
// the components with weight above tau, normalised once at construction.
type DPMMScorer struct {
	cm *cosineMax
	// Index maps a prototype row to its component index in the model.
	Index []int
}

// NewDPMMScorer builds the scorer of a model with the model's Tau (DefaultTau
// when unset).
func NewDPMMScorer(m *Model) (*DPMMScorer, error) {
	protos, idx, err := m.UnitPrototypes()
	if err != nil {
		return nil, err
	}
	return &DPMMScorer{cm: newCosineMax(protos, len(idx), m.D), Index: idx}, nil
}

// UnitPrototypes returns the prototypes a DPMMScorer scores against: the means
// of the components with weight above the model's Tau (DefaultTau when unset),
// each scaled to unit length, row-major, with their component indices. Every
// scorer of the model (the GPU's too) selects and normalises them here.
func (m *Model) UnitPrototypes() ([]float32, []int, error) {
	tau := m.Meta.Tau
	if tau <= 0 {
		tau = DefaultTau
	}
	protos, idx := m.Prototypes(tau)
	if len(idx) == 0 {
		return nil, nil, fmt.Errorf("inference: model has no component with weight > %g", tau)
	}
	normaliseRows(protos, m.D)
	return protos, idx, nil
}

// Score implements Scorer.
func (s *DPMMScorer) Score(patches []float32, n int, out []float32) { s.cm.score(patches, n, out) }

// Prototypes returns the number of prototypes scored against.
func (s *DPMMScorer) Prototypes() int { return s.cm.m }

// Dim is the embedding dimension.
func (s *DPMMScorer) Dim() int { return s.cm.d }

// KNNScorer is the full memory bank baseline (AnomalyDINO "full-shot"): the score
// is 1 - the cosine similarity of the nearest normal patch.
type KNNScorer struct {
	cm *cosineMax
}

// NewKNNScorer keeps bank ([N, d] row-major normal patch features) and normalises
// its rows in place.
func NewKNNScorer(bank []float32, d int) (*KNNScorer, error) {
	if d < 1 || len(bank) == 0 || len(bank)%d != 0 {
		return nil, fmt.Errorf("inference: knn: bank of %d values is not [N, %d]", len(bank), d)
	}
	normaliseRows(bank, d)
	return &KNNScorer{cm: newCosineMax(bank, len(bank)/d, d)}, nil
}

// Score implements Scorer.
func (s *KNNScorer) Score(patches []float32, n int, out []float32) { s.cm.score(patches, n, out) }

// Size is the number of vectors in the memory bank.
func (s *KNNScorer) Size() int { return s.cm.m }

// CoresetScorer is the PatchCore-style baseline: nearest-neighbour cosine
// against a subset of the memory bank chosen at random or by greedy k-center.
type CoresetScorer struct {
	cm *cosineMax
	// Index holds the bank rows chosen, in the order chosen.
	Index []int
}

// NewCoresetScorer selects size rows of bank ([N, d], normalised in place): at
// random, or greedily (k-center: each next row is the one farthest, in cosine
// distance, from every row chosen so far, starting from a random row).
func NewCoresetScorer(bank []float32, d, size int, greedy bool, seed uint64) (*CoresetScorer, error) {
	if d < 1 || len(bank) == 0 || len(bank)%d != 0 {
		return nil, fmt.Errorf("inference: coreset: bank of %d values is not [N, %d]", len(bank), d)
	}
	if size < 1 {
		return nil, errors.New("inference: coreset: size must be >= 1")
	}
	normaliseRows(bank, d)
	n := len(bank) / d
	size = min(size, n)
	rng := rand.New(rand.NewPCG(seed, 0x636f7265736574))
	var idx []int
	if greedy {
		idx = greedyKCenter(bank, n, d, size, rng)
	} else {
		idx = rng.Perm(n)[:size]
	}
	refs := make([]float32, 0, size*d)
	for _, i := range idx {
		refs = append(refs, bank[i*d:(i+1)*d]...)
	}
	return &CoresetScorer{cm: newCosineMax(refs, size, d), Index: idx}, nil
}

// Score implements Scorer.
func (s *CoresetScorer) Score(patches []float32, n int, out []float32) { s.cm.score(patches, n, out) }

// greedyKCenter picks size rows; the distance of every row to the chosen set is
// kept as the largest cosine so far and updated with one pass of dot products
// per pick (a matrix-vector product, which GEMM packing would not speed up),
// split across cores.
func greedyKCenter(bank []float32, n, d, size int, rng *rand.Rand) []int {
	maxCos := make([]float32, n)
	for i := range maxCos {
		maxCos[i] = float32(math.Inf(-1))
	}
	idx := make([]int, 0, size)
	next := rng.IntN(n)
	workers := runtime.GOMAXPROCS(0)
	chunk := (n + workers - 1) / workers
	for len(idx) < size {
		idx = append(idx, next)
		center := bank[next*d : (next+1)*d]
		var wg sync.WaitGroup
		for lo := 0; lo < n; lo += chunk {
			hi := min(n, lo+chunk)
			wg.Add(1)
			go func(lo, hi int) {
				defer wg.Done()
				for i := lo; i < hi; i++ {
					if c := dot(bank[i*d:(i+1)*d], center); c > maxCos[i] {
						maxCos[i] = c
					}
				}
			}(lo, hi)
		}
		wg.Wait()
		// The farthest row is the one least similar to its nearest chosen row.
		best, bestCos := -1, float32(math.Inf(1))
		for i, c := range maxCos {
			if c < bestCos {
				best, bestCos = i, c
			}
		}
		next = best
	}
	return idx
}

// dot is a 4-way unrolled float32 dot product.
func dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return s0 + s1 + s2 + s3
}
