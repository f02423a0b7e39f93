//go:build linux

package nice

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

func lockThread() { runtime.LockOSThread() }

func unlockThread() { runtime.UnlockOSThread() }

func onMainThread() bool { return unix.Gettid() == unix.Getpid() }

// raise sets the calling thread's niceness to n unless it is already higher
// (lowering it needs privilege, and is never wanted here).
func raise(n int) error {
	tid := unix.Gettid()
	cur, err := current()
	if err != nil {
		return err
	}
	if cur >= n {
		return nil
	}
	if err := unix.Setpriority(unix.PRIO_PROCESS, tid, n); err != nil {
		return fmt.Errorf("nice: set thread %d to %d: %w", tid, n, err)
	}
	return nil
}

func current() (int, error) {
	// The raw system call returns 20 - niceness, so that it is never negative.
	p, err := unix.Getpriority(unix.PRIO_PROCESS, unix.Gettid())
	if err != nil {
		return 0, fmt.Errorf("nice: read thread priority: %w", err)
	}
	return 20 - p, nil
}

func threads() (map[int]int, error) {
	dirs, err := filepath.Glob("/proc/self/task/*")
	if err != nil {
		return nil, err
	}
	out := map[int]int{}
	for _, d := range dirs {
		tid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(d, "stat"))
		if err != nil {
			continue // the thread has ended
		}
		// Field 19 is the niceness; the command name before it, in
		// parentheses, may hold spaces.
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) < 17 {
			return nil, fmt.Errorf("nice: %s/stat: %d fields", d, len(f))
		}
		n, err := strconv.Atoi(f[16])
		if err != nil {
			return nil, fmt.Errorf("nice: %s/stat: %w", d, err)
		}
		out[tid] = n
	}
	return out, nil
}
