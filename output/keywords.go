package output

import (
	"sync"

	"github.com/suyashkumar/dicom/pkg/tag"
)

// keywordCache memoises tag.FindByKeyword, which scans the whole dictionary
// on every call (about 40 µs each; a SEG build makes thousands of lookups).
var keywordCache sync.Map // string -> tag.Info

func findKeyword(keyword string) (tag.Info, error) {
	if v, ok := keywordCache.Load(keyword); ok {
		return v.(tag.Info), nil
	}
	info, err := tag.FindByKeyword(keyword)
	if err != nil {
		return tag.Info{}, err
	}
	keywordCache.Store(keyword, info)
	return info, nil
}
