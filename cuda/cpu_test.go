//go:build !cuda

package cuda

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"anomalynode/inference"
	"anomalynode/inference/dpmm"
)

func TestAvailableWithoutTag(t *testing.T) {
	ok, why := Available()
	if ok {
		t.Fatal("Available() = true without the cuda tag")
	}
	if !strings.Contains(why, "cuda tag") {
		t.Fatalf("reason %q does not say the build lacks the cuda tag", why)
	}
}

// TestScorerIsDPMMScorer: without the tag the scorer returns exactly what
// inference.DPMMScorer returns.
func TestScorerIsDPMMScorer(t *testing.T) {
	for _, tc := range []struct{ k, d, n int }{{12, 16, 1}, {50, 64, 300}, {7, 33, 2000}} {
		model := randomModel(tc.k, tc.d, uint64(tc.k))
		want := make([]float32, tc.n)
		cpu, err := inference.NewDPMMScorer(model)
		if err != nil {
			t.Fatal(err)
		}
		q := clustered(tc.n, tc.d, 4, 0.3, 9)
		cpu.Score(q, tc.n, want)
		s, err := NewScorer(model, 0)
		if err != nil {
			t.Fatal(err)
		}
		if s.OnGPU() || s.Prototypes() != cpu.Prototypes() {
			t.Fatalf("OnGPU %v, prototypes %d (cpu %d)", s.OnGPU(), s.Prototypes(), cpu.Prototypes())
		}
		got := make([]float32, tc.n)
		s.Score(q, tc.n, got)
		if !slices.Equal(got, want) {
			t.Fatalf("k=%d d=%d n=%d: scores differ from DPMMScorer", tc.k, tc.d, tc.n)
		}
		clear(got)
		if err := s.ScoreErr(q, tc.n, got); err != nil || !slices.Equal(got, want) {
			t.Fatalf("ScoreErr: %v, equal %v", err, slices.Equal(got, want))
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestStepperIsMixtureStep: without the tag Stepper.Step is dpmm's Step, and
// Stepper.Stats is StatsCPU.
func TestStepperIsMixtureStep(t *testing.T) {
	n, k, d := 400, 20, 32
	x := clustered(n, d, 6, 0.2, 21)
	ref := newMixture(t, k, d, x, n, dpmm.Config{Seed: 4})
	got := ref.Clone()
	s, err := NewStepper(k, d, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.OnGPU() {
		t.Fatal("OnGPU() = true without the cuda tag")
	}
	wantStats, err := StatsCPU(ParamsOf(ref), x, n)
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.Stats(ParamsOf(got), x, n)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(st.G, wantStats.G) || !slices.Equal(st.R, wantStats.R) || st.LogLik != wantStats.LogLik {
		t.Fatal("Stepper.Stats differs from StatsCPU")
	}
	for step := 0; step < 2; step++ {
		want, err := ref.Step(x, n)
		if err != nil {
			t.Fatal(err)
		}
		ll, err := s.Step(got, x, n)
		if err != nil {
			t.Fatal(err)
		}
		if ll != want {
			t.Fatalf("log-likelihood %v, dpmm %v", ll, want)
		}
		sameMixture(t, got, ref)
	}
	if _, err := s.Step(newMixture(t, k+1, d, x, n, dpmm.Config{}), x, n); !errors.Is(err, ErrShape) {
		t.Fatalf("mixture of another K: err = %v", err)
	}
	if _, err := NewStepper(0, d, 0); !errors.Is(err, ErrShape) {
		t.Fatalf("NewStepper(0, ...): err = %v", err)
	}
}

func TestRequireWithoutTag(t *testing.T) {
	for _, dev := range []string{"", DeviceCPU} {
		if err := Require(dev); err != nil {
			t.Errorf("Require(%q) = %v", dev, err)
		}
	}
	err := Require(DeviceCUDA)
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "cuda tag") {
		t.Errorf("Require(cuda) = %v, want ErrUnavailable naming the missing tag", err)
	}
	if err := Require("tpu"); err == nil || errors.Is(err, ErrUnavailable) {
		t.Errorf("Require(tpu) = %v, want a bad-value error", err)
	}
}
