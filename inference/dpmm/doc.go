// Package dpmm fits the truncated stick-breaking Dirichlet-process mixture of
// diagonal Gaussians of METHOD.md section 2 by batched EM (Kimura et al. 2013) and
// calibrates its pixel thresholds. The heavy steps are float32 matrix products
// (package linalg); everything else is O(N*K) or O(K*D). It reads no files other
// than its own checkpoints and knows nothing of DICOM or ONNX: callers hand it
// embeddings (package fitjob turns DICOM and .npy inputs into them, runs
// the fit and writes the model file).
package dpmm
