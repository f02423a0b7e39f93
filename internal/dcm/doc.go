// Package dcm holds the DICOM primitives every stage shares, written once:
// transfer-syntax UIDs, the explicit-VR header layout (which VRs carry a
// 4-byte length), one bounded walk over the elements of an encoded data set
// (Walker), Part-10 file meta read and write, value accessors over a parsed
// suyashkumar/dicom dataset, and derived UIDs. It imports no stage (dimse,
// ingest, inference, output), so any of them can use it.
package dcm
