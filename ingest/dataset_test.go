package ingest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/suyashkumar/dicom/pkg/tag"

	"anomalynode/internal/dcm"
	"anomalynode/internal/peers"
	"anomalynode/internal/synth"
)

// seq builds an undefined-length sequence with one undefined-length item
// holding the given (explicit VR) element bytes.
func seq(t tag.Tag, explicit bool, item []byte) el {
	var b bytes.Buffer
	w := func(v any) { binary.Write(&b, binary.LittleEndian, v) }
	w(uint16(0xFFFE))
	w(uint16(0xE000))
	w(uint32(0xFFFFFFFF))
	b.Write(item)
	w(uint16(0xFFFE))
	w(uint16(0xE00D))
	w(uint32(0))
	w(uint16(0xFFFE))
	w(uint16(0xE0DD))
	w(uint32(0))
	return el{t, "SQ", b.Bytes()}
}

// encodeSeq is encode but writes SQ elements with undefined length.
func encodeSeq(explicit bool, els []el) []byte {
	var b bytes.Buffer
	for _, e := range els {
		if e.vr != "SQ" {
			b.Write(encode(explicit, []el{e}, -1))
			continue
		}
		binary.Write(&b, binary.LittleEndian, e.t.Group)
		binary.Write(&b, binary.LittleEndian, e.t.Element)
		if explicit {
			b.WriteString("SQ\x00\x00")
		}
		binary.Write(&b, binary.LittleEndian, uint32(0xFFFFFFFF))
		b.Write(e.v)
	}
	return b.Bytes()
}

func TestReadHeaderSequencesAndPrefix(t *testing.T) {
	for _, explicit := range []bool{true, false} {
		inner := encode(explicit, []el{str(tag.ReferencedSOPInstanceUID, "UI", "9.9.9"), str(tag.Modality, "CS", "XX")}, -1)
		ds := encodeSeq(explicit, []el{
			str(tag.SOPClassUID, "UI", ctImage),
			str(tag.SOPInstanceUID, "UI", "1.2.3"),
			str(tag.Modality, "CS", "CT"),
			seq(tag.ReferencedImageSequence, explicit, inner),
			str(tag.SeriesInstanceUID, "UI", "1.2.4"),
			u16(tag.Rows, 512),
		})
		pix := encode(explicit, nil, 1024)
		ts := dcm.ExplicitVRLittleEndian
		if !explicit {
			ts = dcm.ImplicitVRLittleEndian
		}
		data := append(append([]byte{}, ds...), pix...)
		h, prefix, err := ReadHeader(bytes.NewReader(data), ts, 1<<20)
		if err != nil {
			t.Fatalf("explicit=%v: %v", explicit, err)
		}
		if h.Str(tag.Modality) != "CT" || h.Str(tag.SeriesInstanceUID) != "1.2.4" || h.Str(tag.Rows) != "512" {
			t.Errorf("explicit=%v: attrs %v", explicit, h.attrs)
		}
		if !h.HasPixelData || h.PixelDataLength != 1024 {
			t.Errorf("explicit=%v: pixel data %v %d", explicit, h.HasPixelData, h.PixelDataLength)
		}
		hdrLen := 8
		if explicit {
			hdrLen = 12
		}
		if !bytes.Equal(prefix, data[:len(ds)+hdrLen]) {
			t.Errorf("explicit=%v: prefix is %d bytes, want the %d before the pixel value", explicit, len(prefix), len(ds)+hdrLen)
		}
		if _, _, err := ReadHeader(bytes.NewReader(data), ts, 64); !errors.Is(err, ErrHeaderTooLarge) {
			t.Errorf("explicit=%v: tiny limit: %v", explicit, err)
		}
		if _, _, err := ReadHeader(bytes.NewReader(ds[:len(ds)-30]), ts, 1<<20); !errors.Is(err, ErrMalformed) {
			t.Errorf("explicit=%v: truncated in sequence: %v", explicit, err)
		}
	}
}

// TestSniffSynthAndDcmtkVariants reads a synth series and dcmtk-converted
// copies (implicit VR, big endian, no meta header) and checks the identity.
func TestSniffSynthAndDcmtkVariants(t *testing.T) {
	dcmconv := peers.Tool(t, "dcmconv")
	dir := t.TempDir()
	man, err := synth.WriteSeries(dir, synth.Options{Seed: 7, Slices: 2, Rows: 64, Cols: 64, Source: synth.SourcePhantom})
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, man.Slices[0].File)
	variants := map[string][]string{"implicit": {"+ti"}, "bigendian": {"+tb"}, "explicit": {"+te"}, "rawimplicit": {"+ti", "-F"}, "rawexplicit": {"+te", "-F"}}
	for name, args := range variants {
		out := filepath.Join(dir, name+".dcm")
		if b, err := exec.Command(dcmconv, append(args, src, out)...).CombinedOutput(); err != nil {
			t.Fatalf("dcmconv %v: %v\n%s", args, err, b)
		}
		f, err := os.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := SniffFile(f, 1<<20)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := fi.Header.Str(tag.SOPInstanceUID); got != man.Slices[0].SOPInstanceUID {
			t.Errorf("%s: SOPInstanceUID %q, want %q", name, got, man.Slices[0].SOPInstanceUID)
		}
		if !fi.Header.HasPixelData || fi.Header.Str(tag.SeriesInstanceUID) != man.SeriesInstanceUID {
			t.Errorf("%s: pixel data %v series %q", name, fi.Header.HasPixelData, fi.Header.Str(tag.SeriesInstanceUID))
		}
		if want := name != "rawimplicit" && name != "rawexplicit"; fi.Part10 != want {
			t.Errorf("%s: Part10 %v", name, fi.Part10)
		}
	}
}

