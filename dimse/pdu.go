package dimse

import (
	"encoding/binary"
	"fmt"
	"strings"

	"anomalynode/internal/dcm"
)

// PDU types (PS3.8 9.3).
const (
	pduAssociateRQ = 0x01
	pduAssociateAC = 0x02
	pduAssociateRJ = 0x03
	pduPData       = 0x04
	pduReleaseRQ   = 0x05
	pduReleaseRP   = 0x06
	pduAbort       = 0x07
)

// Item types inside A-ASSOCIATE-RQ/AC (PS3.8 9.3.2, 9.3.3, Annex D).
const (
	itemAppContext     = 0x10
	itemPresContextRQ  = 0x20
	itemPresContextAC  = 0x21
	itemAbstractSyntax = 0x30
	itemTransferSyntax = 0x40
	itemUserInfo       = 0x50
	itemMaxLength      = 0x51
	itemImplClassUID   = 0x52
	itemAsyncOps       = 0x53
	itemRoleSelection  = 0x54
	itemImplVersion    = 0x55
)

// A-ABORT sources and reasons (PS3.8 9.3.8).
const (
	abortSourceUser      = 0
	abortSourceProvider  = 2
	abortReasonNone      = 0
	abortUnrecognizedPDU = 1
	abortUnexpectedPDU   = 2
	abortUnrecognizedPar = 4
	abortUnexpectedPar   = 5
	abortInvalidParValue = 6
)

// maxAssociatePDU bounds A-ASSOCIATE and other non-data PDUs we read: they are
// small in practice (128 contexts fit in ~20 KiB) and must not let a peer make
// us allocate arbitrary memory.
const maxAssociatePDU = 1 << 18

// roleSelection is an SCP/SCU role selection sub-item (PS3.7 D.3.3.4).
type roleSelection struct {
	SOPClassUID string
	SCU, SCP    bool
}

// associate is the content of an A-ASSOCIATE-RQ or -AC PDU.
type associate struct {
	ProtocolVersion              uint16
	CalledAE, CallingAE          string
	AppContext                   string
	Contexts                     []PresentationContext
	MaxPDU                       uint32
	ImplClassUID                 string
	ImplVersion                  string
	HasAsync                     bool
	AsyncInvoked, AsyncPerformed uint16
	Roles                        []roleSelection
}

// pduError is a malformed PDU; the association is aborted with Reason.
type pduError struct {
	Reason byte
	Msg    string
}

func (e *pduError) Error() string { return "dimse: malformed PDU: " + e.Msg }

// Is lets errors.Is(err, ErrProtocol) match.
func (e *pduError) Is(target error) bool { return target == ErrProtocol }

func malformed(reason byte, format string, args ...any) error {
	return &pduError{Reason: reason, Msg: fmt.Sprintf(format, args...)}
}

// encodeAssociate builds a complete A-ASSOCIATE-RQ (typ 1) or -AC (typ 2) PDU.
func encodeAssociate(typ byte, a *associate) []byte {
	b := make([]byte, 0, 512)
	b = append(b, typ, 0, 0, 0, 0, 0) // length patched below
	b = binary.BigEndian.AppendUint16(b, 1)
	b = append(b, 0, 0)
	b = append(b, padAE(a.CalledAE)...)
	b = append(b, padAE(a.CallingAE)...)
	b = append(b, make([]byte, 32)...)
	b = appendItem(b, itemAppContext, []byte(a.AppContext))
	for _, pc := range a.Contexts {
		var v []byte
		if typ == pduAssociateRQ {
			v = append(v, pc.ID, 0, 0, 0)
			v = appendItem(v, itemAbstractSyntax, []byte(pc.AbstractSyntax))
			for _, ts := range pc.TransferSyntaxes {
				v = appendItem(v, itemTransferSyntax, []byte(ts))
			}
			b = appendItem(b, itemPresContextRQ, v)
		} else {
			v = append(v, pc.ID, 0, pc.Result, 0)
			ts := pc.TransferSyntax
			if pc.Result != ContextAccepted && ts == "" {
				// PS3.8 9.3.3.2: the sub-item is present but ignored when rejected.
				ts = dcm.ImplicitVRLittleEndian
			}
			v = appendItem(v, itemTransferSyntax, []byte(ts))
			b = appendItem(b, itemPresContextAC, v)
		}
	}
	var u []byte
	u = appendItem(u, itemMaxLength, binary.BigEndian.AppendUint32(nil, a.MaxPDU))
	u = appendItem(u, itemImplClassUID, []byte(a.ImplClassUID))
	if a.HasAsync {
		u = appendItem(u, itemAsyncOps, binary.BigEndian.AppendUint32(nil, uint32(a.AsyncInvoked)<<16|uint32(a.AsyncPerformed)))
	}
	for _, r := range a.Roles {
		v := binary.BigEndian.AppendUint16(nil, uint16(len(r.SOPClassUID)))
		v = append(v, r.SOPClassUID...)
		v = append(v, b2u(r.SCU), b2u(r.SCP))
		u = appendItem(u, itemRoleSelection, v)
	}
	if a.ImplVersion != "" {
		u = appendItem(u, itemImplVersion, []byte(a.ImplVersion))
	}
	b = appendItem(b, itemUserInfo, u)
	binary.BigEndian.PutUint32(b[2:6], uint32(len(b)-6))
	return b
}

