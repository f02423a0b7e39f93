package dimse

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// ulConn is one upper-layer connection: PDU framing, the state machine, and
// P-DATA fragmentation and reassembly. It reads P-DATA incrementally (a PDV
// header, then its data straight into the caller's buffer) so that a data set
// never sits whole in memory on its way to a handler.
type ulConn struct {
	conn net.Conn
	br   *bufio.Reader
	st   state

	// maxRecv is the largest P-DATA-TF PDU we accept (0: unlimited);
	// peerMax the largest the peer accepts (0: unlimited).
	maxRecv, peerMax uint32

	// pduLeft counts the not yet parsed bytes of the current P-DATA-TF PDU,
	// pdvLeft the not yet read data bytes of the current PDV.
	pduLeft, pdvLeft uint32
	cur              pdv // header of the current PDV (Data unused)

	// readTimeout applies to each PDU read; writeTimeout to each write.
	readTimeout, writeTimeout time.Duration

	wmu  sync.Mutex // serialises writes (an abort may come from Shutdown)
	wbuf []byte

	// aborted makes abort happen once: Shutdown and the association's own
	// goroutine may abort at the same time, and a second abort's deadline
	// would cut the first one's A-ABORT short (a bare close for the peer).
	aborted sync.Once
}

// errTransportClosed is the peer closing the connection without release/abort.
var errTransportClosed = errors.New("dimse: connection closed by peer")

// pduEvent is a non-P-DATA PDU received while P-DATA was expected.
type pduEvent struct {
	Type byte
	Body []byte
}

func (e *pduEvent) Error() string { return fmt.Sprintf("dimse: unexpected PDU type %d", e.Type) }

func newULConn(c net.Conn, maxRecv uint32, st state) *ulConn {
	return &ulConn{conn: c, br: bufio.NewReaderSize(c, 64<<10), maxRecv: maxRecv, st: st}
}

// transition applies ev to the state machine; a disallowed event is a
// protocol error.
func (u *ulConn) transition(ev event) error {
	next, ok := u.st.next(ev)
	if !ok {
		prev := u.st
		u.st = sta1Idle
		return &pduError{Reason: abortUnexpectedPDU, Msg: fmt.Sprintf("event %d not allowed in state Sta%d", ev, prev)}
	}
	u.st = next
	return nil
}

// readPDU reads the next PDU. For P-DATA-TF it reads only the header and
// leaves the PDVs to nextPDV; other PDUs are read whole (bounded).
func (u *ulConn) readPDU() (typ byte, body []byte, err error) {
	if u.readTimeout > 0 {
		_ = u.conn.SetReadDeadline(time.Now().Add(u.readTimeout))
	}
	var h [6]byte
	if _, err := io.ReadFull(u.br, h[:]); err != nil {
		return 0, nil, u.readErr(err)
	}
	typ = h[0]
	n := binary.BigEndian.Uint32(h[2:6])
	switch typ {
	case pduPData:
		if u.maxRecv > 0 && n > u.maxRecv {
			u.st = sta1Idle
			return 0, nil, malformed(abortInvalidParValue, "P-DATA-TF of %d bytes exceeds our maximum PDU length %d", n, u.maxRecv)
		}
		if n < 6 {
			u.st = sta1Idle
			return 0, nil, malformed(abortInvalidParValue, "P-DATA-TF of %d bytes holds no PDV", n)
		}
	case pduAssociateRQ, pduAssociateAC, pduAssociateRJ, pduReleaseRQ, pduReleaseRP, pduAbort:
		if n > maxAssociatePDU {
			u.st = sta1Idle
			return 0, nil, malformed(abortInvalidParValue, "PDU type %d of %d bytes", typ, n)
		}
		body = make([]byte, n)
		if _, err := io.ReadFull(u.br, body); err != nil {
			return 0, nil, u.readErr(err)
		}
		if typ != pduAssociateRQ && typ != pduAssociateAC && n < 4 {
			u.st = sta1Idle
			return 0, nil, malformed(abortInvalidParValue, "PDU type %d of %d bytes", typ, n)
		}
	default:
		u.st = sta1Idle
		return 0, nil, malformed(abortUnrecognizedPDU, "unknown PDU type 0x%02x", typ)
	}
	if err := u.transition(eventForPDU(typ)); err != nil {
		return 0, nil, err
	}
	if typ == pduPData {
		u.pduLeft = n
	}
	return typ, body, nil
}

