package dimse

import (
	"errors"
	"fmt"
)

// Sentinel errors for control flow; match them with errors.Is.
var (
	// ErrAssociationRejected: the SCP answered A-ASSOCIATE-RJ (see *RejectError).
	ErrAssociationRejected = errors.New("dimse: association rejected")
	// ErrAborted: the association was aborted (A-ABORT received or sent).
	ErrAborted = errors.New("dimse: association aborted")
	// ErrNoPresentationContext: no accepted presentation context fits the SOP
	// class and transfer syntax of a request.
	ErrNoPresentationContext = errors.New("dimse: no accepted presentation context")
	// ErrServerClosed: Serve returned because Shutdown was called.
	ErrServerClosed = errors.New("dimse: server closed")
	// ErrTimeout: an ARTIM, idle or DIMSE timer expired.
	ErrTimeout = errors.New("dimse: timeout")
	// ErrProtocol: the peer violated PS3.8 (malformed or unexpected PDU).
	ErrProtocol = errors.New("dimse: protocol error")
)

// A-ASSOCIATE-RJ result values (PS3.8 9.3.4).
const (
	RejectPermanent = 1
	RejectTransient = 2
)

// A-ASSOCIATE-RJ source values.
const (
	RejectSourceServiceUser         = 1 // DICOM UL service-user
	RejectSourceServiceProviderACSE = 2 // DICOM UL service-provider (ACSE related function)
	RejectSourceServiceProviderPres = 3 // DICOM UL service-provider (presentation related function)
)

// A-ASSOCIATE-RJ reason values. Source 1 (service user):
const (
	RejectReasonNoReason                   = 1
	RejectReasonAppContextNotSupported     = 2
	RejectReasonCallingAENotRecognized     = 3
	RejectReasonCalledAENotRecognized      = 7
	RejectReasonProtocolVersionUnsupported = 2 // with source 2
	RejectReasonTemporaryCongestion        = 1 // with source 3
	RejectReasonLocalLimitExceeded         = 2 // with source 3
)

// RejectError describes an A-ASSOCIATE-RJ. It matches ErrAssociationRejected.
type RejectError struct {
	Result, Source, Reason byte
}

// Error describes the rejection with its result, source and reason.
func (e *RejectError) Error() string {
	return fmt.Sprintf("dimse: association rejected (result %d %s, source %d, reason %d %s)",
		e.Result, map[byte]string{1: "permanent", 2: "transient"}[e.Result], e.Source, e.Reason, rejectReasonText(e.Source, e.Reason))
}

// Is makes errors.Is(err, ErrAssociationRejected) true.
func (e *RejectError) Is(target error) bool { return target == ErrAssociationRejected }

func rejectReasonText(source, reason byte) string {
	switch source {
	case RejectSourceServiceUser:
		switch reason {
		case 1:
			return "no reason given"
		case 2:
			return "application context name not supported"
		case 3:
			return "calling AE title not recognized"
		case 7:
			return "called AE title not recognized"
		}
	case RejectSourceServiceProviderACSE:
		switch reason {
		case 1:
			return "no reason given"
		case 2:
			return "protocol version not supported"
		}
	case RejectSourceServiceProviderPres:
		switch reason {
		case 1:
			return "temporary congestion"
		case 2:
			return "local limit exceeded"
		}
	}
	return "unknown"
}

// AbortError describes an A-ABORT received from the peer. It matches ErrAborted.
type AbortError struct {
	Source, Reason byte
}

// Error describes the abort source and reason.
func (e *AbortError) Error() string {
	return fmt.Sprintf("dimse: association aborted by peer (source %d, reason %d)", e.Source, e.Reason)
}

// Is makes errors.Is(err, ErrAborted) true.
func (e *AbortError) Is(target error) bool { return target == ErrAborted }
