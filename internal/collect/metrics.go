// Package collect is the one way the node's packages register their
// Prometheus collectors on the registry they are handed: every caller passes
// a pointer to its collector, keeps whatever Register leaves there, and
// returns Register's error from its constructor.
package collect

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers *c with reg. When a collector of the same description is
// already registered there (several servers, queues, workers or engines in
// one process share one registry), *c is replaced by that one, so this
// caller's counts are exported too. reg may be nil: nothing is registered.
// Any other registration error (a conflicting description: a programming
// error) is returned; *c then works but is not exported.
func Register[C prometheus.Collector](reg prometheus.Registerer, c *C) error {
	if reg == nil {
		return nil
	}
	err := reg.Register(*c)
	if err == nil {
		return nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			*c = existing
			return nil
		}
	}
	return fmt.Errorf("collect: register: %w", err)
}
