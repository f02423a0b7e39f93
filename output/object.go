package output

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/suyashkumar/dicom"

	"anomalynode/internal/dcm"
)

// SOP classes and transfer syntax of the objects this package builds.
const (
	SegmentationStorage          = "1.2.840.10008.5.1.4.1.1.66.4"
	SecondaryCaptureImageStorage = "1.2.840.10008.5.1.4.1.1.7"
)

// ImplementationClassUID identifies this software in the file meta information
// (PS3.7 D.3.3.2); it sits under the UUID-derived 2.25 root like every UID we make.
var ImplementationClassUID = DeriveUID("anomalynode", "implementation-class")

// ImplementationVersionName names this software in the file meta information.
const ImplementationVersionName = "ANOMALYNODE"

// ModelIdentity names the model that produced the scores; it is part of every
// output UID so that a different model never overwrites another's results.
type ModelIdentity struct {
	Name    string
	Version string
	SHA256  string
}

// SourceSlice is one source image and what was scored on it.
type SourceSlice struct {
	// Header is the parsed source instance (pixel data may be absent): patient,
	// study, series and geometry attributes come from here. Every frame of a
	// multi-frame source shares the one header.
	Header *dicom.Dataset
	// Frame is the 0-based frame of a multi-frame source that was scored (its
	// DICOM frame number is Frame+1); 0 for a single-frame source. The frame's
	// geometry comes from its Per-frame (else Shared) Functional Groups, and
	// the outputs reference it by instance and frame number.
	Frame int
	// Rows and Cols are the source image size; Scores, Mask and Display are
	// Rows*Cols long, row-major on the source pixel grid.
	Rows, Cols int
	// Scores is the anomaly score map registered on the source pixels.
	Scores []float32
	// Mask is Scores > threshold.
	Mask []bool
	// Display is the source slice (frame) windowed to 8-bit grey, for the SC heat map.
	Display []uint8
}

// SeriesResult is a scored source series: the input of BuildSEG and BuildSC.
type SeriesResult struct {
	// Sources are the series' slices in any order, one per scored frame of a
	// multi-frame instance; the builders order them along the slice normal and
	// keep each mask with its own source.
	Sources []SourceSlice
	// Model is the model that produced the scores.
	Model ModelIdentity
	// Version is the amendment version (1 for the first result of a series;
	// a late slice re-opens the series and the next result is version 2).
	Version int
	// Threshold is the score above which a pixel is anomalous.
	Threshold float32
	// Created is the content date/time written into the outputs; zero means now.
	// The service passes a fixed value so that a retried build is byte-identical.
	Created time.Time
	// Stack identifies one stack of a series split by orientation (see
	// Analyse); it is part of every output UID. Empty for a series of one
	// stack, whose UIDs are those it had before stacks existed.
	Stack string
	// StackLabel names the stack in descriptions ("stack 2 of 3"); empty for
	// a series of one stack.
	StackLabel string
}

// Object is one built DICOM instance, ready to be stored or sent.
type Object struct {
	SOPClassUID       string
	SOPInstanceUID    string
	TransferSyntaxUID string
	// StudyInstanceUID and SeriesInstanceUID locate the object (folder layout, logs).
	StudyInstanceUID  string
	SeriesInstanceUID string
	// Part10 is the complete DICOM file (preamble, file meta, data set).
	Part10 []byte
}

// ErrNotPart10 means bytes that should be a DICOM Part 10 file are not.
var ErrNotPart10 = errors.New("output: not a DICOM Part 10 file")

// DataSet returns the bare data set (without preamble and file meta
// information), encoded in TransferSyntaxUID: the payload of a C-STORE.
func (o *Object) DataSet() ([]byte, error) {
	return bareDataSet(o.Part10)
}

func bareDataSet(p []byte) ([]byte, error) {
	// 128-byte preamble, "DICM", then (0002,0000) UL explicit VR: 4+2+2+4 bytes.
	if len(p) < 132+12 || string(p[128:132]) != "DICM" {
		return nil, ErrNotPart10
	}
	h := p[132:]
	if binary.LittleEndian.Uint16(h[0:]) != 0x0002 || binary.LittleEndian.Uint16(h[2:]) != 0x0000 || string(h[4:6]) != "UL" {
		return nil, fmt.Errorf("%w: no file meta group length", ErrNotPart10)
	}
	n := int(binary.LittleEndian.Uint32(h[8:]))
	start := 132 + 12 + n
	if n < 0 || start > len(p) {
		return nil, fmt.Errorf("%w: file meta group length %d beyond end", ErrNotPart10, n)
	}
	return p[start:], nil
}

