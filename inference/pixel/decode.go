package pixel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"os"
	"strconv"
	"strings"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"anomalynode/internal/dcm"
	"anomalynode/internal/fgroups"
)

// ErrUnsupported is matched (errors.Is) by every *UnsupportedError: the file is
// valid DICOM the decoder cannot turn into pixels; the caller quarantines it.
var ErrUnsupported = errors.New("unsupported image")

// ErrUnsupportedTransferSyntax is matched by an *UnsupportedError whose cause is
// the transfer syntax (JPEG 2000, 12-bit lossy JPEG, deflate, ...).
var ErrUnsupportedTransferSyntax = errors.New("unsupported transfer syntax")

// ErrBadPixelData reports pixel data that is missing, truncated or corrupt. It
// is never ignored: a slice with bad pixels is not scored.
var ErrBadPixelData = errors.New("bad pixel data")

// UnsupportedError says why an image cannot be decoded.
type UnsupportedError struct {
	// TransferSyntax is the file's transfer syntax UID.
	TransferSyntax string
	// Reason says what is unsupported.
	Reason string
	// syntax marks errors caused by the transfer syntax itself.
	syntax bool
}

// Error implements error.
func (e *UnsupportedError) Error() string {
	return fmt.Sprintf("unsupported image (transfer syntax %s): %s", e.TransferSyntax, e.Reason)
}

// Is matches ErrUnsupported, and ErrUnsupportedTransferSyntax when the transfer
// syntax is the cause.
func (e *UnsupportedError) Is(target error) bool {
	return target == ErrUnsupported || (e.syntax && target == ErrUnsupportedTransferSyntax)
}

// Slice is one decoded frame: stored pixel values plus what preprocessing and
// the outputs need from the header.
type Slice struct {
	// SOPInstanceUID, SeriesInstanceUID and StudyInstanceUID identify the source.
	SOPInstanceUID    string
	SeriesInstanceUID string
	StudyInstanceUID  string
	// SOPClassUID is the source's SOP class.
	SOPClassUID string
	// InstanceNumber orders slices in a series (0 when absent).
	InstanceNumber int
	// Frame is the 0-based frame index in a multi-frame instance.
	Frame int
	// Frames is the instance's frame count.
	Frames int
	// Modality is CT, MR, ...
	Modality string
	// Rows and Cols are the frame size in pixels.
	Rows, Cols int
	// Stored holds the Rows*Cols stored values (masked to BitsStored and
	// sign-extended when PixelRepresentation is 1), row-major.
	Stored []int32
	// MinStored and MaxStored bound the values Stored can hold.
	MinStored, MaxStored int32
	// Slope and Intercept are the modality LUT (RescaleSlope/Intercept; 1 and 0
	// when absent).
	Slope, Intercept float64
	// Photometric is MONOCHROME1 or MONOCHROME2.
	Photometric string
	// WindowCenter and WindowWidth are the header's first VOI window, valid
	// when HasWindow.
	WindowCenter, WindowWidth float64
	// HasWindow says the header had a usable window.
	HasWindow bool
	// ImagePosition is ImagePositionPatient (nil when absent).
	ImagePosition []float64
	// TransferSyntax is the source's transfer syntax UID.
	TransferSyntax string
	// Header is the parsed data set, shared by all frames of an instance, with
	// the pixel data bytes released.
	Header *dicom.Dataset
}

// ModalityValues returns the modality values (stored * slope + intercept).
func (s *Slice) ModalityValues() []float32 {
	out := make([]float32, len(s.Stored))
	for i, v := range s.Stored {
		out[i] = float32(float64(v)*s.Slope + s.Intercept)
	}
	return out
}

// DecodeFile reads a Part-10 DICOM file and decodes every frame.
func DecodeFile(path string) ([]*Slice, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("inference: decode: %w", err)
	}
	return Decode(data)
}

