package dcm

import "errors"

// ErrNotDICOM reports bytes that do not start like DICOM at all (no Part-10
// "DICM" prefix, nor a data set a sniffer recognises): the one sentinel every
// stage tests with errors.Is, so a folder scan, the decoder and the offline
// scorer all skip the same files.
var ErrNotDICOM = errors.New("dcm: not a DICOM file")