func (u *ulConn) readErr(err error) error {
	u.st = sta1Idle
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errTransportClosed
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("%w: no PDU within %s", ErrTimeout, u.readTimeout)
	}
	return fmt.Errorf("dimse: read PDU: %w", err)
}

// nextPDV moves to the next PDV, reading a new P-DATA-TF PDU when the current
// one is exhausted. A non-P-DATA PDU is returned as a *pduEvent error.
func (u *ulConn) nextPDV() (pdv, error) {
	for u.pduLeft == 0 {
		typ, body, err := u.readPDU()
		if err != nil {
			return pdv{}, err
		}
		if typ != pduPData {
			return pdv{}, &pduEvent{Type: typ, Body: body}
		}
	}
	if u.pduLeft < 6 {
		u.st = sta1Idle
		return pdv{}, malformed(abortInvalidParValue, "%d stray bytes after the last PDV", u.pduLeft)
	}
	var h [6]byte
	if _, err := io.ReadFull(u.br, h[:]); err != nil {
		return pdv{}, u.readErr(err)
	}
	n := binary.BigEndian.Uint32(h[0:4])
	if n < 2 || n-2 > u.pduLeft-6 {
		u.st = sta1Idle
		return pdv{}, malformed(abortInvalidParValue, "PDV length %d with %d bytes left in the PDU", n, u.pduLeft-4)
	}
	u.pduLeft -= 4 + n
	u.pdvLeft = n - 2
	u.cur = pdv{ContextID: h[4], Command: h[5]&1 != 0, Last: h[5]&2 != 0}
	return u.cur, nil
}

// readPDVData reads data of the current PDV into p.
func (u *ulConn) readPDVData(p []byte) (int, error) {
	if uint32(len(p)) > u.pdvLeft {
		p = p[:u.pdvLeft]
	}
	n, err := u.br.Read(p)
	u.pdvLeft -= uint32(n)
	if err != nil {
		return n, u.readErr(err)
	}
	return n, nil
}

// readCommand reassembles the next command set. A-RELEASE-RQ and A-ABORT come
// back as *pduEvent when they arrive before the command's first fragment.
func (u *ulConn) readCommand() (byte, *command, error) {
	var buf []byte
	var ctxID byte
	first := true
	for {
		h, err := u.nextPDV()
		if err != nil {
			if !first {
				var ev *pduEvent
				if errors.As(err, &ev) && ev.Type != pduAbort {
					u.st = sta1Idle
					return 0, nil, malformed(abortUnexpectedPDU, "PDU type %d inside a command", ev.Type)
				}
			}
			return 0, nil, err
		}
		if !h.Command || (!first && h.ContextID != ctxID) {
			u.st = sta1Idle
			return 0, nil, malformed(abortUnexpectedPar, "data PDV (context %d) where a command was expected", h.ContextID)
		}
		ctxID, first = h.ContextID, false
		if len(buf)+int(u.pdvLeft) > maxCommandSet {
			u.st = sta1Idle
			return 0, nil, malformed(abortInvalidParValue, "command set over %d bytes", maxCommandSet)
		}
		start := len(buf)
		buf = append(buf, make([]byte, u.pdvLeft)...)
		if _, err := io.ReadFull(u.br, buf[start:]); err != nil {
			return 0, nil, u.readErr(err)
		}
		u.pdvLeft = 0
		if h.Last {
			break
		}
	}
	cmd, err := decodeCommand(buf)
	if err != nil {
		u.st = sta1Idle
		return 0, nil, &pduError{Reason: abortInvalidParValue, Msg: err.Error()}
	}
	return ctxID, cmd, nil
}

// dataReader streams one message's data set from its PDVs.
type dataReader struct {
	u     *ulConn
	ctxID byte
	last  bool // the PDV being read is the last one
	err   error
	n     int64
}