func b2u(v bool) byte {
	if v {
		return 1
	}
	return 0
}

func appendItem(b []byte, typ byte, v []byte) []byte {
	b = append(b, typ, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(len(v)))
	return append(b, v...)
}

// padAE returns the 16-byte space-padded form of an AE title.
func padAE(ae string) []byte {
	b := []byte("                ")
	copy(b, ae)
	return b
}

// trimAE strips the padding (spaces, and NULs some peers send) of an AE title.
func trimAE(b []byte) string {
	return strings.TrimRight(strings.TrimLeft(string(b), " "), " \x00")
}

// trimUID strips the NUL padding of a UID value.
func trimUID(b []byte) string {
	return strings.TrimRight(string(b), "\x00 ")
}

// decodeAssociate parses the variable part (after the 6-byte header) of an
// A-ASSOCIATE-RQ or -AC.
func decodeAssociate(typ byte, p []byte) (*associate, error) {
	if len(p) < 68 {
		return nil, malformed(abortInvalidParValue, "A-ASSOCIATE of %d bytes, need at least 68", len(p))
	}
	a := &associate{
		ProtocolVersion: binary.BigEndian.Uint16(p[0:2]),
		CalledAE:        trimAE(p[4:20]),
		CallingAE:       trimAE(p[20:36]),
	}
	rest := p[68:]
	for len(rest) > 0 {
		it, v, r, err := nextItem(rest)
		if err != nil {
			return nil, err
		}
		rest = r
		switch it {
		case itemAppContext:
			a.AppContext = trimUID(v)
		case itemPresContextRQ, itemPresContextAC:
			if (typ == pduAssociateRQ) != (it == itemPresContextRQ) {
				return nil, malformed(abortUnexpectedPar, "presentation context item 0x%02x in PDU type %d", it, typ)
			}
			pc, err := decodePresContext(it, v)
			if err != nil {
				return nil, err
			}
			a.Contexts = append(a.Contexts, pc)
		case itemUserInfo:
			if err := decodeUserInfo(a, v); err != nil {
				return nil, err
			}
		default:
			// PS3.8 9.3.1: unknown items are ignored.
		}
	}
	return a, nil
}

// nextItem splits one item (type, reserved, 2-byte length, value) off p.
func nextItem(p []byte) (typ byte, v, rest []byte, err error) {
	if len(p) < 4 {
		return 0, nil, nil, malformed(abortInvalidParValue, "truncated item header (%d bytes)", len(p))
	}
	n := int(binary.BigEndian.Uint16(p[2:4]))
	if len(p) < 4+n {
		return 0, nil, nil, malformed(abortInvalidParValue, "item 0x%02x claims %d bytes, %d left", p[0], n, len(p)-4)
	}
	return p[0], p[4 : 4+n], p[4+n:], nil
}

func decodePresContext(it byte, v []byte) (PresentationContext, error) {
	var pc PresentationContext
	if len(v) < 4 {
		return pc, malformed(abortInvalidParValue, "presentation context item of %d bytes", len(v))
	}
	pc.ID = v[0]
	if it == itemPresContextAC {
		pc.Result = v[2]
	}
	rest := v[4:]
	for len(rest) > 0 {
		st, sv, r, err := nextItem(rest)
		if err != nil {
			return pc, err
		}
		rest = r
		switch st {
		case itemAbstractSyntax:
			pc.AbstractSyntax = trimUID(sv)
		case itemTransferSyntax:
			if it == itemPresContextAC {
				pc.TransferSyntax = trimUID(sv)
			} else {
				pc.TransferSyntaxes = append(pc.TransferSyntaxes, trimUID(sv))
			}
		}
	}
	return pc, nil
}

