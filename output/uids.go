package output

import (
	"strconv"
	"strings"

	"anomalynode/internal/dcm"
)

// uidNamespace separates our name-based UIDs from anyone else hashing the same
// strings (the role of the namespace UUID in RFC 9562 version 5).
const uidNamespace = "anomalynode/output/v1"

// DeriveUID returns the 2.25 UID derived from parts under this package's
// namespace (dcm.DeriveUID): the same parts always give the same UID.
func DeriveUID(parts ...string) string { return dcm.DeriveUID(uidNamespace, parts...) }

// Output kinds, part of every derived UID.
const (
	KindSEG = "SEG"
	KindSC  = "SC"
	KindSR  = "SR"
)

// uidFor derives the UID of one role of an output, from the source series and
// model identity; extra parts distinguish versions and slices.
func (r *SeriesResult) uidFor(kind, role string, extra ...string) string {
	study, series := r.sourceUIDs()
	parts := []string{study, series, r.Model.Name, r.Model.Version, strings.ToLower(r.Model.SHA256), kind, role}
	if r.Stack != "" {
		parts = append(parts, "stack", r.Stack)
	}
	return DeriveUID(append(parts, extra...)...)
}

// SeriesUID is the output series of kind (KindSEG, KindSC or KindSR); it does not
// depend on the version, so an amended result lands in the same series.
func (r *SeriesResult) SeriesUID(kind string) string { return r.uidFor(kind, "series") }

// SEGInstanceUID is the SOP Instance UID of the SEG of this result's version.
func (r *SeriesResult) SEGInstanceUID() string {
	return r.uidFor(KindSEG, "instance", "v"+strconv.Itoa(r.version()))
}

// SRInstanceUID is the SOP Instance UID of the measurement report (SR) of
// this result's version.
func (r *SeriesResult) SRInstanceUID() string {
	return r.uidFor(KindSR, "instance", "v"+strconv.Itoa(r.version()))
}

// SCInstanceUID is the SOP Instance UID of the heat map of one source slice
// (named by its SOP Instance UID) for this result's version.
func (r *SeriesResult) SCInstanceUID(sourceSOPInstanceUID string) string {
	return r.uidFor(KindSC, "instance", "v"+strconv.Itoa(r.version()), sourceSOPInstanceUID)
}

// SCFrameInstanceUID is the SOP Instance UID of the heat map of frame
// (0-based) of a source instance. Frame 0, which is every single-frame
// source, has the UID SCInstanceUID gives, so single-frame results keep their
// UIDs and a multi-frame result replaces the first-frame heat map that
// earlier versions made; every other frame gets a UID of its own.
func (r *SeriesResult) SCFrameInstanceUID(sourceSOPInstanceUID string, frame int) string {
	if frame == 0 {
		return r.SCInstanceUID(sourceSOPInstanceUID)
	}
	return r.uidFor(KindSC, "instance", "v"+strconv.Itoa(r.version()), sourceSOPInstanceUID, "frame", strconv.Itoa(frame+1))
}

// NoFindingInstanceUID is the SOP Instance UID of the "no finding" page of
// this result's version.
func (r *SeriesResult) NoFindingInstanceUID() string {
	return r.uidFor(KindSC, "no-finding", "v"+strconv.Itoa(r.version()))
}

func (r *SeriesResult) version() int {
	if r.Version < 1 {
		return 1
	}
	return r.Version
}

func (r *SeriesResult) sourceUIDs() (study, series string) {
	if len(r.Sources) == 0 {
		return "", ""
	}
	h := r.Sources[0].Header
	return getString(h, "StudyInstanceUID"), getString(h, "SeriesInstanceUID")
}
