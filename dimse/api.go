package dimse

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"time"
)

// AssociationInfo describes an established association, as the handler sees it.
type AssociationInfo struct {
	// CallingAE is the peer's AE title (trimmed), CalledAE ours as the peer named it.
	CallingAE, CalledAE string
	// RemoteAddr is the peer's network address.
	RemoteAddr net.Addr
	// PeerCertificates are the verified TLS client certificates (nil without TLS).
	PeerCertificates []*x509.Certificate
	// ImplementationClassUID and ImplementationVersion are what the peer sent.
	ImplementationClassUID, ImplementationVersion string
	// MaxPDU is the peer's maximum PDU length (0: unlimited).
	MaxPDU uint32
	// ID is a process-unique number for log correlation.
	ID uint64
}

// StoreRequest is one received C-STORE. DataSet streams the bare data set
// (no Part-10 header) straight from the P-DATA fragments as they arrive; it is
// valid only until ServeStore returns, and whatever the handler leaves unread is
// drained by the server.
type StoreRequest struct {
	Assoc          *AssociationInfo
	MessageID      uint16
	SOPClassUID    string
	SOPInstanceUID string
	// TransferSyntaxUID is the syntax of the bytes DataSet yields. A data set
	// received in Deflated Explicit VR LE is inflated by the server and reported
	// as Explicit VR Little Endian.
	TransferSyntaxUID string
	Priority          uint16
	// MoveOriginatorAE and MoveOriginatorMessageID are set when the C-STORE is a
	// sub-operation of a C-MOVE.
	MoveOriginatorAE        string
	MoveOriginatorMessageID uint16
	DataSet                 io.Reader
}

// StoreHandler answers C-STORE requests. The returned status is what the SCU
// receives; on a failure or warning status the error's text becomes the
// ErrorComment. A non-nil error with StatusSuccess is sent as
// StatusProcessingFailure. A panic aborts that association only.
type StoreHandler interface {
	ServeStore(ctx context.Context, req *StoreRequest) (Status, error)
}

// StoreHandlerFunc adapts a function to StoreHandler.
type StoreHandlerFunc func(ctx context.Context, req *StoreRequest) (Status, error)

// ServeStore calls f(ctx, req).
func (f StoreHandlerFunc) ServeStore(ctx context.Context, req *StoreRequest) (Status, error) {
	return f(ctx, req)
}

// AllowedCaller is a calling AE title the SCP accepts, optionally only from one
// host (an IP address or a name that resolves to the peer's address).
type AllowedCaller struct {
	AETitle string
	Host    string
}

// ServerConfig is the SCP's acceptance policy and limits. Zero values take the
// defaults noted on each field.
type ServerConfig struct {
	// Addr is HOST:PORT for Run (default ":11112").
	Addr string
	// AETitle is our AE title.
	AETitle string
	// CheckCalledAE rejects associations whose called AE title is not AETitle.
	CheckCalledAE bool
	// AllowedCallers lists accepted calling AE titles; empty accepts any.
	AllowedCallers []AllowedCaller
	// MaxAssociations bounds concurrent associations (default 32); more are
	// rejected transiently (local limit exceeded).
	MaxAssociations int
	// MaxPDU is the largest P-DATA PDU we accept, announced to peers (default 1 MiB).
	MaxPDU uint32
	// SOPClasses are the accepted abstract syntaxes (default DefaultSOPClasses).
	SOPClasses []string
	// TransferSyntaxes are accepted, in order of preference (default DefaultTransferSyntaxes).
	TransferSyntaxes []string
	// ARTIMTimeout bounds waiting for A-ASSOCIATE-RQ and for the transport to
	// close after release/abort (default 30s).
	ARTIMTimeout time.Duration
	// IdleTimeout aborts an association with no message for this long (default 5m).
	IdleTimeout time.Duration
	// DIMSETimeout bounds the gap between PDUs inside one message and sending
	// a response (default 2m).
	DIMSETimeout time.Duration
	// ShutdownGrace is how long Run lets open associations finish after its
	// context is cancelled before aborting them (default 10s).
	ShutdownGrace time.Duration
	// TLS, when set, makes the listener DICOM TLS (PS3.15 BCP 195).
	TLS *tls.Config
}

// PresentationContext is one proposed (and, after negotiation, answered)
// presentation context.
type PresentationContext struct {
	// ID is odd, 1..255; Dial numbers contexts itself when ID is 0.
	ID uint8
	// AbstractSyntax is the SOP class UID.
	AbstractSyntax string
	// TransferSyntaxes are the proposed syntaxes.
	TransferSyntaxes []string
	// Result is the SCP's answer (ContextAccepted...); set by Dial.
	Result byte
	// TransferSyntax is the accepted syntax; set by Dial.
	TransferSyntax string
}

// Presentation context results (PS3.8 9.3.3.2).
const (
	ContextAccepted                     = 0
	ContextUserRejected                 = 1
	ContextNoReason                     = 2
	ContextAbstractSyntaxNotSupported   = 3
	ContextTransferSyntaxesNotSupported = 4
)

// ClientConfig configures an SCU association.
type ClientConfig struct {
	// CallingAE is our AE title (default "ANOMALYNODE"); CalledAE the peer's.
	CallingAE, CalledAE string
	// MaxPDU is the largest PDU we accept (default 1 MiB).
	MaxPDU uint32
	// TLS, when set, dials DICOM TLS.
	TLS *tls.Config
	// DialTimeout bounds connecting and negotiating (default 30s).
	DialTimeout time.Duration
	// DIMSETimeout bounds waiting for each response (default 2m).
	DIMSETimeout time.Duration
	// Contexts is the explicit proposal; empty proposes Verification plus
	// DefaultSOPClasses with Explicit and Implicit VR LE.
	Contexts []PresentationContext
}

// StoreItem is one instance for Client.Store: a bare data set in TransferSyntaxUID.
type StoreItem struct {
	SOPClassUID       string
	SOPInstanceUID    string
	TransferSyntaxUID string
	DataSet           []byte
}