// Decode parses Part-10 DICOM bytes and decodes every frame.
func Decode(data []byte) ([]*Slice, error) {
	ds, err := Parse(data, dicom.SkipProcessingPixelDataValue())
	if err != nil {
		return nil, fmt.Errorf("inference: decode: %w", err)
	}
	return DecodeDataset(&ds)
}

// pixelInfo is the image pixel module of a data set.
type pixelInfo struct {
	ts                             string
	rows, cols, frames             int
	bitsAlloc, bitsStored, highBit int
	signed                         bool
	samples                        int
	photometric                    string
}

// DecodeDataset decodes the frames of a data set parsed with
// dicom.SkipProcessingPixelDataValue (native pixel data as raw bytes,
// encapsulated pixel data as fragments).
func DecodeDataset(ds *dicom.Dataset) ([]*Slice, error) {
	pi, err := readPixelInfo(ds)
	if err != nil {
		return nil, err
	}
	el, err := ds.FindElementByTag(tag.PixelData)
	if err != nil {
		return nil, fmt.Errorf("inference: decode: %w: no PixelData (truncated file?)", ErrBadPixelData)
	}
	pdi, ok := el.Value.GetValue().(dicom.PixelDataInfo)
	if !ok {
		return nil, fmt.Errorf("inference: decode: %w: PixelData has value type %v", ErrBadPixelData, el.Value.ValueType())
	}
	if pdi.IntentionallySkipped {
		return nil, fmt.Errorf("inference: decode: %w: PixelData was skipped at parse time", ErrBadPixelData)
	}
	var frames [][]int32
	switch pi.ts {
	case dcm.ImplicitVRLittleEndian, dcm.ExplicitVRLittleEndian, dcm.ExplicitVRBigEndian:
		if pdi.IsEncapsulated || !pdi.IntentionallyUnprocessed {
			return nil, fmt.Errorf("inference: decode: %w: native transfer syntax but pixel data not read raw (parse with SkipProcessingPixelDataValue)", ErrBadPixelData)
		}
		var order binary.ByteOrder = binary.LittleEndian
		if pi.ts == dcm.ExplicitVRBigEndian {
			order = binary.BigEndian
		}
		frames, err = decodeNative(pdi.UnprocessedValueData, pi, order)
	default:
		decode, ok := encapsulatedDecoders[pi.ts]
		if !ok {
			return nil, &UnsupportedError{TransferSyntax: pi.ts, Reason: "no decoder for " + dcm.TransferSyntaxName(pi.ts), syntax: true}
		}
		frags := fragments(pdi)
		if err := checkExpansion(frags, pi); err != nil {
			return nil, err
		}
		frames, err = decode(frags, pi)
	}
	if err != nil {
		return nil, fmt.Errorf("inference: decode: %w", err)
	}
	// Release the raw bytes: the decoded frames are what is kept.
	el.Value, _ = dicom.NewValue(dicom.PixelDataInfo{IntentionallySkipped: true, IsEncapsulated: pdi.IsEncapsulated})

	base := Slice{
		SOPInstanceUID:    dcm.String(ds, tag.SOPInstanceUID),
		SeriesInstanceUID: dcm.String(ds, tag.SeriesInstanceUID),
		StudyInstanceUID:  dcm.String(ds, tag.StudyInstanceUID),
		SOPClassUID:       dcm.String(ds, tag.SOPClassUID),
		Modality:          dcm.String(ds, tag.Modality),
		Frames:            pi.frames,
		Rows:              pi.rows,
		Cols:              pi.cols,
		Photometric:       pi.photometric,
		Slope:             1,
		TransferSyntax:    pi.ts,
		Header:            ds,
	}
	base.InstanceNumber, _ = strconv.Atoi(dcm.String(ds, tag.InstanceNumber))
	if v, ok := dcm.Number(ds, tag.RescaleSlope, 0); ok && v != 0 {
		base.Slope = v
	}
	if v, ok := dcm.Number(ds, tag.RescaleIntercept, 0); ok {
		base.Intercept = v
	}
	c, okc := dcm.Number(ds, tag.WindowCenter, 0)
	w, okw := dcm.Number(ds, tag.WindowWidth, 0)
	if okc && okw && w >= 1 {
		base.WindowCenter, base.WindowWidth, base.HasWindow = c, w, true
	}
	for i := 0; i < 3; i++ {
		if v, ok := dcm.Number(ds, tag.ImagePositionPatient, i); ok {
			base.ImagePosition = append(base.ImagePosition, v)
		}
	}
	if len(base.ImagePosition) != 3 {
		base.ImagePosition = nil
	}
	if pi.signed {
		base.MinStored, base.MaxStored = -(1 << (pi.bitsStored - 1)), 1<<(pi.bitsStored-1)-1
	} else {
		base.MinStored, base.MaxStored = 0, int32(1<<pi.bitsStored-1)
	}
	enhanced := fgroups.Enhanced(ds)
	out := make([]*Slice, len(frames))
	for i, f := range frames {
		s := base
		s.Frame = i
		s.Stored = f
		if enhanced {
			if err := s.readFunctionalGroups(ds); err != nil {
				return nil, fmt.Errorf("inference: decode: %w: %v", ErrBadPixelData, err)
			}
		}
		out[i] = &s
	}
	return out, nil
}

