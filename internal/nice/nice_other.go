//go:build !linux

package nice

// lockThread is a no-op: without per-thread niceness there is nothing to keep
// from other goroutines.
func lockThread() {}

func unlockThread() {}

func onMainThread() bool { return false }

func raise(int) error { return ErrUnsupported }

func current() (int, error) { return 0, ErrUnsupported }

func threads() (map[int]int, error) { return nil, ErrUnsupported }