func TestSniffNotDICOM(t *testing.T) {
	for name, data := range map[string][]byte{
		"empty": nil, "text": []byte("hello world, this is not a DICOM file at all"),
		"png":   append([]byte("\x89PNG\r\n\x1a\n"), make([]byte, 200)...),
		"zeros": make([]byte, 300),
	} {
		if _, err := SniffFile(bytes.NewReader(data), 1<<20); !errors.Is(err, dcm.ErrNotDICOM) {
			t.Errorf("%s: %v, want dcm.ErrNotDICOM", name, err)
		}
	}
	// Preamble + DICM and then nonsense: DICOM, but malformed.
	bad := append(append(make([]byte, 128), "DICM"...), bytes.Repeat([]byte{0xFF}, 64)...)
	if _, err := SniffFile(bytes.NewReader(bad), 1<<20); !errors.Is(err, ErrMalformed) {
		t.Errorf("bad Part-10: %v, want ErrMalformed", err)
	}
}

// FuzzSniffFile feeds untrusted bytes (what lands in the watched folder) to the
// file sniffer and header reader: no panic, no hang, consistent offsets.
func FuzzSniffFile(f *testing.F) {
	f.Add(inst{series: "1", sop: "1.1"}.part10())
	f.Add(inst{series: "1", sop: "1.1", implicit: true}.dataSet())
	f.Add(inst{series: "1", sop: "1.1"}.dataSet())
	f.Add(encodeSeq(true, []el{str(tag.SOPInstanceUID, "UI", "1.2"), seq(tag.ReferencedImageSequence, true, encode(true, []el{str(tag.Modality, "CS", "CT")}, -1))}))
	f.Add(append(Part10Header(MediaStorageDirectory, "1", dcm.ExplicitVRLittleEndian), 0, 0))
	f.Add([]byte("not dicom"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fi, err := SniffFile(bytes.NewReader(data), 1<<16)
		if err != nil {
			if !errors.Is(err, dcm.ErrNotDICOM) && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrHeaderTooLarge) && !errors.Is(err, ErrUnsupportedSyntax) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		if fi.DataSetOffset < 0 || fi.DataSetOffset > int64(len(data)) {
			t.Fatalf("data set offset %d outside %d bytes", fi.DataSetOffset, len(data))
		}
		if fi.Header == nil && !fi.IsDICOMDIR() {
			t.Fatal("no header")
		}
		// ReadHeader on the bare data set consumes a prefix of it.
		if fi.Header != nil {
			_, prefix, _ := ReadHeader(bytes.NewReader(data[fi.DataSetOffset:]), fi.TransferSyntaxUID, 1<<16)
			if !bytes.HasPrefix(data[fi.DataSetOffset:], prefix) {
				t.Fatal("prefix is not a prefix of the data set")
			}
		}
	})
}

// NaN and Inf parse with strconv but are not DICOM numbers: a position made of
// them must read as absent, not reach the series record (whose JSON cannot
// hold them).
func TestHeaderNumbersRejectNonFinite(t *testing.T) {
	var h Header
	for _, c := range []struct {
		v    string
		want []float64
	}{
		{`1.5\-2\3e1`, []float64{1.5, -2, 30}},
		{` 0 \ 0\0 `, []float64{0, 0, 0}},
		{`NaN\0\0`, nil},
		{`0\Inf\0`, nil},
		{`0\0\-infinity`, nil},
		{`0\x\0`, nil},
	} {
		h.Set(tag.ImagePositionPatient, c.v)
		if got := h.Floats(tag.ImagePositionPatient); !reflect.DeepEqual(got, c.want) {
			t.Errorf("Floats(%q) = %v, want %v", c.v, got, c.want)
		}
	}
	for v, ok := range map[string]bool{"12": true, "-3.5": true, "nan": false, "+Inf": false, "": false} {
		h.Set(tag.InstanceNumber, v)
		if _, got := h.Float(tag.InstanceNumber); got != ok {
			t.Errorf("Float(%q) ok = %v, want %v", v, got, ok)
		}
	}
}
