package dimse

import "fmt"

// Status is a DIMSE status code (PS3.7 Annex C), the value of (0000,0900) in a
// response command set.
type Status uint16

// DIMSE status codes the node sends or interprets.
const (
	// StatusSuccess: the operation completed.
	StatusSuccess Status = 0x0000
	// StatusWarningCoercion: C-STORE succeeded after coercing data elements.
	StatusWarningCoercion Status = 0xB000
	// StatusWarningElementsDiscarded: C-STORE succeeded, some elements discarded.
	StatusWarningElementsDiscarded Status = 0xB006
	// StatusWarningDataSetMismatch: stored, but the data set does not match the SOP class.
	StatusWarningDataSetMismatch Status = 0xB007
	// StatusWarningAttributeListError: attribute list error (0107).
	StatusWarningAttributeListError Status = 0x0107
	// StatusOutOfResources: refused, out of resources (A7xx).
	StatusOutOfResources Status = 0xA700
	// StatusDataSetMismatch: error, data set does not match SOP class (A9xx).
	StatusDataSetMismatch Status = 0xA900
	// StatusCannotUnderstand: error, cannot understand (Cxxx).
	StatusCannotUnderstand Status = 0xC000
	// StatusProcessingFailure: generic processing failure.
	StatusProcessingFailure Status = 0x0110
	// StatusDuplicateInvocation: the message ID is already in use.
	StatusDuplicateInvocation Status = 0x0210
	// StatusUnrecognizedOperation: the command is not supported by this SCP.
	StatusUnrecognizedOperation Status = 0x0211
	// StatusSOPClassNotSupported: the SOP class is not supported.
	StatusSOPClassNotSupported Status = 0x0122
	// StatusCancel: the operation was cancelled.
	StatusCancel Status = 0xFE00
	// StatusPending: more responses follow (C-FIND/C-MOVE; not used by C-STORE).
	StatusPending Status = 0xFF00
)

// IsSuccess reports whether s is 0000 success.
func (s Status) IsSuccess() bool { return s == StatusSuccess }

// IsWarning reports whether s is a warning: 0001, 0107, 0116 or Bxxx.
func (s Status) IsWarning() bool {
	return s == 0x0001 || s == 0x0107 || s == 0x0116 || s&0xF000 == 0xB000
}

// IsPending reports whether s is FF00/FF01 (more responses follow).
func (s Status) IsPending() bool { return s == 0xFF00 || s == 0xFF01 }

// IsFailure reports whether s is neither success, warning, pending nor cancel:
// the operation did not happen.
func (s Status) IsFailure() bool {
	return !s.IsSuccess() && !s.IsWarning() && !s.IsPending() && s != StatusCancel
}

// String names the status class and shows the code, e.g. "A700 (out of resources)".
func (s Status) String() string {
	var name string
	switch {
	case s == StatusSuccess:
		name = "success"
	case s&0xFF00 == 0xA700:
		name = "out of resources"
	case s&0xFF00 == 0xA900:
		name = "data set does not match SOP class"
	case s&0xF000 == 0xC000:
		name = "cannot understand"
	case s == StatusSOPClassNotSupported:
		name = "SOP class not supported"
	case s == StatusProcessingFailure:
		name = "processing failure"
	case s == StatusUnrecognizedOperation:
		name = "unrecognized operation"
	case s == StatusCancel:
		name = "cancel"
	case s.IsPending():
		name = "pending"
	case s.IsWarning():
		name = "warning"
	default:
		name = "failure"
	}
	return fmt.Sprintf("%04X (%s)", uint16(s), name)
}
