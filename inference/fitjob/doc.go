// Package fitjob runs the fitting jobs of `anomalynode fit` and the
// calibration that `anomalynode eval` shares: it turns DICOM files (decoded,
// preprocessed and embedded with the ONNX embedder, cached as .npy) and .npy
// embeddings into the slices package dpmm fits, fits and calibrates the
// mixture, and writes the model file with its training curve and history.
// The mathematics itself (mixture, EM fit, threshold quantiles) is package
// dpmm, which knows nothing of DICOM or ONNX.
package fitjob