func decodeUserInfo(a *associate, v []byte) error {
	rest := v
	for len(rest) > 0 {
		st, sv, r, err := nextItem(rest)
		if err != nil {
			return err
		}
		rest = r
		switch st {
		case itemMaxLength:
			if len(sv) != 4 {
				return malformed(abortInvalidParValue, "maximum length sub-item of %d bytes", len(sv))
			}
			a.MaxPDU = binary.BigEndian.Uint32(sv)
		case itemImplClassUID:
			a.ImplClassUID = trimUID(sv)
		case itemImplVersion:
			a.ImplVersion = strings.TrimRight(string(sv), " \x00")
		case itemAsyncOps:
			if len(sv) != 4 {
				return malformed(abortInvalidParValue, "asynchronous operations sub-item of %d bytes", len(sv))
			}
			a.HasAsync = true
			a.AsyncInvoked = binary.BigEndian.Uint16(sv[0:2])
			a.AsyncPerformed = binary.BigEndian.Uint16(sv[2:4])
		case itemRoleSelection:
			if len(sv) < 2 {
				return malformed(abortInvalidParValue, "role selection sub-item of %d bytes", len(sv))
			}
			n := int(binary.BigEndian.Uint16(sv[0:2]))
			if len(sv) != 2+n+2 {
				return malformed(abortInvalidParValue, "role selection sub-item of %d bytes with a %d-byte UID", len(sv), n)
			}
			a.Roles = append(a.Roles, roleSelection{
				SOPClassUID: trimUID(sv[2 : 2+n]),
				SCU:         sv[2+n] == 1,
				SCP:         sv[3+n] == 1,
			})
		default:
			// Extended negotiation, user identity and others: not negotiated,
			// which PS3.7 D.3.3 allows by simply not answering them.
		}
	}
	return nil
}

// encodeReject builds an A-ASSOCIATE-RJ PDU.
func encodeReject(result, source, reason byte) []byte {
	return []byte{pduAssociateRJ, 0, 0, 0, 0, 4, 0, result, source, reason}
}

// encodeAbort builds an A-ABORT PDU.
func encodeAbort(source, reason byte) []byte {
	return []byte{pduAbort, 0, 0, 0, 0, 4, 0, 0, source, reason}
}

// encodeRelease builds an A-RELEASE-RQ or -RP PDU.
func encodeRelease(typ byte) []byte {
	return []byte{typ, 0, 0, 0, 0, 4, 0, 0, 0, 0}
}

// pdv is one presentation data value item of a P-DATA-TF PDU.
type pdv struct {
	ContextID byte
	Command   bool
	Last      bool
	Data      []byte
}

// decodePData splits the variable part of a P-DATA-TF PDU into its PDVs. It is
// used by the fuzz target and tests; the association reads PDVs incrementally.
func decodePData(p []byte) ([]pdv, error) {
	var out []pdv
	for len(p) > 0 {
		if len(p) < 6 {
			return nil, malformed(abortInvalidParValue, "truncated PDV header")
		}
		n := binary.BigEndian.Uint32(p[0:4])
		if n < 2 || uint64(n) > uint64(len(p)-4) {
			return nil, malformed(abortInvalidParValue, "PDV length %d with %d bytes left", n, len(p)-4)
		}
		out = append(out, pdv{ContextID: p[4], Command: p[5]&1 != 0, Last: p[5]&2 != 0, Data: p[6 : 4+n]})
		p = p[4+n:]
	}
	return out, nil
}

// encodePData builds a P-DATA-TF PDU holding the given PDVs.
func encodePData(pdvs ...pdv) []byte {
	n := 0
	for _, v := range pdvs {
		n += 6 + len(v.Data)
	}
	b := make([]byte, 6, 6+n)
	b[0] = pduPData
	binary.BigEndian.PutUint32(b[2:6], uint32(n))
	for _, v := range pdvs {
		b = binary.BigEndian.AppendUint32(b, uint32(2+len(v.Data)))
		b = append(b, v.ContextID, b2u(v.Command)|b2u(v.Last)<<1)
		b = append(b, v.Data...)
	}
	return b
}
