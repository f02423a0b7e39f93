// Package dimse is the node's own DICOM network stack: the PS3.8 upper layer
// (PDUs, association negotiation, ARTIM/idle timers, P-DATA fragmentation) and
// PS3.7 DIMSE (C-ECHO, C-STORE) as SCP (Server) and SCU (Client), with optional
// DICOM TLS. It knows nothing of models, queues or files.
package dimse