// readFunctionalGroups takes the frame's modality LUT, VOI window and
// position from its Per-frame (else Shared) Functional Groups, where enhanced
// CT and MR objects keep them (an Enhanced CT's RescaleIntercept of -1024
// lives only there); what the groups lack keeps the top-level value.
func (s *Slice) readFunctionalGroups(ds *dicom.Dataset) error {
	fr, err := fgroups.Of(ds, s.Frame, s.Frames)
	if err != nil {
		return err
	}
	if v, ok := dcm.NumberOf(fr.Element(tag.PixelValueTransformationSequence, tag.RescaleSlope), 0); ok && v != 0 {
		s.Slope = v
	}
	if v, ok := dcm.NumberOf(fr.Element(tag.PixelValueTransformationSequence, tag.RescaleIntercept), 0); ok {
		s.Intercept = v
	}
	c, okc := dcm.NumberOf(fr.Element(tag.FrameVOILUTSequence, tag.WindowCenter), 0)
	w, okw := dcm.NumberOf(fr.Element(tag.FrameVOILUTSequence, tag.WindowWidth), 0)
	if okc && okw && w >= 1 {
		s.WindowCenter, s.WindowWidth, s.HasWindow = c, w, true
	}
	if el := fr.Element(tag.PlanePositionSequence, tag.ImagePositionPatient); el != nil {
		var ipp []float64
		for i := 0; i < 3; i++ {
			if v, ok := dcm.NumberOf(el, i); ok {
				ipp = append(ipp, v)
			}
		}
		if len(ipp) == 3 {
			s.ImagePosition = ipp
		}
	}
	return nil
}

