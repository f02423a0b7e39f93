// Package ingest gets instances into the node without losing them: the durable
// store and queue (NATS JetStream), the watched folder, routing-rule evaluation
// and series tracking and completion. It does not decode pixels or run models.
package ingest
