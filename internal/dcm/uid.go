package dcm

// Transfer syntax UIDs (PS3.6 Annex A) the node reads or writes.
const (
	// ImplicitVRLittleEndian is the default transfer syntax every node accepts.
	ImplicitVRLittleEndian = "1.2.840.10008.1.2"
	// ExplicitVRLittleEndian is what the node writes its results in.
	ExplicitVRLittleEndian = "1.2.840.10008.1.2.1"
	// DeflatedExplicitVRLittleEndian is Explicit VR Little Endian, deflated.
	DeflatedExplicitVRLittleEndian = "1.2.840.10008.1.2.1.99"
	// ExplicitVRBigEndian is retired but still sent by old modalities.
	ExplicitVRBigEndian = "1.2.840.10008.1.2.2"
	// RLELossless is RLE Lossless (PS3.5 Annex G).
	RLELossless = "1.2.840.10008.1.2.5"
	// JPEGBaseline is JPEG Baseline (Process 1), 8-bit lossy.
	JPEGBaseline = "1.2.840.10008.1.2.4.50"
	// JPEGExtended is JPEG Extended (Process 2 & 4), 12-bit lossy.
	JPEGExtended = "1.2.840.10008.1.2.4.51"
	// JPEGLossless is JPEG Lossless, Non-Hierarchical (Process 14), any
	// predictor.
	JPEGLossless = "1.2.840.10008.1.2.4.57"
	// JPEGLosslessSV1 is JPEG Lossless, Non-Hierarchical, First-Order
	// Prediction (Process 14, Selection Value 1), what most archives use.
	JPEGLosslessSV1 = "1.2.840.10008.1.2.4.70"
	// JPEGLSLossless is JPEG-LS Lossless Image Compression.
	JPEGLSLossless = "1.2.840.10008.1.2.4.80"
	// JPEGLSNearLossless is JPEG-LS Lossy (Near-Lossless) Image Compression:
	// every sample within NEAR of the original.
	JPEGLSNearLossless = "1.2.840.10008.1.2.4.81"
	// JPEG2000Lossless is JPEG 2000 Image Compression (Lossless Only).
	JPEG2000Lossless = "1.2.840.10008.1.2.4.90"
	// JPEG2000 is JPEG 2000 Image Compression.
	JPEG2000 = "1.2.840.10008.1.2.4.91"
	// HTJ2KLossless is High-Throughput JPEG 2000 (Lossless Only).
	HTJ2KLossless = "1.2.840.10008.1.2.4.201"
	// HTJ2K is High-Throughput JPEG 2000 Image Compression.
	HTJ2K = "1.2.840.10008.1.2.4.203"
)

// tsNames are the short names messages use for transfer syntaxes.
var tsNames = map[string]string{
	ImplicitVRLittleEndian:         "Implicit VR Little Endian",
	ExplicitVRLittleEndian:         "Explicit VR Little Endian",
	DeflatedExplicitVRLittleEndian: "Deflated Explicit VR Little Endian",
	ExplicitVRBigEndian:            "Explicit VR Big Endian",
	RLELossless:                    "RLE Lossless",
	JPEGBaseline:                   "JPEG Baseline",
	JPEGExtended:                   "JPEG Extended (12-bit)",
	JPEGLossless:                   "JPEG Lossless",
	JPEGLosslessSV1:                "JPEG Lossless SV1",
	JPEGLSLossless:                 "JPEG-LS Lossless",
	JPEGLSNearLossless:             "JPEG-LS Near-Lossless",
	JPEG2000Lossless:               "JPEG 2000 Lossless",
	JPEG2000:                       "JPEG 2000",
	HTJ2KLossless:                  "HTJ2K Lossless",
	HTJ2K:                          "HTJ2K",
}

// TransferSyntaxName returns a short readable name for a transfer syntax UID,
// or "this transfer syntax" for one it does not know, so messages read well
// either way.
func TransferSyntaxName(ts string) string {
	if n, ok := tsNames[ts]; ok {
		return n
	}
	return "this transfer syntax"
}
