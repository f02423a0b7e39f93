package ingest

// SetRouter replaces the routing rules (configuration reload); instances
// already accepted keep the decision they were routed with.
func (s *Service) SetRouter(r *Router) { s.router.Store(r) }

// CheckSpace reports whether the data directory is above the configured
// free-space floor (the node's readiness check); the error says by how much not.
func (s *Service) CheckSpace() error { return s.checkSpace() }
