package dcm

import (
	"math"
	"strconv"
	"strings"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
)

// String returns the first string value of an element, trimmed of padding
// ("" when absent).
func String(ds *dicom.Dataset, t tag.Tag) string {
	el, err := ds.FindElementByTag(t)
	if err != nil || el.Value == nil {
		return ""
	}
	if v, ok := el.Value.GetValue().([]string); ok && len(v) > 0 {
		return strings.TrimRight(strings.TrimSpace(v[0]), "\x00")
	}
	return ""
}

// Number returns the i-th numeric value of an element, whether stored as
// ints, floats or decimal strings (DS/IS).
func Number(ds *dicom.Dataset, t tag.Tag, i int) (float64, bool) {
	el, err := ds.FindElementByTag(t)
	if err != nil {
		return 0, false
	}
	return NumberOf(el, i)
}

// NumberOf is Number on an element already found (nil: absent). A value
// that does not parse, or is NaN or infinite, is absent.
func NumberOf(el *dicom.Element, i int) (float64, bool) {
	if el == nil || el.Value == nil {
		return 0, false
	}
	switch v := el.Value.GetValue().(type) {
	case []int:
		if i < len(v) {
			return float64(v[i]), true
		}
	case []float64:
		if i < len(v) {
			return v[i], true
		}
	case []string:
		// Some writers put several values in one string separated by '\'.
		var parts []string
		for _, s := range v {
			parts = append(parts, strings.Split(s, "\\")...)
		}
		if i < len(parts) {
			f, err := strconv.ParseFloat(strings.TrimRight(strings.TrimSpace(parts[i]), "\x00"), 64)
			return f, err == nil && !math.IsNaN(f) && !math.IsInf(f, 0)
		}
	}
	return 0, false
}
