package output

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"anomalynode/inference/pixel"
	"anomalynode/internal/dcm"
)

// hostileOpener serves one bare data set, as ingest's store would.
type hostileOpener []byte

func (h hostileOpener) OpenInstance(context.Context, string) (io.ReadCloser, string, error) {
	return io.NopCloser(bytes.NewReader(h)), dcm.ExplicitVRLittleEndian, nil
}

// TestFinaliserHeaderRefusesHostileLength: a source header that declares a
// value of nearly 4 GiB in a few bytes is refused as invalid DICOM by the
// guarded walk, before the parser can allocate what it declares.
func TestFinaliserHeaderRefusesHostileLength(t *testing.T) {
	var ds bytes.Buffer
	el := func(group, elem uint16, vr string, length uint32, value []byte) {
		_ = binary.Write(&ds, binary.LittleEndian, [2]uint16{group, elem})
		ds.WriteString(vr)
		ds.Write([]byte{0, 0})
		_ = binary.Write(&ds, binary.LittleEndian, length)
		ds.Write(value)
	}
	// Encapsulated Document (OB) declaring 0xFFFFFFF0 bytes, holding 4.
	el(0x0042, 0x0011, "OB", 0xFFFFFFF0, []byte{1, 2, 3, 4})
	f := &Finaliser{o: FinaliserOptions{Instances: hostileOpener(ds.Bytes())}}
	_, err := f.header(context.Background(), "1.2.3")
	if !errors.Is(err, pixel.ErrInvalidDICOM) {
		t.Fatalf("hostile header: err %v, want pixel.ErrInvalidDICOM", err)
	}
}
