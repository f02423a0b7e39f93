package par

import (
	"sync/atomic"
	"testing"
)

func TestForEachCallsEachOnce(t *testing.T) {
	for _, n := range []int{0, 1, 7, 1000} {
		seen := make([]int32, n)
		ForEach(n, func(i int) { atomic.AddInt32(&seen[i], 1) })
		for i, c := range seen {
			if c != 1 {
				t.Fatalf("n=%d: f(%d) called %d times", n, i, c)
			}
		}
	}
}

func TestForEachRaisesPanicInCaller(t *testing.T) {
	var done atomic.Int32
	defer func() {
		p, ok := recover().(*Panic)
		if !ok || p.Value != "boom" || len(p.Stack) == 0 {
			t.Fatalf("recovered %#v, want *Panic{boom} with a stack", p)
		}
		if done.Load() != 99 {
			t.Errorf("%d other calls returned before the panic was raised, want 99", done.Load())
		}
	}()
	ForEach(100, func(i int) {
		if i == 42 {
			panic("boom")
		}
		done.Add(1)
	})
	t.Fatal("no panic")
}