func readPixelInfo(ds *dicom.Dataset) (pixelInfo, error) {
	pi := pixelInfo{ts: strings.TrimRight(dcm.String(ds, tag.TransferSyntaxUID), "\x00 ")}
	if pi.ts == "" {
		return pi, fmt.Errorf("inference: decode: %w: no TransferSyntaxUID in the file meta", ErrBadPixelData)
	}
	need := func(t tag.Tag, name string) (int, error) {
		v, ok := dcm.Number(ds, t, 0)
		if !ok {
			return 0, fmt.Errorf("inference: decode: %w: %s missing", ErrBadPixelData, name)
		}
		return int(v), nil
	}
	var err error
	if pi.rows, err = need(tag.Rows, "Rows"); err != nil {
		return pi, err
	}
	if pi.cols, err = need(tag.Columns, "Columns"); err != nil {
		return pi, err
	}
	if pi.bitsAlloc, err = need(tag.BitsAllocated, "BitsAllocated"); err != nil {
		return pi, err
	}
	pi.bitsStored = pi.bitsAlloc
	if v, ok := dcm.Number(ds, tag.BitsStored, 0); ok {
		pi.bitsStored = int(v)
	}
	pi.highBit = pi.bitsStored - 1
	if v, ok := dcm.Number(ds, tag.HighBit, 0); ok {
		pi.highBit = int(v)
	}
	if v, ok := dcm.Number(ds, tag.PixelRepresentation, 0); ok {
		pi.signed = v == 1
	}
	pi.samples = 1
	if v, ok := dcm.Number(ds, tag.SamplesPerPixel, 0); ok {
		pi.samples = int(v)
	}
	pi.frames = 1
	if v, ok := dcm.Number(ds, tag.NumberOfFrames, 0); ok && v >= 1 {
		pi.frames = int(v)
	}
	pi.photometric = strings.TrimSpace(dcm.String(ds, tag.PhotometricInterpretation))
	if pi.photometric == "" {
		pi.photometric = "MONOCHROME2"
	}
	if pi.rows < 1 || pi.cols < 1 || pi.rows > 1<<15 || pi.cols > 1<<15 || pi.frames > 1<<16 {
		return pi, fmt.Errorf("inference: decode: %w: %d x %d x %d frames", ErrBadPixelData, pi.rows, pi.cols, pi.frames)
	}
	if pi.photometric != "MONOCHROME1" && pi.photometric != "MONOCHROME2" || pi.samples != 1 {
		return pi, &UnsupportedError{TransferSyntax: pi.ts, Reason: fmt.Sprintf("photometric %s with %d samples per pixel (greyscale only)", pi.photometric, pi.samples)}
	}
	if pi.bitsAlloc != 8 && pi.bitsAlloc != 16 {
		return pi, &UnsupportedError{TransferSyntax: pi.ts, Reason: fmt.Sprintf("BitsAllocated %d (8 or 16 only)", pi.bitsAlloc)}
	}
	if pi.bitsStored < 1 || pi.bitsStored > pi.bitsAlloc || pi.highBit < pi.bitsStored-1 || pi.highBit >= pi.bitsAlloc {
		return pi, fmt.Errorf("inference: decode: %w: BitsStored %d / HighBit %d inconsistent with BitsAllocated %d", ErrBadPixelData, pi.bitsStored, pi.highBit, pi.bitsAlloc)
	}
	if _, err := ds.FindElementByTag(tag.ModalityLUTSequence); err == nil {
		return pi, &UnsupportedError{TransferSyntax: pi.ts, Reason: "Modality LUT Sequence (only RescaleSlope/Intercept)"}
	}
	return pi, nil
}

// storedValue turns a raw sample into the stored value: shift the high bit
// down, mask to BitsStored, sign-extend for PixelRepresentation 1.
func (pi *pixelInfo) converter() func(uint32) int32 {
	shift := uint(pi.highBit + 1 - pi.bitsStored)
	mask := uint32(1)<<pi.bitsStored - 1
	signBit := uint32(1) << (pi.bitsStored - 1)
	if pi.signed {
		return func(v uint32) int32 {
			v = (v >> shift) & mask
			if v&signBit != 0 {
				return int32(v) - int32(mask) - 1
			}
			return int32(v)
		}
	}
	return func(v uint32) int32 { return int32((v >> shift) & mask) }
}

