// Package cuda runs the per-slice work on an NVIDIA GPU (build tag cuda,
// gorgonia.org/cu and cuBLAS): the DINOv2 forward pass read from the same ONNX
// file ONNX Runtime runs (Embedder, ScoringEmbedder), DPMM scoring (Scorer)
// and the EM step of fitting (Stepper). Without the tag the same API is
// backed by the CPU code (vit.Forward, inference.DPMMScorer, dpmm.Mixture),
// so no caller branches on the build.
package cuda
