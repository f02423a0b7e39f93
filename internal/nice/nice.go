// Package nice runs CPU-heavy background work (inference) on operating-system
// threads of raised niceness, so that on cores it shares with the node's
// receive-and-store path the kernel gives the cores to that path first.
//
// Niceness is per thread on Linux, and a thread a thread creates inherits it
// (ONNX Runtime's intra-op pool, created with its session, keeps the niceness
// of the thread that created the session). The package never changes a thread
// the Go scheduler may later hand to another goroutine: Run locks its
// goroutine to the thread before raising the value and never unlocks it, so
// the runtime destroys the thread when the goroutine ends (an unprivileged
// process cannot lower the value again). Threads the Go runtime starts from a
// locked thread are cloned from its template thread, not from the locked one.
// It does not nice the whole process.
package nice

import (
	"errors"
	"runtime/debug"

	"anomalynode/internal/par"
)

// ErrUnsupported is returned where threads have no niceness of their own.
var ErrUnsupported = errors.New("nice: per-thread niceness is not supported on this system")

// Max is the highest niceness (the lowest priority).
const Max = 19

// Run calls f on a new OS thread whose niceness is raised to n (1 to Max) and
// returns when f has returned; the thread ends with f. When the calling
// thread already runs at n or lower priority, f runs there. When the value
// cannot be raised, f still runs (at the inherited priority) and the error
// says why. A panic in f is raised again in the caller as *par.Panic, with
// f's stack. n <= 0 just calls f.
func Run(n int, f func()) error {
	if n <= 0 {
		f()
		return nil
	}
	if cur, err := Current(); err == nil && cur >= min(n, Max) {
		f()
		return nil
	}
	err, panicked := onRaisedThread(min(n, Max), f)
	if panicked != nil {
		panic(panicked)
	}
	return err
}

// onRaisedThread runs f on a new goroutine locked to its thread, raised to
// n, and waits for it.
func onRaisedThread(n int, f func()) (err error, panicked *par.Panic) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		lockThread()
		if onMainThread() {
			// The main thread's niceness is the one ps and top show for
			// the process, and the runtime parks it for good rather than
			// ending it: keep it as it is. While this goroutine holds it,
			// the next one runs on another thread.
			err, panicked = onRaisedThread(n, f)
			unlockThread()
			return
		}
		// Never unlocked: the thread's niceness must not reach another
		// goroutine, so the runtime destroys it when this one ends.
		defer func() {
			if p := recover(); p != nil {
				if pp, ok := p.(*par.Panic); ok {
					panicked = pp
				} else {
					panicked = &par.Panic{Value: p, Stack: debug.Stack()}
				}
			}
		}()
		err = raise(n)
		f()
	}()
	<-done
	return err, panicked
}

// Current is the niceness of the calling thread.
func Current() (int, error) { return current() }

// Threads is the niceness of each of the process's threads by thread ID, as
// /proc shows it: what tests and diagnostics check Run against.
func Threads() (map[int]int, error) { return threads() }