func decodeNative(raw []byte, pi pixelInfo, order binary.ByteOrder) ([][]int32, error) {
	n := pi.rows * pi.cols
	bps := pi.bitsAlloc / 8
	want := n * bps * pi.frames
	if len(raw) < want {
		return nil, fmt.Errorf("%w: pixel data holds %d bytes, %d x %d x %d frames x %d bytes need %d (truncated)",
			ErrBadPixelData, len(raw), pi.rows, pi.cols, pi.frames, bps, want)
	}
	conv := pi.converter()
	frames := make([][]int32, pi.frames)
	for f := range frames {
		src := raw[f*n*bps : (f+1)*n*bps]
		dst := make([]int32, n)
		if bps == 1 {
			for i, b := range src {
				dst[i] = conv(uint32(b))
			}
		} else {
			for i := range dst {
				dst[i] = conv(uint32(order.Uint16(src[2*i:])))
			}
		}
		frames[f] = dst
	}
	return frames, nil
}

// encapsulatedDecoders decode the frames of each compressed transfer syntax.
var encapsulatedDecoders = map[string]func(frags [][]byte, pi pixelInfo) ([][]int32, error){
	dcm.RLELossless:        decodeRLEFrames,
	dcm.JPEGBaseline:       decodeJPEGFrames,
	dcm.JPEGLossless:       decodeJPEGLosslessFrames,
	dcm.JPEGLosslessSV1:    decodeJPEGLosslessFrames,
	dcm.JPEGLSLossless:     decodeJPEGLSFrames,
	dcm.JPEGLSNearLossless: decodeJPEGLSFrames,
}

// An encapsulated instance may decode to maxFreeSamples samples (a 4096 x
// 4096 frame) whatever its compressed size; beyond that each compressed byte
// may stand for at most maxSamplesPerByte samples. Real images stay far below
// (lossless ratios are 2-4 : 1), but JPEG-LS codes a blank line in one bit and
// RLE a run of 128 bytes in two, so a few kilobytes from a hostile sender
// could otherwise claim gigabytes of decoded frames.
const (
	maxFreeSamples    = 1 << 24
	maxSamplesPerByte = 64
)

func checkExpansion(frags [][]byte, pi pixelInfo) error {
	samples := int64(pi.rows) * int64(pi.cols) * int64(pi.frames)
	var n int64
	for _, f := range frags {
		n += int64(len(f))
	}
	if samples > maxFreeSamples && samples > n*maxSamplesPerByte {
		return fmt.Errorf("inference: decode: %w: %d x %d x %d frames from %d compressed bytes (more than %d samples per byte)",
			ErrBadPixelData, pi.rows, pi.cols, pi.frames, n, maxSamplesPerByte)
	}
	return nil
}

// fragments returns the encapsulated fragments in order (suyashkumar/dicom
// turns each fragment into one "frame" and skips the Basic Offset Table).
func fragments(pdi dicom.PixelDataInfo) [][]byte {
	out := make([][]byte, 0, len(pdi.Frames))
	for _, f := range pdi.Frames {
		if f != nil && f.Encapsulated {
			out = append(out, f.EncapsulatedData.Data)
		}
	}
	return out
}

func decodeRLEFrames(frags [][]byte, pi pixelInfo) ([][]int32, error) {
	switch {
	case len(frags) == pi.frames:
	case pi.frames == 1 && len(frags) > 1:
		// PS3.5 G.2 asks for one fragment per frame; join a split single frame.
		frags = [][]byte{bytes.Join(frags, nil)}
	default:
		return nil, fmt.Errorf("%w: RLE: %d fragments for %d frames", ErrBadPixelData, len(frags), pi.frames)
	}
	conv := pi.converter()
	out := make([][]int32, pi.frames)
	for i, f := range frags {
		raw, err := DecodeRLE(f, pi.rows, pi.cols, pi.bitsAlloc)
		if err != nil {
			return nil, fmt.Errorf("frame %d: %w", i, err)
		}
		dst := make([]int32, pi.rows*pi.cols)
		for j := range dst {
			dst[j] = conv(raw[j])
		}
		out[i] = dst
	}
	return out, nil
}

