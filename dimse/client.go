package dimse

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"anomalynode/internal/dcm"
)

// Client is a DICOM SCU on one association. Its methods are safe for
// concurrent use but run one operation at a time.
type Client struct {
	u        *ulConn
	cfg      ClientConfig
	contexts []PresentationContext
	peer     *associate

	mu     sync.Mutex
	msgID  uint16
	closed bool
}

// StatusError is a failure status in a DIMSE response.
type StatusError struct {
	Status  Status
	Comment string
}

// Error describes the status and its comment.
func (e *StatusError) Error() string {
	if e.Comment != "" {
		return fmt.Sprintf("dimse: status %s: %s", e.Status, e.Comment)
	}
	return fmt.Sprintf("dimse: status %s", e.Status)
}

// DefaultContexts is the proposal Dial makes when ClientConfig.Contexts is
// empty: Verification and every default storage SOP class, each with Explicit
// and Implicit VR Little Endian.
func DefaultContexts() []PresentationContext {
	var out []PresentationContext
	for _, s := range DefaultSOPClasses {
		out = append(out, PresentationContext{AbstractSyntax: s, TransferSyntaxes: []string{dcm.ExplicitVRLittleEndian, dcm.ImplicitVRLittleEndian}})
	}
	return out
}

// ContextsFor proposes contexts able to carry instances of the given SOP class
// and transfer syntax pairs: per SOP class one context with Explicit and
// Implicit VR LE (the client converts between them), and one per other
// transfer syntax seen, plus Verification.
func ContextsFor(pairs [][2]string) []PresentationContext {
	out := []PresentationContext{{AbstractSyntax: VerificationSOPClass, TransferSyntaxes: []string{dcm.ImplicitVRLittleEndian}}}
	seen := map[[2]string]bool{}
	for _, p := range pairs {
		sop, ts := p[0], p[1]
		if !seen[[2]string{sop, ""}] {
			seen[[2]string{sop, ""}] = true
			out = append(out, PresentationContext{AbstractSyntax: sop, TransferSyntaxes: []string{dcm.ExplicitVRLittleEndian, dcm.ImplicitVRLittleEndian}})
		}
		if ts != dcm.ExplicitVRLittleEndian && ts != dcm.ImplicitVRLittleEndian && !seen[p] {
			seen[p] = true
			out = append(out, PresentationContext{AbstractSyntax: sop, TransferSyntaxes: []string{ts}})
		}
	}
	return out
}

// Dial connects to an SCP at addr (HOST:PORT) and negotiates an association.
// A rejection returns a *RejectError (errors.Is ErrAssociationRejected).
func Dial(ctx context.Context, addr string, cfg ClientConfig) (*Client, error) {
	if cfg.CallingAE == "" {
		cfg.CallingAE = "ANOMALYNODE"
	}
	if cfg.CalledAE == "" {
		cfg.CalledAE = "ANY-SCP"
	}
	if cfg.MaxPDU == 0 {
		cfg.MaxPDU = 1 << 20
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 30 * time.Second
	}
	if cfg.DIMSETimeout <= 0 {
		cfg.DIMSETimeout = 2 * time.Minute
	}
	for _, ae := range []string{cfg.CallingAE, cfg.CalledAE} {
		if err := checkAE(ae); err != nil {
			return nil, err
		}
	}
	contexts := cfg.Contexts
	if len(contexts) == 0 {
		contexts = DefaultContexts()
	}
	if len(contexts) > 128 {
		return nil, fmt.Errorf("dimse: %d presentation contexts proposed, at most 128 fit", len(contexts))
	}
	contexts = append([]PresentationContext(nil), contexts...)
	ids := map[byte]bool{}
	for i := range contexts {
		if contexts[i].ID == 0 {
			contexts[i].ID = byte(2*i + 1)
		}
		if id := contexts[i].ID; id%2 == 0 || ids[id] {
			return nil, fmt.Errorf("dimse: presentation context ID %d is even or used twice", id)
		}
		ids[contexts[i].ID] = true
		if contexts[i].AbstractSyntax == "" || len(contexts[i].TransferSyntaxes) == 0 {
			return nil, fmt.Errorf("dimse: presentation context %d needs an abstract syntax and at least one transfer syntax", contexts[i].ID)
		}
	}
	dctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(dctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dimse: dial %s: %w", addr, err)
	}
	if cfg.TLS != nil {
		tcfg := cfg.TLS
		if tcfg.ServerName == "" && !tcfg.InsecureSkipVerify {
			tcfg = tcfg.Clone()
			tcfg.ServerName, _, _ = net.SplitHostPort(addr)
		}
		tc := tls.Client(conn, tcfg)
		if err := tc.HandshakeContext(dctx); err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("dimse: TLS handshake with %s: %w", addr, err)
		}
		conn = tc
	}
	c, err := associateOn(dctx, conn, cfg, contexts)
	if err != nil {
		return nil, fmt.Errorf("dimse: associate with %s: %w", addr, err)
	}
	return c, nil
}

