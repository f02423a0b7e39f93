// Package dimse is the node's own DICOM network stack: the PS3.8 upper layer
// (PDUs, association negotiation, the state machine with ARTIM/idle/DIMSE
// timers, P-DATA fragmentation honouring the peer's maximum PDU length) and
// PS3.7 DIMSE (C-ECHO, C-STORE) as SCP (Server) and SCU (Client), with
// optional DICOM TLS (PS3.15 BCP 195). It knows nothing of models, queues or
// storage: a C-STORE is handed to a StoreHandler, whose status is what the
// SCU receives.
//
// Design:
//   - One goroutine per association; a panic in a handler or a protocol error
//     aborts that association only (A-ABORT), never the process.
//   - The data set of a C-STORE reaches the handler as an io.Reader that pulls
//     PDVs straight off the connection; the server never holds a whole data
//     set, and drains whatever the handler leaves unread.
//   - Server.Shutdown stops accepting, lets open associations finish until
//     its context ends, then aborts them. SetPolicy swaps the acceptance policy
//     for new associations without touching open ones.
//
// Libraries, and what each is used for:
//   - github.com/grailbio/go-dicom: dicomtag names the group-0000 command
//     elements and dicomio's Implicit VR LE encoder writes command sets. Its
//     decoder is not used on network input: on byte slices it has no length
//     limit, so decodeCommand checks every length itself.
//   - github.com/suyashkumar/dicom: its data dictionary gives VRs when a data
//     set is converted from Implicit to Explicit VR LE (ConvertDataSet), and
//     tests write their DICOM files with it. Data sets are otherwise passed
//     through byte for byte, never parsed and re-written, so what arrives is
//     exactly what was sent.
//   - compress/flate: Deflated Explicit VR Little Endian (inflated for the
//     handler, deflated/inflated by ConvertDataSet).
//
// PDU, command-set and Part-10 meta header encoding are written here: they
// are small, and owning them keeps every untrusted length under our checks
// (see the fuzz targets).
package dimse
