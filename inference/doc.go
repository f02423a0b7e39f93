// Package inference turns slices into anomaly maps and fits the models that do
// it: preprocessing of the slices inference/pixel decodes, the ONNX embedder,
// DPMM fitting and scoring, baselines, calibration and evaluation metrics. It
// knows neither ingest, NATS nor output: the node's inference stage that feeds
// it slices and keeps its results is package inference/stage, and SliceRecord
// is the scored slice that stage stores and the finaliser reads back.
// It does not speak DIMSE.
package inference
