// Package par runs independent pieces of work on every core.
package par

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
)

// Panic is a panic raised in one of ForEach's calls, with that goroutine's
// stack, raised again in ForEach's caller.
type Panic struct {
	Value any
	Stack []byte
}

func (p *Panic) Error() string { return fmt.Sprintf("panic: %v\n%s", p.Value, p.Stack) }

// ForEach calls f(0) ... f(n-1), at most one goroutine per core. A panic in
// f is raised again (as *Panic) in the caller once every call has returned,
// so the caller's own recovery still sees it.
func ForEach(n int, f func(i int)) {
	if n == 1 {
		f(0)
		return
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		panicked *Panic
	)
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			defer func() {
				if p := recover(); p != nil {
					mu.Lock()
					if panicked == nil {
						panicked = &Panic{Value: p, Stack: debug.Stack()}
					}
					mu.Unlock()
				}
			}()
			f(i)
		}()
	}
	wg.Wait()
	if panicked != nil {
		panic(panicked)
	}
}