// DecodeRLE decodes one RLE Lossless frame (PS3.5 Annex G) of a single-sample
// image into raw samples: the RLE header lists bitsAlloc/8 segments, most
// significant byte first, each a PackBits stream of rows*cols bytes.
func DecodeRLE(frame []byte, rows, cols, bitsAlloc int) ([]uint32, error) {
	if len(frame) < 64 {
		return nil, fmt.Errorf("%w: RLE frame of %d bytes has no 64-byte header", ErrBadPixelData, len(frame))
	}
	nseg := int(binary.LittleEndian.Uint32(frame))
	bps := bitsAlloc / 8
	if nseg != bps {
		return nil, fmt.Errorf("%w: RLE frame has %d segments, %d bits need %d", ErrBadPixelData, nseg, bitsAlloc, bps)
	}
	offsets := make([]int, nseg+1)
	for i := 0; i < nseg; i++ {
		offsets[i] = int(binary.LittleEndian.Uint32(frame[4+4*i:]))
	}
	offsets[nseg] = len(frame)
	n := rows * cols
	out := make([]uint32, n)
	seg := make([]byte, n)
	for s := 0; s < nseg; s++ {
		lo, hi := offsets[s], offsets[s+1]
		if lo < 64 || lo > hi || hi > len(frame) {
			return nil, fmt.Errorf("%w: RLE segment %d offsets [%d,%d) outside the %d-byte frame", ErrBadPixelData, s, lo, hi, len(frame))
		}
		if err := unpackBits(frame[lo:hi], seg); err != nil {
			return nil, fmt.Errorf("%w: RLE segment %d: %v", ErrBadPixelData, s, err)
		}
		shift := uint(8 * (nseg - 1 - s))
		for i, b := range seg {
			out[i] |= uint32(b) << shift
		}
	}
	return out, nil
}

// unpackBits decodes a PackBits stream into exactly len(dst) bytes. Trailing
// bytes after dst is full are allowed (segments are padded to even length).
func unpackBits(src, dst []byte) error {
	o := 0
	i := 0
	for o < len(dst) {
		if i >= len(src) {
			return fmt.Errorf("ran out of data after %d of %d bytes", o, len(dst))
		}
		h := int8(src[i])
		i++
		switch {
		case h >= 0:
			cnt := int(h) + 1
			if i+cnt > len(src) || o+cnt > len(dst) {
				return fmt.Errorf("literal run of %d overflows (at %d/%d)", cnt, o, len(dst))
			}
			copy(dst[o:], src[i:i+cnt])
			i += cnt
			o += cnt
		case h != -128:
			cnt := 1 - int(h)
			if i >= len(src) || o+cnt > len(dst) {
				return fmt.Errorf("replicate run of %d overflows (at %d/%d)", cnt, o, len(dst))
			}
			b := src[i]
			i++
			for k := 0; k < cnt; k++ {
				dst[o+k] = b
			}
			o += cnt
		}
	}
	return nil
}

func decodeJPEGFrames(frags [][]byte, pi pixelInfo) ([][]int32, error) {
	if pi.bitsAlloc != 8 {
		return nil, &UnsupportedError{TransferSyntax: pi.ts, Reason: "JPEG baseline with more than 8 bits"}
	}
	frames, err := splitJPEGFrames(frags, pi.frames)
	if err != nil {
		return nil, err
	}
	conv := pi.converter()
	out := make([][]int32, len(frames))
	for i, f := range frames {
		img, err := jpeg.Decode(bytes.NewReader(f))
		if err != nil {
			return nil, fmt.Errorf("%w: JPEG frame %d: %v", ErrBadPixelData, i, err)
		}
		g, ok := img.(*image.Gray)
		if !ok {
			return nil, &UnsupportedError{TransferSyntax: pi.ts, Reason: fmt.Sprintf("JPEG frame decodes to %T, not greyscale", img)}
		}
		b := g.Bounds()
		if b.Dx() != pi.cols || b.Dy() != pi.rows {
			return nil, fmt.Errorf("%w: JPEG frame %d is %dx%d, header says %dx%d", ErrBadPixelData, i, b.Dx(), b.Dy(), pi.cols, pi.rows)
		}
		dst := make([]int32, pi.rows*pi.cols)
		for y := 0; y < pi.rows; y++ {
			row := g.Pix[y*g.Stride : y*g.Stride+pi.cols]
			for x, v := range row {
				dst[y*pi.cols+x] = conv(uint32(v))
			}
		}
		out[i] = dst
	}
	return out, nil
}

