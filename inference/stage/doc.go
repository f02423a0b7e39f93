// Package stage is the node's inference stage: it consumes routed slices from
// ingest, runs them through the engine (package inference) of the model their
// rule names, and keeps each scored slice durably (ResultStore, a JetStream
// object store) until the finaliser in package output reads it back. It is
// the only part of inference that knows ingest and NATS, so offline tools
// (fit, eval, cuda) link neither. Its log lines keep the "inference:" prefix
// that the console's journal reads.
package stage
