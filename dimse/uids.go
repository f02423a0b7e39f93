package dimse

import (
	"anomalynode/internal/dcm"
)

// SOP class UIDs (PS3.4 Annex B, PS3.6 Annex A).
const (
	VerificationSOPClass                  = "1.2.840.10008.1.1"
	CTImageStorage                        = "1.2.840.10008.5.1.4.1.1.2"
	EnhancedCTImageStorage                = "1.2.840.10008.5.1.4.1.1.2.1"
	MRImageStorage                        = "1.2.840.10008.5.1.4.1.1.4"
	EnhancedMRImageStorage                = "1.2.840.10008.5.1.4.1.1.4.1"
	SecondaryCaptureImageStorage          = "1.2.840.10008.5.1.4.1.1.7"
	MultiFrameGrayscaleWordSCImageStorage = "1.2.840.10008.5.1.4.1.1.7.3"
	MultiFrameTrueColorSCImageStorage     = "1.2.840.10008.5.1.4.1.1.7.4"
	SegmentationStorage                   = "1.2.840.10008.5.1.4.1.1.66.4"
)

// ApplicationContextName is the DICOM application context (PS3.7 Annex A).
const ApplicationContextName = "1.2.840.10008.3.1.1.1"

// ImplementationClassUID identifies this implementation in A-ASSOCIATE and file
// meta information (a 2.25 UUID-derived UID, fixed for the product).
const ImplementationClassUID = "2.25.203476812093475629176234059872331946213"

// ImplementationVersionName is sent with ImplementationClassUID (at most 16 chars).
const ImplementationVersionName = "ANOMALYNODE_010"

// DefaultSOPClasses are the storage SOP classes the SCP accepts by default,
// plus Verification.
var DefaultSOPClasses = []string{
	VerificationSOPClass,
	CTImageStorage, EnhancedCTImageStorage,
	MRImageStorage, EnhancedMRImageStorage,
	SecondaryCaptureImageStorage, MultiFrameGrayscaleWordSCImageStorage, MultiFrameTrueColorSCImageStorage,
	SegmentationStorage,
}

// DefaultTransferSyntaxes are the transfer syntaxes the SCP accepts by default,
// in order of preference when a context proposes several.
var DefaultTransferSyntaxes = []string{
	dcm.ExplicitVRLittleEndian,
	dcm.ImplicitVRLittleEndian,
	dcm.DeflatedExplicitVRLittleEndian,
	dcm.ExplicitVRBigEndian,
	dcm.RLELossless,
	// Archives commonly hold CT and MR as JPEG Lossless or JPEG-LS and send them as they
	// are; last, so that native data is preferred when a sender offers both.
	dcm.JPEGLosslessSV1,
	dcm.JPEGLossless,
	dcm.JPEGLSLossless,
	dcm.JPEGLSNearLossless,
}

// EncapsulatedJPEGTransferSyntaxes are the JPEG-family syntaxes a config may add.
var EncapsulatedJPEGTransferSyntaxes = []string{
	dcm.JPEGBaseline, dcm.JPEGExtended, dcm.JPEGLossless, dcm.JPEGLosslessSV1,
	dcm.JPEGLSLossless, dcm.JPEGLSNearLossless, dcm.JPEG2000Lossless, dcm.JPEG2000,
}

// IsEncapsulated reports whether ts carries pixel data in encapsulated
// (compressed) form; converting such data sets between syntaxes is not possible
// without a codec.
func IsEncapsulated(ts string) bool {
	switch ts {
	case dcm.ImplicitVRLittleEndian, dcm.ExplicitVRLittleEndian, dcm.DeflatedExplicitVRLittleEndian, dcm.ExplicitVRBigEndian:
		return false
	}
	return true
}
