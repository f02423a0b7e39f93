package inference

import (
	"math"
	"math/rand/v2"
	"testing"
)

func randUnit(r *rand.Rand, n, d int) []float32 {
	x := make([]float32, n*d)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	normaliseRows(x, d)
	return x
}

// refScore is the straightforward float64 definition: 1 - max cosine.
func refScore(q []float32, n int, refs []float32, d int) []float64 {
	out := make([]float64, n)
	m := len(refs) / d
	for i := 0; i < n; i++ {
		best := math.Inf(-1)
		for j := 0; j < m; j++ {
			var dotp, nq, nr float64
			for k := 0; k < d; k++ {
				a, b := float64(q[i*d+k]), float64(refs[j*d+k])
				dotp += a * b
				nq += a * a
				nr += b * b
			}
			if c := dotp / math.Sqrt(nq*nr); c > best {
				best = c
			}
		}
		out[i] = 1 - best
	}
	return out
}

func checkScores(t *testing.T, name string, got []float32, want []float64) {
	t.Helper()
	for i := range want {
		if math.Abs(float64(got[i])-want[i]) > 2e-5 {
			t.Fatalf("%s: score %d = %v, want %v", name, i, got[i], want[i])
		}
	}
}

func TestDPMMScorerMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, tc := range []struct{ k, d, n int }{{1, 3, 1}, {7, 5, 13}, {150, 384, 1030}, {40, 17, 2100}} {
		m := testModel(tc.k, tc.d, uint64(tc.k))
		// Make one component inactive: it must not be a prototype.
		m.LogWeights[0] = float32(math.Log(1e-7))
		if tc.k == 1 {
			m.LogWeights[0] = 0
		}
		s, err := NewDPMMScorer(m)
		if err != nil {
			t.Fatal(err)
		}
		protos, _ := m.Prototypes(DefaultTau) // unnormalised: the reference normalises
		q := randUnit(r, tc.n, tc.d)
		out := make([]float32, tc.n)
		s.Score(q, tc.n, out)
		checkScores(t, "dpmm", out, refScore(q, tc.n, protos, tc.d))
		if tc.k > 1 && s.Prototypes() != tc.k-1 {
			t.Fatalf("%d prototypes, want %d", s.Prototypes(), tc.k-1)
		}
	}
}

func TestKNNScorerMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	d := 24
	// More than one reference block so the running max crosses blocks.
	bank := randUnit(r, refBlock+300, d)
	ref := append([]float32(nil), bank...)
	s, err := NewKNNScorer(bank, d)
	if err != nil {
		t.Fatal(err)
	}
	n := 50
	q := randUnit(r, n, d)
	copy(q[:d], ref[4200*d:4201*d]) // an exact member scores 0
	out := make([]float32, n)
	s.Score(q, n, out)
	checkScores(t, "knn", out, refScore(q, n, ref, d))
	if math.Abs(float64(out[0])) > 1e-5 {
		t.Fatalf("bank member scored %v, want 0", out[0])
	}
}

func TestCoresetScorer(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	d := 8
	// Four tight clusters: greedy k-center with 4 picks must take one from each.
	centers := randUnit(r, 4, d)
	var bank []float32
	for i := 0; i < 400; i++ {
		c := centers[(i%4)*d : (i%4+1)*d]
		for k := 0; k < d; k++ {
			bank = append(bank, c[k]+0.01*float32(r.NormFloat64()))
		}
	}
	ref := append([]float32(nil), bank...)
	s, err := NewCoresetScorer(bank, d, 4, true, 1)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, i := range s.Index {
		seen[i%4] = true
	}
	if len(seen) != 4 {
		t.Fatalf("greedy coreset %v does not cover the 4 clusters", s.Index)
	}
	var chosen []float32
	for _, i := range s.Index {
		chosen = append(chosen, ref[i*d:(i+1)*d]...)
	}
	q := randUnit(r, 20, d)
	out := make([]float32, 20)
	s.Score(q, 20, out)
	checkScores(t, "coreset", out, refScore(q, 20, chosen, d))

	rs, err := NewCoresetScorer(append([]float32(nil), ref...), d, 10, false, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs.Index) != 10 {
		t.Fatalf("random coreset size %d", len(rs.Index))
	}
}
