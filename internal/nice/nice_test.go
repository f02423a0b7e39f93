//go:build linux

package nice

import (
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"anomalynode/internal/par"
)

// threadNice is a thread's niceness from /proc; false when it has ended.
func threadNice(t testing.TB, tid int) (int, bool) {
	t.Helper()
	all, err := Threads()
	if err != nil {
		t.Fatal(err)
	}
	n, ok := all[tid]
	return n, ok
}

// nicedThreads lists the process's threads at niceness n or more.
func nicedThreads(t testing.TB, n int) []int {
	t.Helper()
	all, err := Threads()
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for tid, v := range all {
		if v >= n {
			out = append(out, tid)
		}
	}
	return out
}

func TestRunRaisesOnlyItsThread(t *testing.T) {
	if cur, _ := Current(); cur != 0 {
		t.Skipf("the test runs at niceness %d, want 0", cur)
	}
	var tid, inside int
	var insideOK bool
	if err := Run(10, func() {
		tid = unix.Gettid()
		inside, insideOK = threadNice(t, tid)
	}); err != nil {
		t.Fatal(err)
	}
	if !insideOK || inside != 10 {
		t.Fatalf("f ran on thread %d at niceness %d, want 10", tid, inside)
	}
	if me, _ := threadNice(t, unix.Gettid()); me != 0 {
		t.Errorf("the caller's thread is at niceness %d, want 0", me)
	}
	// The raised thread ends with f, so no goroutine can run on it later.
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := nicedThreads(t, 1)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("threads %v still run at raised niceness after Run returned", left)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Goroutines started afterwards, on whatever threads the runtime has
	// or makes, all run at the process's niceness.
	var wg sync.WaitGroup
	var mu sync.Mutex
	for range 4 * runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1e6; i++ {
				_ = i * i
			}
			v, _ := threadNice(t, unix.Gettid())
			mu.Lock()
			defer mu.Unlock()
			if v != 0 {
				t.Errorf("a later goroutine ran at niceness %d", v)
			}
		}()
	}
	wg.Wait()
}

func TestRunNested(t *testing.T) {
	var outer, inner int
	if err := Run(5, func() {
		outer = unix.Gettid()
		if err := Run(5, func() { inner = unix.Gettid() }); err != nil {
			t.Error(err)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if inner != outer {
		t.Errorf("a nested Run at the same niceness moved to thread %d from %d, want it inline", inner, outer)
	}
}

func TestRunRaisesPanicInCaller(t *testing.T) {
	defer func() {
		p, ok := recover().(*par.Panic)
		if !ok || p.Value != "boom" || !strings.Contains(string(p.Stack), "nice_test.go") {
			t.Fatalf("recovered %#v, want *par.Panic{boom} with f's stack", p)
		}
	}()
	_ = Run(3, func() { panic("boom") })
	t.Fatal("Run returned after a panic")
}

func TestRunZeroIsInline(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	me := unix.Gettid()
	var got int
	if err := Run(0, func() { got = unix.Gettid() }); err != nil {
		t.Fatal(err)
	}
	if got != me {
		t.Errorf("Run(0) ran on thread %d, want the caller's %d", got, me)
	}
}