// associateOn negotiates an association over an open connection; it closes
// conn on failure.
func associateOn(dctx context.Context, conn net.Conn, cfg ClientConfig, contexts []PresentationContext) (*Client, error) {
	c := &Client{u: newULConn(conn, cfg.MaxPDU, sta1Idle), cfg: cfg}
	c.u.readTimeout = cfg.DialTimeout
	c.u.writeTimeout = cfg.DialTimeout
	stop := context.AfterFunc(dctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	rq := &associate{
		ProtocolVersion: 1, CalledAE: cfg.CalledAE, CallingAE: cfg.CallingAE,
		AppContext: ApplicationContextName, Contexts: contexts, MaxPDU: cfg.MaxPDU,
		ImplClassUID: ImplementationClassUID, ImplVersion: ImplementationVersionName,
	}
	if err := c.u.write(evSendAssocRQ, encodeAssociate(pduAssociateRQ, rq)); err != nil {
		_ = conn.Close()
		return nil, c.ctxErr(dctx, err)
	}
	typ, body, err := c.u.readPDU()
	if err != nil {
		var pe *pduError
		if errors.As(err, &pe) {
			c.u.abort(abortSourceProvider, pe.Reason)
		}
		_ = conn.Close()
		return nil, c.ctxErr(dctx, err)
	}
	switch typ {
	case pduAssociateRJ:
		_ = conn.Close()
		return nil, &RejectError{Result: body[1], Source: body[2], Reason: body[3]}
	case pduAssociateAC:
	default: // the state machine admits nothing else in Sta5
		_ = conn.Close()
		return nil, fmt.Errorf("%w: PDU type %d in answer to A-ASSOCIATE-RQ", ErrProtocol, typ)
	case pduAbort:
		_ = conn.Close()
		return nil, abortErr(body)
	}
	ac, err := decodeAssociate(pduAssociateAC, body)
	if err != nil {
		c.u.abort(abortSourceProvider, abortInvalidParValue)
		return nil, err
	}
	byID := map[byte]PresentationContext{}
	for _, pc := range ac.Contexts {
		byID[pc.ID] = pc
	}
	for i := range contexts {
		if got, ok := byID[contexts[i].ID]; ok {
			contexts[i].Result, contexts[i].TransferSyntax = got.Result, got.TransferSyntax
			if got.Result == ContextAccepted && !contains(contexts[i].TransferSyntaxes, got.TransferSyntax) {
				contexts[i].Result = ContextNoReason // the SCP picked a syntax we never proposed
			}
		} else {
			contexts[i].Result = ContextNoReason
		}
	}
	c.contexts, c.peer = contexts, ac
	c.u.peerMax = ac.MaxPDU
	c.u.readTimeout, c.u.writeTimeout = cfg.DIMSETimeout, cfg.DIMSETimeout
	return c, nil
}

// ctxErr prefers the context's error when it caused err.
func (c *Client) ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("dimse: %w (%v)", ctx.Err(), err)
	}
	return err
}

// Contexts returns the proposed contexts with the SCP's answers.
func (c *Client) Contexts() []PresentationContext {
	return append([]PresentationContext(nil), c.contexts...)
}

// PeerMaxPDU is the SCP's maximum PDU length (0: unlimited).
func (c *Client) PeerMaxPDU() uint32 { return c.peer.MaxPDU }