func (d *dataReader) Read(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	for d.u.pdvLeft == 0 {
		if d.last {
			d.err = io.EOF
			return 0, io.EOF
		}
		h, err := d.u.nextPDV()
		if err != nil {
			var ev *pduEvent
			if errors.As(err, &ev) {
				if ev.Type == pduAbort {
					err = abortErr(ev.Body)
				} else {
					d.u.st = sta1Idle
					err = malformed(abortUnexpectedPDU, "PDU type %d inside a data set", ev.Type)
				}
			}
			d.err = err
			return 0, err
		}
		if h.Command || h.ContextID != d.ctxID {
			d.u.st = sta1Idle
			d.err = malformed(abortUnexpectedPar, "PDV (context %d, command %v) inside the data set of context %d", h.ContextID, h.Command, d.ctxID)
			return 0, d.err
		}
		d.last = h.Last
	}
	if len(p) == 0 {
		return 0, nil
	}
	n, err := d.u.readPDVData(p)
	d.n += int64(n)
	if err != nil {
		d.err = err
	}
	return n, err
}

// drain discards what the handler left unread.
func (d *dataReader) drain() error {
	_, err := io.Copy(io.Discard, d)
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

func abortErr(body []byte) error {
	var src, reason byte
	if len(body) >= 4 {
		src, reason = body[2], body[3]
	}
	return &AbortError{Source: src, Reason: reason}
}

// write sends one PDU after checking ev against the state machine.
func (u *ulConn) write(ev event, b []byte) error {
	u.wmu.Lock()
	defer u.wmu.Unlock()
	if err := u.transition(ev); err != nil {
		return err
	}
	return u.writeLocked(b)
}

func (u *ulConn) writeLocked(b []byte) error {
	if u.writeTimeout > 0 {
		_ = u.conn.SetWriteDeadline(time.Now().Add(u.writeTimeout))
	}
	if _, err := u.conn.Write(b); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("%w: write PDU: %v", ErrTimeout, err)
		}
		return fmt.Errorf("dimse: write PDU: %w", err)
	}
	return nil
}

// abort sends A-ABORT (best effort, short deadline) and closes the connection.
// It is safe to call from another goroutine; only the first call sends, and a
// call made while it runs returns when the connection is closed.
func (u *ulConn) abort(source, reason byte) {
	u.aborted.Do(func() {
		// Unblock a read or a write in progress on another goroutine first.
		_ = u.conn.SetDeadline(time.Now())
		u.wmu.Lock()
		_ = u.conn.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = u.conn.Write(encodeAbort(source, reason))
		u.wmu.Unlock()
		_ = u.conn.Close()
	})
}

// maxPDVData is the most data one PDV may carry towards the peer.
func (u *ulConn) maxPDVData() int {
	const ceiling = 1 << 20 // bounds our send buffer when the peer says "unlimited"
	if u.peerMax == 0 || u.peerMax > ceiling {
		return ceiling - 6
	}
	if u.peerMax <= 6 {
		return 1
	}
	return int(u.peerMax) - 6
}

// sendMessage sends a command set and, when data is not nil, size bytes of
// data set read from it, each fragmented to the peer's maximum PDU length.
func (u *ulConn) sendMessage(ctxID byte, cmd []byte, data io.Reader, size int64) error {
	u.wmu.Lock()
	defer u.wmu.Unlock()
	if err := u.transition(evSendPData); err != nil {
		return err
	}
	maxData := u.maxPDVData()
	if cap(u.wbuf) < 12+maxData {
		u.wbuf = make([]byte, 12+maxData)
	}
	buf := u.wbuf[:cap(u.wbuf)]
	frame := func(k int, command, last bool) []byte {
		binary.BigEndian.PutUint32(buf[0:4], uint32(pduPData)<<24)
		binary.BigEndian.PutUint32(buf[2:6], uint32(6+k))
		binary.BigEndian.PutUint32(buf[6:10], uint32(2+k))
		buf[10] = ctxID
		buf[11] = b2u(command) | b2u(last)<<1
		return buf[:12+k]
	}
	for rest := cmd; ; {
		k := min(len(rest), maxData)
		copy(buf[12:], rest[:k])
		rest = rest[k:]
		if err := u.writeLocked(frame(k, true, len(rest) == 0)); err != nil {
			return err
		}
		if len(rest) == 0 {
			break
		}
	}
	if data == nil {
		return nil
	}
	for left := size; ; {
		k := int(min(left, int64(maxData)))
		if _, err := io.ReadFull(data, buf[12:12+k]); err != nil {
			return fmt.Errorf("dimse: read data set to send: %w", err)
		}
		left -= int64(k)
		if err := u.writeLocked(frame(k, false, left == 0)); err != nil {
			return err
		}
		if left == 0 {
			return nil
		}
	}
}
