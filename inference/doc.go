// Package inference turns slices into anomaly maps and fits the models that do
// it: pixel decoding and preprocessing, the ONNX embedder, DPMM fitting and
// scoring, baselines, calibration and evaluation metrics. It does not speak DIMSE.
package inference
