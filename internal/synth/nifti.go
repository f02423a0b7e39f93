package synth

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"

	"github.com/klauspost/compress/gzip"
)

// ErrNotNIfTI is returned for input that is not a single-file NIfTI-1 image.
var ErrNotNIfTI = errors.New("synth: not a NIfTI-1 file")

// maxVoxels bounds what ReadNIfTI allocates, so a hostile header cannot ask
// for terabytes (512^3, 134M voxels, is the limit).
const maxVoxels = 1 << 27

// NIfTI data type codes (nifti1.h) that ReadNIfTI decodes.
const (
	dtUint8   = 2
	dtInt16   = 4
	dtInt32   = 8
	dtFloat32 = 16
	dtFloat64 = 64
	dtInt8    = 256
	dtUint16  = 512
)

// NIfTI is a decoded NIfTI-1 volume: the header fields a resampler needs and
// the voxel values of the first 3-D volume.
type NIfTI struct {
	// Dim holds the voxel counts along i, j, k.
	Dim [3]int
	// Datatype is the NIfTI datatype code of the stored voxels.
	Datatype int
	// Pixdim holds the voxel sizes in mm along i, j, k.
	Pixdim [3]float64
	// SclSlope and SclInter map stored values to real ones (slope 0 means 1).
	SclSlope, SclInter float64
	// QformCode and SformCode say which transforms are valid.
	QformCode, SformCode int
	// Affine maps voxel (i, j, k, 1) to RAS+ millimetres, from the sform when
	// valid, else the qform, else the voxel sizes alone.
	Affine [3][4]float64
	// U8 holds the voxels when Datatype is uint8 and scaling is the identity
	// (kept compact: ch2better is 35 M voxels); otherwise F32 holds real values.
	U8 []uint8
	// F32 holds the scaled voxel values for every other datatype.
	F32 []float32
}

// LoadNIfTI reads a .nii or .nii.gz file.
func LoadNIfTI(path string) (*NIfTI, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("synth: open volume: %w", err)
	}
	defer f.Close()
	return ReadNIfTI(bufio.NewReaderSize(f, 1<<20))
}

// ReadNIfTI decodes a single-file NIfTI-1 image, gzip-compressed or not, i,
// j, k ordered with i fastest. Only the first volume of a 4-D file is read.
func ReadNIfTI(r io.Reader) (*NIfTI, error) {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReader(r)
	}
	magic, err := br.Peek(2)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotNIfTI, err)
	}
	var src io.Reader = br
	if magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("synth: nifti gzip: %w", err)
		}
		defer zr.Close()
		src = zr
	}
	var hdr [348]byte
	if _, err := io.ReadFull(src, hdr[:]); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrNotNIfTI, err)
	}
	var bo binary.ByteOrder = binary.LittleEndian
	switch {
	case binary.LittleEndian.Uint32(hdr[0:]) == 348:
	case binary.BigEndian.Uint32(hdr[0:]) == 348:
		bo = binary.BigEndian
	default:
		return nil, fmt.Errorf("%w: sizeof_hdr is not 348", ErrNotNIfTI)
	}
	if !bytes.Equal(hdr[344:348], []byte("n+1\x00")) {
		return nil, fmt.Errorf("%w: magic %q (only single-file n+1 is supported)", ErrNotNIfTI, hdr[344:348])
	}
	i16 := func(off int) int { return int(int16(bo.Uint16(hdr[off:]))) }
	f32 := func(off int) float64 { return float64(math.Float32frombits(bo.Uint32(hdr[off:]))) }

	n := &NIfTI{Datatype: i16(70)}
	ndim := i16(40)
	if ndim < 1 || ndim > 7 {
		return nil, fmt.Errorf("%w: dim[0]=%d", ErrNotNIfTI, ndim)
	}
	total := 1
	for a := 0; a < 3; a++ {
		d := 1
		if a < ndim {
			d = i16(42 + 2*a)
		}
		if d < 1 {
			return nil, fmt.Errorf("%w: dim[%d]=%d", ErrNotNIfTI, a+1, d)
		}
		n.Dim[a] = d
		total *= d
		if total > maxVoxels {
			return nil, fmt.Errorf("%w: volume larger than %d voxels", ErrNotNIfTI, maxVoxels)
		}
		p := math.Abs(f32(80 + 4*a))
		if p == 0 || math.IsNaN(p) || math.IsInf(p, 0) {
			p = 1
		}
		n.Pixdim[a] = p
	}
	bitpix := i16(72)
	voxOffset := f32(108)
	n.SclSlope, n.SclInter = f32(112), f32(116)
	if n.SclSlope == 0 || math.IsNaN(n.SclSlope) || math.IsInf(n.SclSlope, 0) {
		n.SclSlope, n.SclInter = 1, 0
	}
	if math.IsNaN(n.SclInter) || math.IsInf(n.SclInter, 0) {
		n.SclInter = 0
	}
	n.QformCode, n.SformCode = i16(252), i16(254)

	var size int
	switch n.Datatype {
	case dtUint8, dtInt8:
		size = 1
	case dtInt16, dtUint16:
		size = 2
	case dtInt32, dtFloat32:
		size = 4
	case dtFloat64:
		size = 8
	default:
		return nil, fmt.Errorf("%w: unsupported datatype %d", ErrNotNIfTI, n.Datatype)
	}
	if bitpix != 8*size {
		return nil, fmt.Errorf("%w: bitpix %d does not match datatype %d", ErrNotNIfTI, bitpix, n.Datatype)
	}
	n.Affine = affineFromHeader(n, hdr[:], f32)

	if voxOffset < 348 || voxOffset > 1<<24 || math.IsNaN(voxOffset) {
		voxOffset = 352
	}
	if _, err := io.CopyN(io.Discard, src, int64(voxOffset)-348); err != nil {
		return nil, fmt.Errorf("%w: extensions: %v", ErrNotNIfTI, err)
	}
	// Grow with the data actually present, so a lying header on a short
	// input cannot make us allocate gigabytes up front.
	want := int64(total) * int64(size)
	buf := bytes.NewBuffer(make([]byte, 0, min(want, 1<<22)))
	if _, err := buf.ReadFrom(io.LimitReader(src, want)); err != nil {
		return nil, fmt.Errorf("synth: nifti voxel data: %w", err)
	}
	if int64(buf.Len()) != want {
		return nil, fmt.Errorf("synth: nifti voxel data: %w (%d of %d bytes)", io.ErrUnexpectedEOF, buf.Len(), want)
	}
	raw := buf.Bytes()
	if n.Datatype == dtUint8 && n.SclSlope == 1 && n.SclInter == 0 {
		n.U8 = raw
		return n, nil
	}
	n.F32 = make([]float32, total)
	s, c := n.SclSlope, n.SclInter
	for v := range n.F32 {
		var x float64
		switch n.Datatype {
		case dtUint8:
			x = float64(raw[v])
		case dtInt8:
			x = float64(int8(raw[v]))
		case dtInt16:
			x = float64(int16(bo.Uint16(raw[2*v:])))
		case dtUint16:
			x = float64(bo.Uint16(raw[2*v:]))
		case dtInt32:
			x = float64(int32(bo.Uint32(raw[4*v:])))
		case dtFloat32:
			x = float64(math.Float32frombits(bo.Uint32(raw[4*v:])))
		case dtFloat64:
			x = math.Float64frombits(bo.Uint64(raw[8*v:]))
		}
		if math.IsNaN(x) || math.IsInf(x, 0) {
			x = 0
		}
		n.F32[v] = float32(x*s + c)
	}
	return n, nil
}