// findContext returns an accepted context for the SOP class in syntax ts
// ("" accepts any syntax).
func (c *Client) findContext(sop, ts string) (PresentationContext, bool) {
	for _, pc := range c.contexts {
		if pc.Result == ContextAccepted && pc.AbstractSyntax == sop && (ts == "" || pc.TransferSyntax == ts) {
			return pc, true
		}
	}
	return PresentationContext{}, false
}

// Echo sends C-ECHO and waits for its response.
func (c *Client) Echo(ctx context.Context) error {
	pc, ok := c.findContext(VerificationSOPClass, "")
	if !ok {
		return fmt.Errorf("%w for Verification", ErrNoPresentationContext)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	rsp, err := c.roundTrip(ctx, pc.ID, &command{Field: cmdCEchoRQ, AffectedSOPClassUID: VerificationSOPClass, DataSetType: commandDataSetNone}, nil, 0)
	if err != nil {
		return err
	}
	if rsp.Status.IsFailure() {
		return &StatusError{Status: rsp.Status, Comment: rsp.ErrorComment}
	}
	return nil
}

// Store sends one data set by C-STORE and returns the SCP's status. When no
// accepted context carries item's transfer syntax but one carries its
// Implicit/Explicit VR LE counterpart, the data set is converted. A failure
// status is returned together with a *StatusError.
func (c *Client) Store(ctx context.Context, item StoreItem) (Status, error) {
	pc, data, err := c.prepare(item.SOPClassUID, item.TransferSyntaxUID, func() ([]byte, error) { return item.DataSet, nil })
	if err != nil {
		return 0, err
	}
	if data == nil {
		data = item.DataSet
	}
	return c.store(ctx, pc, item.SOPClassUID, item.SOPInstanceUID, bytes.NewReader(data), int64(len(data)))
}

// prepare picks the context for sop/ts; when it needs a conversion it loads
// the data set and returns it converted.
func (c *Client) prepare(sop, ts string, load func() ([]byte, error)) (PresentationContext, []byte, error) {
	if pc, ok := c.findContext(sop, ts); ok {
		return pc, nil, nil
	}
	for _, alt := range []string{dcm.ExplicitVRLittleEndian, dcm.ImplicitVRLittleEndian} {
		if alt == ts || !canConvert(ts, alt) {
			continue
		}
		pc, ok := c.findContext(sop, alt)
		if !ok {
			continue
		}
		data, err := load()
		if err != nil {
			return pc, nil, err
		}
		conv, err := ConvertDataSet(data, ts, alt)
		if err != nil {
			return pc, nil, err
		}
		return pc, conv, nil
	}
	return PresentationContext{}, nil, fmt.Errorf("%w for SOP class %s in %s", ErrNoPresentationContext, sop, ts)
}

// StoreFile sends a Part-10 file by C-STORE, streaming its data set from disk
// unless it must be converted.
func (c *Client) StoreFile(ctx context.Context, path string) (Status, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("dimse: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("dimse: %w", err)
	}
	br := bufio.NewReader(f)
	meta, off, err := ReadFileMeta(br)
	if err != nil {
		return 0, fmt.Errorf("%w: %s", err, path)
	}
	pc, data, err := c.prepare(meta.MediaStorageSOPClassUID, meta.TransferSyntaxUID, func() ([]byte, error) {
		return io.ReadAll(br)
	})
	if err != nil {
		return 0, err
	}
	if data != nil {
		return c.store(ctx, pc, meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID, bytes.NewReader(data), int64(len(data)))
	}
	return c.store(ctx, pc, meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID, br, st.Size()-off)
}

func (c *Client) store(ctx context.Context, pc PresentationContext, sop, inst string, data io.Reader, size int64) (Status, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	rsp, err := c.roundTrip(ctx, pc.ID, &command{Field: cmdCStoreRQ, AffectedSOPClassUID: sop,
		AffectedSOPInstanceUID: inst, Priority: PriorityMedium, DataSetType: 0x0000}, data, size)
	if err != nil {
		return 0, err
	}
	if rsp.Status.IsFailure() {
		return rsp.Status, &StatusError{Status: rsp.Status, Comment: rsp.ErrorComment}
	}
	return rsp.Status, nil
}

// roundTrip sends a request and reads its response. Callers hold c.mu.
func (c *Client) roundTrip(ctx context.Context, ctxID byte, rq *command, data io.Reader, size int64) (*command, error) {
	if c.closed {
		return nil, fmt.Errorf("dimse: association already closed")
	}
	c.msgID++
	rq.MessageID = c.msgID
	stop := context.AfterFunc(ctx, func() { _ = c.u.conn.SetDeadline(time.Now()) })
	defer stop()
	if err := c.u.sendMessage(ctxID, rq.encode(), data, size); err != nil {
		return nil, c.broken(ctx, err)
	}
	for {
		_, rsp, err := c.u.readCommand()
		if err != nil {
			return nil, c.broken(ctx, err)
		}
		if rsp.hasDataSet() {
			if err := (&dataReader{u: c.u, ctxID: ctxID}).drain(); err != nil {
				return nil, c.broken(ctx, err)
			}
		}
		if rsp.Field != rq.Field|0x8000 || rsp.MessageIDRespondedTo != rq.MessageID {
			return nil, c.broken(ctx, malformed(abortUnexpectedPar, "response 0x%04X to message %d while waiting for 0x%04X to %d",
				rsp.Field, rsp.MessageIDRespondedTo, rq.Field|0x8000, rq.MessageID))
		}
		return rsp, nil
	}
}

// broken aborts the association after a failed exchange and explains why.
func (c *Client) broken(ctx context.Context, err error) error {
	c.closed = true
	var ev *pduEvent
	switch {
	case errors.As(err, &ev) && ev.Type == pduAbort:
		err = abortErr(ev.Body)
		_ = c.u.conn.Close()
	case errors.As(err, &ev):
		c.u.abort(abortSourceProvider, abortUnexpectedPDU)
		err = fmt.Errorf("%w: unexpected PDU type %d", ErrProtocol, ev.Type)
	default:
		var pe *pduError
		if errors.As(err, &pe) {
			c.u.abort(abortSourceProvider, pe.Reason)
		} else {
			c.u.abort(abortSourceUser, abortReasonNone)
		}
	}
	return c.ctxErr(ctx, err)
}

// Release ends the association in order (A-RELEASE-RQ/RP) and closes it.
func (c *Client) Release(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	defer c.u.conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.u.conn.SetDeadline(time.Now()) })
	defer stop()
	if err := c.u.write(evSendReleaseRQ, encodeRelease(pduReleaseRQ)); err != nil {
		return c.ctxErr(ctx, err)
	}
	for {
		typ, body, err := c.u.readPDU()
		if err != nil {
			return c.ctxErr(ctx, fmt.Errorf("dimse: release: %w", err))
		}
		switch typ {
		case pduReleaseRP:
			return nil
		case pduReleaseRQ: // collision: answer and finish
			_ = c.u.write(evSendReleaseRP, encodeRelease(pduReleaseRP))
			return nil
		case pduAbort:
			return abortErr(body)
		case pduPData:
			// Late data after our release request is discarded.
			if _, err := io.CopyN(io.Discard, c.u.br, int64(c.u.pduLeft)); err != nil {
				return fmt.Errorf("dimse: release: %w", err)
			}
			c.u.pduLeft = 0
		}
	}
}

// Abort sends A-ABORT and closes the connection.
// It may be called while another operation is in progress, which then fails.
func (c *Client) Abort() error {
	// Unblock an operation in progress (it holds c.mu and the write lock).
	_ = c.u.conn.SetDeadline(time.Now())
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		_ = c.u.conn.Close()
		return nil
	}
	c.closed = true
	c.u.abort(abortSourceUser, abortReasonNone)
	return nil
}

// checkAE rejects AE titles that do not fit PS3.5's AE VR: 1-16 characters of
// the default repertoire, no backslash or control characters, not all spaces.
func checkAE(ae string) error {
	if len(ae) > 16 || strings.TrimSpace(ae) == "" {
		return fmt.Errorf("dimse: AE title %q must be 1-16 characters", ae)
	}
	for _, r := range ae {
		if r < 0x20 || r > 0x7e || r == '\\' {
			return fmt.Errorf("dimse: AE title %q has a character not allowed in an AE title", ae)
		}
	}
	return nil
}
