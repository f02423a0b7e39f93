package eval

import (
	"math"
	"math/rand/v2"
	"testing"
)

func compute(t *testing.T, pos, neg []float32, th []float32) *Metrics {
	t.Helper()
	var p Pixels
	scores := append(append([]float32(nil), pos...), neg...)
	labels := make([]uint8, len(scores))
	for i := range pos {
		labels[i] = 1
	}
	if err := p.Add(scores, labels); err != nil {
		t.Fatal(err)
	}
	keys := make([]string, len(th))
	for i := range th {
		keys[i] = "k"
	}
	m, err := p.Compute(keys, th)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-12 }

func TestMetricsHandComputed(t *testing.T) {
	cases := []struct {
		name        string
		pos, neg    []float32
		auroc, aupr float64
	}{
		{"separated", []float32{0.9, 0.8}, []float32{0.7, 0.1}, 1, 1},
		{"reversed", []float32{0.1}, []float32{0.9, 0.8}, 0, 1.0 / 3},
		{"one tie", []float32{0.5}, []float32{0.5}, 0.5, 0.5},
		// pos 0.8 beats 3 negatives; each pos 0.4 beats 0.2 and ties 0.4: 6/9.
		// AP: at 0.8 recall 1/3 precision 1; at 0.4 recall 1 precision 3/5.
		{"ties", []float32{0.8, 0.4, 0.4}, []float32{0.6, 0.4, 0.2}, 6.0 / 9, 1.0/3 + 2.0/3*0.6},
		{"all equal", []float32{1, 1}, []float32{1, 1, 1}, 0.5, 0.4},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := compute(t, c.pos, c.neg, nil)
			if !near(*m.AUROC, c.auroc) || !near(*m.AUPR, c.aupr) {
				t.Fatalf("AUROC %v AUPR %v, want %v %v", *m.AUROC, *m.AUPR, c.auroc, c.aupr)
			}
		})
	}
}

func TestDice(t *testing.T) {
	m := compute(t, []float32{0.8, 0.4, 0.4}, []float32{0.6, 0.4, 0.2}, []float32{0.4, 0.1, 0.9})
	// score > 0.4: TP 1 (0.8), FP 1 (0.6), FN 2 -> 2/(2+1+2).
	want := []float64{0.4, 2 * 3.0 / (6 + 3), 0}
	for i, d := range m.Dice {
		if !near(d.Dice, want[i]) {
			t.Fatalf("dice at %v = %v, want %v", d.Threshold, d.Dice, want[i])
		}
	}
	if m.Dice[0].TestFPR != 1.0/3 || m.Dice[1].Sensitivity != 1 {
		t.Fatalf("rates %+v", m.Dice)
	}
}

func TestMetricsAgainstBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var pos, neg []float32
	for i := 0; i < 700; i++ {
		s := float32(rng.IntN(40)) / 10 // heavy ties
		if rng.Float64() < 0.2 {
			pos = append(pos, s+0.5*float32(rng.IntN(3)))
		} else {
			neg = append(neg, s)
		}
	}
	m := compute(t, pos, neg, nil)
	u := 0.0
	for _, a := range pos {
		for _, b := range neg {
			switch {
			case a > b:
				u++
			case a == b:
				u += 0.5
			}
		}
	}
	if want := u / float64(len(pos)*len(neg)); math.Abs(*m.AUROC-want) > 1e-12 {
		t.Fatalf("AUROC %v, brute force %v", *m.AUROC, want)
	}
	// AP by brute force over distinct thresholds.
	seen := map[float32]bool{}
	var ths []float32
	for _, s := range append(append([]float32(nil), pos...), neg...) {
		if !seen[s] {
			seen[s] = true
			ths = append(ths, s)
		}
	}
	// Descending.
	for i := range ths {
		for j := i + 1; j < len(ths); j++ {
			if ths[j] > ths[i] {
				ths[i], ths[j] = ths[j], ths[i]
			}
		}
	}
	ap, prev := 0.0, 0.0
	for _, th := range ths {
		tp, fp := 0, 0
		for _, s := range pos {
			if s >= th {
				tp++
			}
		}
		for _, s := range neg {
			if s >= th {
				fp++
			}
		}
		r := float64(tp) / float64(len(pos))
		ap += (r - prev) * float64(tp) / float64(tp+fp)
		prev = r
	}
	if math.Abs(*m.AUPR-ap) > 1e-12 {
		t.Fatalf("AUPR %v, brute force %v", *m.AUPR, ap)
	}
	if last := m.ROC[len(m.ROC)-1]; last.X != 1 || last.Y != 1 {
		t.Fatalf("ROC ends at %v", last)
	}
}

func TestMetricsEdgeCases(t *testing.T) {
	var p Pixels
	if _, err := p.Compute(nil, nil); err != ErrNoScores {
		t.Fatalf("empty: %v", err)
	}
	m := compute(t, nil, []float32{0.1, 0.2}, []float32{0.15})
	if m.AUROC != nil || m.AUPR != nil || m.Dice[0].FP != 1 {
		t.Fatalf("negatives only: %+v", m)
	}
	if err := p.Add([]float32{1}, nil); err == nil {
		t.Fatal("length mismatch accepted")
	}
}
