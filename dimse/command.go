package dimse

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/grailbio/go-dicom/dicomio"
	"github.com/grailbio/go-dicom/dicomtag"
)

// DIMSE command field values (PS3.7 E.1).
const (
	cmdCStoreRQ  = 0x0001
	cmdCStoreRSP = 0x8001
	cmdCEchoRQ   = 0x0030
	cmdCEchoRSP  = 0x8030
	cmdCCancelRQ = 0x0FFF
)

// commandDataSetNone is the CommandDataSetType value meaning "no data set".
const commandDataSetNone = 0x0101

// Priority values for C-STORE (PS3.7 9.1.1.1.8).
const (
	PriorityMedium = 0x0000
	PriorityHigh   = 0x0001
	PriorityLow    = 0x0002
)

// command is a decoded DIMSE command set (group 0000). Only the elements C-ECHO
// and C-STORE use are kept; unknown ones are skipped.
type command struct {
	Field                   uint16
	MessageID               uint16
	MessageIDRespondedTo    uint16
	AffectedSOPClassUID     string
	AffectedSOPInstanceUID  string
	Priority                uint16
	DataSetType             uint16
	Status                  Status
	HasStatus               bool
	ErrorComment            string
	MoveOriginatorAE        string
	MoveOriginatorMessageID uint16
}

// hasDataSet reports whether a data set follows the command.
func (c *command) hasDataSet() bool { return c.DataSetType != commandDataSetNone }

// Tags of the command elements we read and write; grailbio's dicomtag names
// them so the code reads like PS3.7 E.1.
var (
	tagCommandGroupLength      = dicomtag.CommandGroupLength
	tagAffectedSOPClassUID     = dicomtag.AffectedSOPClassUID
	tagCommandField            = dicomtag.CommandField
	tagMessageID               = dicomtag.MessageID
	tagMessageIDRespondedTo    = dicomtag.MessageIDBeingRespondedTo
	tagPriority                = dicomtag.Priority
	tagCommandDataSetType      = dicomtag.CommandDataSetType
	tagStatus                  = dicomtag.Status
	tagErrorComment            = dicomtag.ErrorComment
	tagAffectedSOPInstanceUID  = dicomtag.AffectedSOPInstanceUID
	tagMoveOriginatorAE        = dicomtag.MoveOriginatorApplicationEntityTitle
	tagMoveOriginatorMessageID = dicomtag.MoveOriginatorMessageID
)

// encode writes the command set in Implicit VR Little Endian, elements in tag
// order, led by a CommandGroupLength counting every byte after it (PS3.7 6.3.1).
func (c *command) encode() []byte {
	e := dicomio.NewBytesEncoder(binary.LittleEndian, dicomio.ImplicitVR)
	uid := func(t dicomtag.Tag, v string) {
		if v == "" {
			return
		}
		if len(v)%2 == 1 {
			v += "\x00"
		}
		writeHeader(e, t, len(v))
		e.WriteString(v)
	}
	text := func(t dicomtag.Tag, v string) {
		if v == "" {
			return
		}
		if len(v)%2 == 1 {
			v += " "
		}
		writeHeader(e, t, len(v))
		e.WriteString(v)
	}
	us := func(t dicomtag.Tag, v uint16) {
		writeHeader(e, t, 2)
		e.WriteUInt16(v)
	}
	isRQ := c.Field&0x8000 == 0
	uid(tagAffectedSOPClassUID, c.AffectedSOPClassUID)
	us(tagCommandField, c.Field)
	if isRQ {
		us(tagMessageID, c.MessageID)
	} else {
		us(tagMessageIDRespondedTo, c.MessageIDRespondedTo)
	}
	if c.Field == cmdCStoreRQ {
		us(tagPriority, c.Priority)
	}
	us(tagCommandDataSetType, c.DataSetType)
	if !isRQ {
		us(tagStatus, uint16(c.Status))
		if c.ErrorComment != "" {
			comment := c.ErrorComment
			if len(comment) > 64 { // LO holds at most 64 characters
				comment = comment[:64]
			}
			text(tagErrorComment, comment)
		}
	}
	uid(tagAffectedSOPInstanceUID, c.AffectedSOPInstanceUID)
	if c.MoveOriginatorAE != "" {
		text(tagMoveOriginatorAE, c.MoveOriginatorAE)
		us(tagMoveOriginatorMessageID, c.MoveOriginatorMessageID)
	}
	body := e.Bytes()
	out := dicomio.NewBytesEncoder(binary.LittleEndian, dicomio.ImplicitVR)
	writeHeader(out, tagCommandGroupLength, 4)
	out.WriteUInt32(uint32(len(body)))
	out.WriteBytes(body)
	return out.Bytes()
}

