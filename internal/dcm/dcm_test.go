package dcm

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
)

func TestLongVR(t *testing.T) {
	for _, vr := range []string{"OB", "SQ", "UN", "UT", "UV"} {
		if !LongVR(vr) {
			t.Errorf("LongVR(%s) = false", vr)
		}
	}
	for _, vr := range []string{"US", "DS", "UI", "AT", ""} {
		if LongVR(vr) {
			t.Errorf("LongVR(%q) = true", vr)
		}
	}
}

func TestValues(t *testing.T) {
	el := func(tg tag.Tag, v any) *dicom.Element {
		e, err := dicom.NewElement(tg, v)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	ds := &dicom.Dataset{Elements: []*dicom.Element{
		el(tag.Modality, []string{" CT\x00"}),
		el(tag.Rows, []int{512}),
		el(tag.PixelSpacing, []string{"0.5\\0.75"}),
		el(tag.SliceThickness, []string{"NaN"}),
	}}
	if got := String(ds, tag.Modality); got != "CT" {
		t.Errorf("String = %q, want CT", got)
	}
	if got := String(ds, tag.SeriesDescription); got != "" {
		t.Errorf("absent String = %q", got)
	}
	if v, ok := Number(ds, tag.Rows, 0); !ok || v != 512 {
		t.Errorf("Rows = %v %v", v, ok)
	}
	if v, ok := Number(ds, tag.PixelSpacing, 1); !ok || v != 0.75 {
		t.Errorf("PixelSpacing[1] = %v %v, want 0.75 from one backslash-joined string", v, ok)
	}
	if _, ok := Number(ds, tag.PixelSpacing, 2); ok {
		t.Error("PixelSpacing[2] present")
	}
	if _, ok := Number(ds, tag.SliceThickness, 0); ok {
		t.Error("NaN counted as a number")
	}
	if _, ok := NumberOf(nil, 0); ok {
		t.Error("nil element has a number")
	}
	if got := TransferSyntaxName(JPEG2000Lossless); got != "JPEG 2000 Lossless" {
		t.Errorf("name %q", got)
	}
	if got := TransferSyntaxName("1.2.3"); got != "this transfer syntax" {
		t.Errorf("unknown name %q", got)
	}
}

// TestDeriveUID pins the scheme against a value computed outside Go (Python's
// hashlib with the same framing): every UID the node has written depends on it.
func TestDeriveUID(t *testing.T) {
	if got, want := DeriveUID("ns", "ab", "c"), "2.25.89729225751609575185123239613339772547"; got != want {
		t.Errorf("DeriveUID = %s, want %s", got, want)
	}
	if DeriveUID("ns", "ab", "c") == DeriveUID("ns", "a", "bc") {
		t.Error("parts are not length-prefixed")
	}
	if DeriveUID("ns", "x") == DeriveUID("other", "x") {
		t.Error("namespace ignored")
	}
	if got := UUIDUID(make([]byte, 16)); got != "2.25.1" {
		t.Errorf("zero UID %s, want 2.25.1", got)
	}
	if got := UUIDUID([]byte{1, 0}); got != "2.25.256" {
		t.Errorf("UUIDUID(0x0100) = %s", got)
	}
}

// TestFileMeta: what AppendFileMeta writes, ReadMetaGroup reads back and stops
// at the data set; hostile groups are refused before any large allocation.
func TestFileMeta(t *testing.T) {
	want := FileMeta{MediaStorageSOPClassUID: "1.2.840.10008.5.1.4.1.1.2", MediaStorageSOPInstanceUID: "1.2.3",
		TransferSyntaxUID: ExplicitVRLittleEndian, ImplementationClassUID: "2.25.7", ImplementationVersionName: "X", SourceAETitle: "AE1"}
	b := AppendFileMeta(nil, want)
	if string(b[128:132]) != "DICM" || len(b)%2 != 0 {
		t.Fatalf("no DICM prefix or odd length %d", len(b))
	}
	dataSet := []byte{0x08, 0, 0x60, 0, 'C', 'S', 2, 0, 'C', 'T'}
	br := bufio.NewReader(bytes.NewReader(append(b[132:], dataSet...)))
	got, n, err := ReadMetaGroup(br)
	if err != nil || got != want || int(n) != len(b)-132 {
		t.Fatalf("read back %+v, %d bytes, %v; want %+v, %d", got, n, err, want, len(b)-132)
	}
	if rest, _ := io.ReadAll(br); !bytes.Equal(rest, dataSet) {
		t.Fatalf("left %x, want the data set", rest)
	}
	huge := []byte{2, 0, 1, 0, 'O', 'B', 0, 0, 0xFF, 0xFF, 0xFF, 0x7F}
	truncated := b[132 : len(b)-3]
	implicit := []byte{2, 0, 0x10, 0, 4, 0, 0, 0, '1', '.', '2', 0}
	for name, in := range map[string][]byte{"huge": huge, "truncated": truncated, "implicit": implicit} {
		if _, _, err := ReadMetaGroup(bufio.NewReader(bytes.NewReader(in))); !errors.Is(err, ErrBadFileMeta) {
			t.Errorf("%s: %v, want ErrBadFileMeta", name, err)
		}
	}
}