// affineFromHeader picks the voxel-to-RAS transform as nifti1.h prescribes:
// sform when sform_code > 0, else the quaternion qform, else pixdim scaling.
func affineFromHeader(n *NIfTI, hdr []byte, f32 func(int) float64) [3][4]float64 {
	var a [3][4]float64
	if n.SformCode > 0 {
		for r := 0; r < 3; r++ {
			for c := 0; c < 4; c++ {
				a[r][c] = f32(280 + 16*r + 4*c)
			}
		}
		if det3(a) != 0 && finite(a) {
			return a
		}
	}
	if n.QformCode > 0 {
		b, c, d := f32(256), f32(260), f32(264)
		qx, qy, qz := f32(268), f32(272), f32(276)
		qfac := f32(76)
		if qfac >= 0 {
			qfac = 1
		} else {
			qfac = -1
		}
		aa := 1 - (b*b + c*c + d*d)
		if aa < 1e-7 {
			aa = 0
		}
		aq := math.Sqrt(aa)
		R := [3][3]float64{
			{aq*aq + b*b - c*c - d*d, 2 * (b*c - aq*d), 2 * (b*d + aq*c)},
			{2 * (b*c + aq*d), aq*aq + c*c - b*b - d*d, 2 * (c*d - aq*b)},
			{2 * (b*d - aq*c), 2 * (c*d + aq*b), aq*aq + d*d - c*c - b*b},
		}
		sc := [3]float64{n.Pixdim[0], n.Pixdim[1], n.Pixdim[2] * qfac}
		for r := 0; r < 3; r++ {
			for col := 0; col < 3; col++ {
				a[r][col] = R[r][col] * sc[col]
			}
		}
		a[0][3], a[1][3], a[2][3] = qx, qy, qz
		if det3(a) != 0 && finite(a) {
			return a
		}
	}
	a = [3][4]float64{}
	for i := 0; i < 3; i++ {
		a[i][i] = n.Pixdim[i]
	}
	return a
}

func det3(a [3][4]float64) float64 {
	return a[0][0]*(a[1][1]*a[2][2]-a[1][2]*a[2][1]) -
		a[0][1]*(a[1][0]*a[2][2]-a[1][2]*a[2][0]) +
		a[0][2]*(a[1][0]*a[2][1]-a[1][1]*a[2][0])
}

func finite(a [3][4]float64) bool {
	for _, row := range a {
		for _, v := range row {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return false
			}
		}
	}
	return true
}

// invertAffine returns the inverse of a 3x4 affine (a non-singular 3x3 part
// is assumed; affineFromHeader guarantees it).
func invertAffine(a [3][4]float64) [3][4]float64 {
	d := det3(a)
	var m [3][4]float64
	m[0][0] = (a[1][1]*a[2][2] - a[1][2]*a[2][1]) / d
	m[0][1] = (a[0][2]*a[2][1] - a[0][1]*a[2][2]) / d
	m[0][2] = (a[0][1]*a[1][2] - a[0][2]*a[1][1]) / d
	m[1][0] = (a[1][2]*a[2][0] - a[1][0]*a[2][2]) / d
	m[1][1] = (a[0][0]*a[2][2] - a[0][2]*a[2][0]) / d
	m[1][2] = (a[0][2]*a[1][0] - a[0][0]*a[1][2]) / d
	m[2][0] = (a[1][0]*a[2][1] - a[1][1]*a[2][0]) / d
	m[2][1] = (a[0][1]*a[2][0] - a[0][0]*a[2][1]) / d
	m[2][2] = (a[0][0]*a[1][1] - a[0][1]*a[1][0]) / d
	for r := 0; r < 3; r++ {
		m[r][3] = -(m[r][0]*a[0][3] + m[r][1]*a[1][3] + m[r][2]*a[2][3])
	}
	return m
}