func writeHeader(e *dicomio.Encoder, t dicomtag.Tag, n int) {
	e.WriteUInt16(t.Group)
	e.WriteUInt16(t.Element)
	e.WriteUInt32(uint32(n))
}

// maxCommandSet bounds a command set we reassemble: real ones are ~200 bytes.
const maxCommandSet = 1 << 16

// decodeCommand parses an Implicit VR LE command set. It checks bounds itself
// rather than through dicomio.Decoder, whose byte-slice decoder has no length
// limit and would allocate whatever a hostile length asks for.
func decodeCommand(b []byte) (*command, error) {
	c := &command{DataSetType: commandDataSetNone}
	seenField := false
	for len(b) > 0 {
		if len(b) < 8 {
			return nil, fmt.Errorf("%w: command set: truncated element header", ErrProtocol)
		}
		group := binary.LittleEndian.Uint16(b[0:2])
		elem := binary.LittleEndian.Uint16(b[2:4])
		n := binary.LittleEndian.Uint32(b[4:8])
		if group != 0x0000 {
			return nil, fmt.Errorf("%w: command set: element (%04X,%04X) outside group 0000", ErrProtocol, group, elem)
		}
		if uint64(n) > uint64(len(b)-8) {
			return nil, fmt.Errorf("%w: command set: element (0000,%04X) claims %d bytes, %d left", ErrProtocol, elem, n, len(b)-8)
		}
		v := b[8 : 8+n]
		b = b[8+n:]
		t := dicomtag.Tag{Group: group, Element: elem}
		us := func() (uint16, error) {
			if len(v) != 2 {
				return 0, fmt.Errorf("%w: command set: %s has %d bytes, want 2", ErrProtocol, t, len(v))
			}
			return binary.LittleEndian.Uint16(v), nil
		}
		var err error
		switch t {
		case tagCommandField:
			c.Field, err = us()
			seenField = true
		case tagMessageID:
			c.MessageID, err = us()
		case tagMessageIDRespondedTo:
			c.MessageIDRespondedTo, err = us()
		case tagPriority:
			c.Priority, err = us()
		case tagCommandDataSetType:
			c.DataSetType, err = us()
		case tagStatus:
			var s uint16
			s, err = us()
			c.Status, c.HasStatus = Status(s), true
		case tagMoveOriginatorMessageID:
			c.MoveOriginatorMessageID, err = us()
		case tagAffectedSOPClassUID:
			c.AffectedSOPClassUID = trimUID(v)
		case tagAffectedSOPInstanceUID:
			c.AffectedSOPInstanceUID = trimUID(v)
		case tagErrorComment:
			c.ErrorComment = strings.TrimRight(string(v), " \x00")
		case tagMoveOriginatorAE:
			c.MoveOriginatorAE = strings.TrimSpace(strings.TrimRight(string(v), "\x00"))
		}
		if err != nil {
			return nil, err
		}
	}
	if !seenField {
		return nil, fmt.Errorf("%w: command set without CommandField", ErrProtocol)
	}
	return c, nil
}
