package output

import (
	"anomalynode/configs"
)

// SROptionsFrom turns the output section into measurement-report options:
// the device is this node by its AE title and equipment, findings are typed
// like the SEG's segments.
func SROptionsFrom(c *configs.Config) SROptions {
	o := c.Output
	return SROptions{
		SeriesDescription: o.SRSeriesDescription,
		SeriesNumber:      o.SRSeriesNumber,
		Disabled:          !o.SREnabled(),
		FindingType:       Code{o.SegmentType.Value, o.SegmentType.Scheme, o.SegmentType.Meaning},
		AETitle:           c.DIMSE.AETitle,
		Equipment:         equipment(c),
	}
}

// SRDestinations is the part of a routing decision's destinations that takes
// measurement reports: all of them unless a destination sets sr: false (an
// archive that refuses SR). Unknown names are kept, so the queue reports them
// as it does for the SEG.
func SRDestinations(c *configs.Config, dests []string) []string {
	out := make([]string, 0, len(dests))
	for _, n := range dests {
		if d, ok := c.Destinations[n]; ok && !d.AcceptsSR() {
			continue
		}
		out = append(out, n)
	}
	return out
}