// splitJPEGFrames groups encapsulated fragments into JPEG frames. Frames may
// span fragments; a fragment starting with the SOI marker begins a new frame
// (the Basic Offset Table is not available from the parser, and X'FFD8' cannot
// occur inside entropy-coded data).
func splitJPEGFrames(frags [][]byte, want int) ([][]byte, error) {
	var frames [][]byte
	for _, f := range frags {
		if len(f) >= 2 && f[0] == 0xFF && f[1] == 0xD8 || len(frames) == 0 {
			frames = append(frames, f)
		} else {
			// The full slice expression makes append copy: the parsed
			// fragment itself is never written to.
			last := frames[len(frames)-1]
			frames[len(frames)-1] = append(last[:len(last):len(last)], f...)
		}
	}
	if len(frames) != want {
		return nil, fmt.Errorf("%w: JPEG: %d frames found, NumberOfFrames is %d", ErrBadPixelData, len(frames), want)
	}
	return frames, nil
}

// sampleDecoder decodes one compressed frame of rows x cols samples and
// returns them with their precision (decodeJPEGLosslessFrame, decodeJPEGLSFrame).
type sampleDecoder func(data []byte, rows, cols int) (samples []uint16, precision int, err error)

// jpegFrames decodes every frame of a lossless JPEG or JPEG-LS instance with
// decode (name is the codec, for errors): its fragments joined into frames,
// each checked against Rows, Columns and BitsAllocated and turned into stored
// values. The decoded samples are the pixel cells' bit patterns (signed data
// is encoded as its raw two's-complement bits, PS3.5 8.2.1), so the
// stored-value conversion is the same as for native data.
func jpegFrames(frags [][]byte, pi pixelInfo, name string, decode sampleDecoder) ([][]int32, error) {
	frames, err := splitJPEGFrames(frags, pi.frames)
	if err != nil {
		return nil, err
	}
	conv := pi.converter()
	out := make([][]int32, len(frames))
	for i, f := range frames {
		samples, prec, err := decode(f, pi.rows, pi.cols)
		if err != nil {
			var ue *UnsupportedError
			if errors.As(err, &ue) {
				ue.TransferSyntax = pi.ts
				return nil, ue
			}
			return nil, fmt.Errorf("frame %d: %w", i, err)
		}
		if prec > pi.bitsAlloc {
			return nil, fmt.Errorf("%w: %s frame %d has %d-bit samples, BitsAllocated is %d", ErrBadPixelData, name, i, prec, pi.bitsAlloc)
		}
		if len(samples) != pi.rows*pi.cols {
			return nil, fmt.Errorf("%w: %s frame %d holds %d samples, %dx%d expected", ErrBadPixelData, name, i, len(samples), pi.cols, pi.rows)
		}
		dst := make([]int32, len(samples))
		for j, v := range samples {
			dst[j] = conv(uint32(v))
		}
		out[i] = dst
	}
	return out, nil
}

func decodeJPEGLosslessFrames(frags [][]byte, pi pixelInfo) ([][]int32, error) {
	return jpegFrames(frags, pi, "lossless JPEG", decodeJPEGLosslessFrame)
}

func decodeJPEGLSFrames(frags [][]byte, pi pixelInfo) ([][]int32, error) {
	return jpegFrames(frags, pi, "JPEG-LS", decodeJPEGLSFrame)
}
