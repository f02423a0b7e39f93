// Package output builds the node's DICOM results (Segmentation and Secondary
// Capture heat maps) with deterministic UIDs, turns completed series into them
// (Finaliser), and delivers them through a durable export queue with retries
// and a dead-letter store. It runs no inference.
package output