// elems builds a list of data elements by keyword, remembering the first
// error so that building code reads as a flat list of attributes.
type elems struct {
	list []*dicom.Element
	err  error
}

func (e *elems) fail(err error) {
	if e.err == nil {
		e.err = err
	}
}

// add appends the attribute named by its DICOM keyword with value v
// ([]string, []int, []float64, []byte, [][]*dicom.Element or dicom.PixelDataInfo).
func (e *elems) add(keyword string, v any) {
	info, err := findKeyword(keyword)
	if err != nil {
		e.fail(fmt.Errorf("output: attribute %s: %w", keyword, err))
		return
	}
	el, err := dicom.NewElement(info.Tag, v)
	if err != nil {
		e.fail(fmt.Errorf("output: attribute %s: %w", keyword, err))
		return
	}
	e.list = append(e.list, el)
}

// pixelDataOB appends Pixel Data holding data as OB, padded to an even
// length: the node's pixel data (1-bit SEG frames, 8-bit RGB) are byte
// streams, not the OW that dicom.NewElement picks for native pixel data.
func (e *elems) pixelDataOB(data []byte) {
	if len(data)%2 == 1 {
		data = append(data, 0)
	}
	n := len(e.list)
	e.add("PixelData", dicom.PixelDataInfo{IntentionallyUnprocessed: true, UnprocessedValueData: data})
	if len(e.list) > n {
		e.list[n].RawValueRepresentation = "OB"
	}
}

// str appends a single-valued string attribute.
func (e *elems) str(keyword string, v ...string) { e.add(keyword, v) }

// num appends a US/UL/SS/SL attribute.
func (e *elems) num(keyword string, v ...int) { e.add(keyword, v) }

// seq appends a sequence whose items are the given element lists.
func (e *elems) seq(keyword string, items ...*elems) {
	vals := make([][]*dicom.Element, 0, len(items))
	for _, it := range items {
		if it.err != nil {
			e.fail(it.err)
			return
		}
		vals = append(vals, it.sorted())
	}
	e.add(keyword, vals)
}

// copy appends the source's attribute when present; a Type 2 attribute that
// the source lacks is written empty so the output stays valid.
func (e *elems) copy(src *dicom.Dataset, keyword string, type2 bool) {
	info, err := findKeyword(keyword)
	if err != nil {
		e.fail(fmt.Errorf("output: attribute %s: %w", keyword, err))
		return
	}
	if src != nil {
		if el, err := src.FindElementByTag(info.Tag); err == nil {
			e.list = append(e.list, el)
			return
		}
	}
	if type2 {
		if info.VRs[0] == "SQ" {
			e.add(keyword, [][]*dicom.Element{})
		} else {
			e.add(keyword, []string{})
		}
	}
}

// sorted returns the elements in ascending tag order (PS3.5 7.1), which the
// writer does not enforce.
func (e *elems) sorted() []*dicom.Element {
	sort.SliceStable(e.list, func(i, j int) bool { return e.list[i].Tag.Compare(e.list[j].Tag) < 0 })
	return e.list
}

// code builds a Code Sequence item (Basic Code Sequence macro).
func code(value, scheme, meaning string) *elems {
	c := &elems{}
	c.str("CodeValue", value)
	c.str("CodingSchemeDesignator", scheme)
	c.str("CodeMeaning", meaning)
	return c
}

// Code is a coded concept (CodeValue, CodingSchemeDesignator, CodeMeaning).
type Code struct {
	Value, Scheme, Meaning string
}

func (c Code) item() *elems { return code(c.Value, c.Scheme, c.Meaning) }

// encode writes e as a Part 10 file in Explicit VR Little Endian with a
// complete file meta information group.
func encode(e *elems, sopClass, sopInstance string) ([]byte, error) {
	if e.err != nil {
		return nil, e.err
	}
	meta := &elems{}
	meta.add("FileMetaInformationVersion", []byte{0, 1})
	meta.str("MediaStorageSOPClassUID", sopClass)
	meta.str("MediaStorageSOPInstanceUID", sopInstance)
	meta.str("TransferSyntaxUID", dcm.ExplicitVRLittleEndian)
	meta.str("ImplementationClassUID", ImplementationClassUID)
	meta.str("ImplementationVersionName", ImplementationVersionName)
	if meta.err != nil {
		return nil, meta.err
	}
	ds := dicom.Dataset{Elements: append(meta.sorted(), e.sorted()...)}
	var buf bytes.Buffer
	if err := dicom.Write(&buf, ds); err != nil {
		return nil, fmt.Errorf("output: write %s: %w", sopClass, err)
	}
	return buf.Bytes(), nil
}
