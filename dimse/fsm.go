package dimse

// The association state machine of PS3.8 9.2, reduced to the states an
// association of this node passes through. Both Server and Client drive every
// PDU they send or receive through it; an event that is not allowed in the
// current state is a protocol violation and aborts the association (AA-1/AA-2).
// The release-collision states (Sta9-12) are folded into Sta7: a collision is
// answered with A-RELEASE-RP and the association ends.

type state uint8

const (
	sta1Idle             state = 1  // no association
	sta2AwaitAssocRQ     state = 2  // acceptor: transport open, ARTIM running
	sta3AwaitLocalAssoc  state = 3  // acceptor: A-ASSOCIATE-RQ received, deciding
	sta5AwaitAssocAC     state = 5  // requestor: A-ASSOCIATE-RQ sent
	sta6Established      state = 6  // data transfer
	sta7AwaitReleaseRP   state = 7  // A-RELEASE-RQ sent
	sta8AwaitLocalRel    state = 8  // A-RELEASE-RQ received, answering
	sta13AwaitTransClose state = 13 // release/abort/reject done, ARTIM running
)

type event uint8

const (
	evRecvAssocRQ event = iota + 1
	evRecvAssocAC
	evRecvAssocRJ
	evRecvPData
	evRecvReleaseRQ
	evRecvReleaseRP
	evRecvAbort
	evRecvInvalid // unrecognised or malformed PDU
	evSendAssocRQ
	evSendAssocAC
	evSendAssocRJ
	evSendPData
	evSendReleaseRQ
	evSendReleaseRP
	evSendAbort
	evTimeout         // ARTIM or another timer expired
	evTransportClosed // the peer closed the connection
)

// eventForPDU maps a received PDU type to its event.
func eventForPDU(typ byte) event {
	switch typ {
	case pduAssociateRQ:
		return evRecvAssocRQ
	case pduAssociateAC:
		return evRecvAssocAC
	case pduAssociateRJ:
		return evRecvAssocRJ
	case pduPData:
		return evRecvPData
	case pduReleaseRQ:
		return evRecvReleaseRQ
	case pduReleaseRP:
		return evRecvReleaseRP
	case pduAbort:
		return evRecvAbort
	}
	return evRecvInvalid
}

// next returns the state after ev, and false when ev is not allowed in s (the
// caller then sends A-ABORT and closes, ending in Sta1).
func (s state) next(ev event) (state, bool) {
	// Events allowed in every state.
	switch ev {
	case evRecvAbort, evTransportClosed, evTimeout, evSendAbort:
		return sta1Idle, true
	}
	switch s {
	case sta1Idle:
		switch ev {
		case evSendAssocRQ:
			return sta5AwaitAssocAC, true
		}
	case sta2AwaitAssocRQ:
		if ev == evRecvAssocRQ {
			return sta3AwaitLocalAssoc, true
		}
	case sta3AwaitLocalAssoc:
		switch ev {
		case evSendAssocAC:
			return sta6Established, true
		case evSendAssocRJ:
			return sta13AwaitTransClose, true
		}
	case sta5AwaitAssocAC:
		switch ev {
		case evRecvAssocAC:
			return sta6Established, true
		case evRecvAssocRJ:
			return sta1Idle, true
		}
	case sta6Established:
		switch ev {
		case evRecvPData, evSendPData:
			return sta6Established, true
		case evSendReleaseRQ:
			return sta7AwaitReleaseRP, true
		case evRecvReleaseRQ:
			return sta8AwaitLocalRel, true
		}
	case sta7AwaitReleaseRP:
		switch ev {
		case evRecvPData: // PS3.8 AR-6: data may still arrive
			return sta7AwaitReleaseRP, true
		case evRecvReleaseRP:
			return sta1Idle, true
		case evRecvReleaseRQ: // collision
			return sta8AwaitLocalRel, true
		}
	case sta8AwaitLocalRel:
		switch ev {
		case evSendReleaseRP:
			return sta13AwaitTransClose, true
		case evSendPData: // AR-7: data may still be sent
			return sta8AwaitLocalRel, true
		}
	case sta13AwaitTransClose:
		// Anything but close/abort/timeout is ignored while waiting for close.
		return sta13AwaitTransClose, true
	}
	return sta1Idle, false
}
