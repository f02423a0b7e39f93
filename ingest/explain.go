package ingest

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"anomalynode/internal/dcm"

	"github.com/suyashkumar/dicom/pkg/tag"
)

// Explanation is the routing dry run of one file ('anomalynode route').
type Explanation struct {
	// Path of the file.
	Path string
	// Skipped says why the file would not be ingested at all ("" if it would).
	Skipped string
	// SOPInstanceUID, SeriesInstanceUID, Modality and SOPClassUID identify it.
	SOPInstanceUID, SeriesInstanceUID, Modality, SOPClassUID string
	// Decision is the routing decision.
	Decision Decision
	// Traces are the rules evaluated before (and including) the match.
	Traces []RuleTrace
}

// ExplainFile sniffs a file and routes it as if it arrived from src (Path is
// filled in for folder sources). Files that are not DICOM, or are DICOMDIRs,
// come back with Skipped set; malformed files return an error.
func ExplainFile(r *Router, path string, src Source) (*Explanation, error) {
	ex := &Explanation{Path: path}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("ingest: %w", err)
	}
	defer f.Close()
	fi, err := SniffFile(f, 64<<20)
	switch {
	case errors.Is(err, dcm.ErrNotDICOM):
		ex.Skipped = "not a DICOM file"
		return ex, nil
	case err != nil:
		return nil, fmt.Errorf("%w: %s", err, path)
	case fi.IsDICOMDIR():
		ex.Skipped = "DICOMDIR (media directory, never ingested)"
		return ex, nil
	}
	h := fi.Header
	if h.Str(tag.SOPClassUID) == "" && fi.SOPClassUID != "" {
		h.Set(tag.SOPClassUID, fi.SOPClassUID)
	}
	if src.Kind == SourceFolder && src.Path == "" {
		if abs, err := filepath.Abs(path); err == nil {
			src.Path = abs
		} else {
			src.Path = path
		}
	}
	ex.SOPInstanceUID, ex.SeriesInstanceUID = h.Str(tag.SOPInstanceUID), h.Str(tag.SeriesInstanceUID)
	ex.Modality, ex.SOPClassUID = h.Str(tag.Modality), h.Str(tag.SOPClassUID)
	ex.Decision, ex.Traces = r.Explain(src, h)
	return ex, nil
}

// Write prints the explanation for people: the decision, the conditions that
// held, and why each earlier rule did not match.
func (ex *Explanation) Write(w io.Writer) {
	if ex.Skipped != "" {
		fmt.Fprintf(w, "%s: skipped: %s\n", ex.Path, ex.Skipped)
		return
	}
	d := ex.Decision
	fmt.Fprintf(w, "%s: ", ex.Path)
	switch {
	case d.Rule == NonImageRule || d.Rule == NoRuleMatched || d.Rule == OwnOutputRule:
		fmt.Fprintf(w, "ignored %s\n", d.Rule)
	case d.Ignore:
		fmt.Fprintf(w, "ignored by rule %q\n", d.Rule)
	default:
		settle := ""
		if d.ImpliedSettle != nil {
			settle = fmt.Sprintf(", implied settle %v", *d.ImpliedSettle)
		}
		fmt.Fprintf(w, "rule %q -> model %q, destinations [%s], series timeout %v%s\n", d.Rule, d.Model, strings.Join(d.Destinations, ", "), d.SeriesTimeout, settle)
	}
	fmt.Fprintf(w, "  instance %s series %s modality %s class %s\n", ex.SOPInstanceUID, ex.SeriesInstanceUID, ex.Modality, ex.SOPClassUID)
	for _, tr := range ex.Traces {
		if !tr.Matched {
			fmt.Fprintf(w, "  rule %q did not match: %s\n", tr.Rule, tr.Failed)
		}
	}
	for _, r := range d.Reasons {
		fmt.Fprintf(w, "  because %s\n", r)
	}
}
