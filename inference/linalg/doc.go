// Package linalg owns the dense float32 kernels the model side needs: a row-major
// single-precision matrix product (Sgemm) used by DPMM fitting (E-step) and by
// patch scoring. It knows nothing about models, files or DICOM.
package linalg
