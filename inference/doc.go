// Package inference turns slices into anomaly maps and fits the models that do
// it: preprocessing of the slices inference/pixel decodes, the ONNX
// embedder, DPMM fitting and scoring, baselines, calibration and evaluation metrics, and the node's
// inference stage (Worker, with the durable ResultStore of scored slices).
// It does not speak DIMSE.
package inference
