package vit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
)

// This file decodes the parts of an ONNX ModelProto that Load needs: nodes,
// initializers (inline or in an external data file), graph IO names and
// metadata. It keeps tensor bytes as slices of the file and decodes a tensor
// only when the mapping asks for it, so a large model is not copied twice.

// ErrModel is wrapped by every error about a model file's content that Load
// cannot decode or map (the error names the file and what was not found).
var ErrModel = errors.New("vit: unsupported model")

// Field numbers from onnx.proto3 (the reading side of inference/onnxgen/encode.go).
const (
	rModelGraph    = 7
	rModelMetadata = 14

	rEntryKey   = 1
	rEntryValue = 2

	rGraphNode        = 1
	rGraphInitializer = 5
	rGraphInput       = 11
	rGraphOutput      = 12

	rNodeInput  = 1
	rNodeOutput = 2
	rNodeName   = 3
	rNodeOpType = 4
	rNodeAttr   = 5
	rNodeDomain = 7

	rAttrName   = 1
	rAttrF      = 2
	rAttrI      = 3
	rAttrS      = 4
	rAttrT      = 5
	rAttrFloats = 7
	rAttrInts   = 8

	rTensorDims         = 1
	rTensorDataType     = 2
	rTensorFloatData    = 4
	rTensorInt64Data    = 7
	rTensorName         = 8
	rTensorRawData      = 9
	rTensorExternalData = 13
	rTensorDataLocation = 14

	rValueName = 1
)

// ONNX TensorProto data types.
const (
	dtFloat   = 1
	dtInt32   = 6
	dtInt64   = 7
	dtFloat16 = 10
	dtBFloat  = 16
)

// tensor is one decoded TensorProto; its data stays encoded until asked for.
type tensor struct {
	name     string
	dims     []int64
	dataType int64
	raw      []byte    // raw_data, or the external bytes once resolved
	floats   []float32 // float_data
	ints     []int64   // int64_data
	external map[string]string
	hasExt   bool
}

// attr is one decoded AttributeProto (only the fields these graphs use).
type attr struct {
	f      float32
	i      int64
	s      string
	t      *tensor
	floats []float32
	ints   []int64
}

type node struct {
	name, opType, domain string
	inputs, outputs      []string
	attrs                map[string]*attr
}

// graph is a decoded model with the indexes the mapping walks.
type graph struct {
	nodes     []*node
	inits     map[string]*tensor
	inputs    []string
	outputs   []string
	metadata  map[string]string
	producer  map[string]*node   // value name -> the node that outputs it
	consumers map[string][]*node // value name -> the nodes that read it
	consts    map[string]*tensor // Constant node outputs
	dir       string             // the model's directory, for external data
	extFiles  map[string][]byte
}

// modelErr is an error about the model's content; Load wraps it in ErrModel
// with the file's path.
func modelErr(format string, a ...any) error {
	return fmt.Errorf(format, a...)
}

// decodeModel parses a ModelProto. dir is where external data files live;
// empty refuses external data.
func decodeModel(b []byte, dir string) (*graph, error) {
	g := &graph{
		inits: map[string]*tensor{}, metadata: map[string]string{},
		producer: map[string]*node{}, consumers: map[string][]*node{}, consts: map[string]*tensor{},
		dir: dir, extFiles: map[string][]byte{},
	}
	var graphBytes []byte
	haveGraph := false
	err := eachField(b, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		switch {
		case num == rModelGraph && typ == protowire.BytesType:
			graphBytes, haveGraph = v, true
		case num == rModelMetadata && typ == protowire.BytesType:
			var k, val string
			if err := eachField(v, func(n protowire.Number, t protowire.Type, s []byte, _ uint64) error {
				if t == protowire.BytesType && n == rEntryKey {
					k = string(s)
				} else if t == protowire.BytesType && n == rEntryValue {
					val = string(s)
				}
				return nil
			}); err != nil {
				return err
			}
			g.metadata[k] = val
		}
		return nil
	})
	if err != nil {
		return nil, wrapModel("model", err)
	}
	if !haveGraph {
		return nil, modelErr("model has no graph")
	}
	if err := g.decodeGraph(graphBytes); err != nil {
		return nil, err
	}
	for _, n := range g.nodes {
		for _, o := range n.outputs {
			if o != "" {
				g.producer[o] = n
			}
		}
		for _, in := range n.inputs {
			if in != "" {
				g.consumers[in] = append(g.consumers[in], n)
			}
		}
		if n.opType == "Constant" && len(n.outputs) == 1 {
			if a := n.attrs["value"]; a != nil && a.t != nil {
				g.consts[n.outputs[0]] = a.t
			}
		}
	}
	return g, nil
}

func (g *graph) decodeGraph(b []byte) error {
	return wrapModel("graph", eachField(b, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case rGraphNode:
			n, err := decodeNode(v)
			if err != nil {
				return err
			}
			g.nodes = append(g.nodes, n)
		case rGraphInitializer:
			t, err := decodeTensor(v)
			if err != nil {
				return err
			}
			if t.name == "" {
				return errors.New("initializer without a name")
			}
			g.inits[t.name] = t
		case rGraphInput, rGraphOutput:
			name := ""
			if err := eachField(v, func(n protowire.Number, t protowire.Type, s []byte, _ uint64) error {
				if n == rValueName && t == protowire.BytesType {
					name = string(s)
				}
				return nil
			}); err != nil {
				return err
			}
			if num == rGraphInput {
				g.inputs = append(g.inputs, name)
			} else {
				g.outputs = append(g.outputs, name)
			}
		}
		return nil
	}))
}

func wrapModel(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

func decodeNode(b []byte) (*node, error) {
	n := &node{attrs: map[string]*attr{}}
	err := eachField(b, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case rNodeInput:
			n.inputs = append(n.inputs, string(v))
		case rNodeOutput:
			n.outputs = append(n.outputs, string(v))
		case rNodeName:
			n.name = string(v)
		case rNodeOpType:
			n.opType = string(v)
		case rNodeDomain:
			n.domain = string(v)
		case rNodeAttr:
			name, a, err := decodeAttr(v)
			if err != nil {
				return err
			}
			n.attrs[name] = a
		}
		return nil
	})
	return n, err
}

func decodeAttr(b []byte) (string, *attr, error) {
	a := &attr{}
	name := ""
	err := eachField(b, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
		switch {
		case num == rAttrName && typ == protowire.BytesType:
			name = string(v)
		case num == rAttrF && typ == protowire.Fixed32Type:
			a.f = math.Float32frombits(uint32(x))
		case num == rAttrI && typ == protowire.VarintType:
			a.i = int64(x)
		case num == rAttrS && typ == protowire.BytesType:
			a.s = string(v)
		case num == rAttrT && typ == protowire.BytesType:
			t, err := decodeTensor(v)
			if err != nil {
				return err
			}
			a.t = t
		case num == rAttrFloats:
			fs, err := appendFloats(a.floats, typ, v, x)
			if err != nil {
				return err
			}
			a.floats = fs
		case num == rAttrInts:
			is, err := appendInts(a.ints, typ, v, x)
			if err != nil {
				return err
			}
			a.ints = is
		}
		return nil
	})
	return name, a, err
}

func decodeTensor(b []byte) (*tensor, error) {
	t := &tensor{}
	err := eachField(b, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
		var err error
		switch {
		case num == rTensorDims:
			t.dims, err = appendInts(t.dims, typ, v, x)
		case num == rTensorDataType && typ == protowire.VarintType:
			t.dataType = int64(x)
		case num == rTensorFloatData:
			t.floats, err = appendFloats(t.floats, typ, v, x)
		case num == rTensorInt64Data:
			t.ints, err = appendInts(t.ints, typ, v, x)
		case num == rTensorName && typ == protowire.BytesType:
			t.name = string(v)
		case num == rTensorRawData && typ == protowire.BytesType:
			t.raw = v
		case num == rTensorExternalData && typ == protowire.BytesType:
			var k, val string
			err = eachField(v, func(n protowire.Number, ty protowire.Type, s []byte, _ uint64) error {
				if ty == protowire.BytesType && n == rEntryKey {
					k = string(s)
				} else if ty == protowire.BytesType && n == rEntryValue {
					val = string(s)
				}
				return nil
			})
			if t.external == nil {
				t.external = map[string]string{}
			}
			t.external[k] = val
		case num == rTensorDataLocation && typ == protowire.VarintType:
			t.hasExt = x == 1
		}
		return err
	})
	for _, d := range t.dims {
		if d < 0 {
			return nil, fmt.Errorf("tensor %q: negative dimension %d", t.name, d)
		}
	}
	return t, err
}

// eachField calls f for every field of a message: v is the payload of a
// length-delimited field, x the value of a varint or fixed one.
func eachField(b []byte, f func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var v []byte
		var x uint64
		switch typ {
		case protowire.VarintType:
			x, n = protowire.ConsumeVarint(b)
		case protowire.Fixed32Type:
			var y uint32
			y, n = protowire.ConsumeFixed32(b)
			x = uint64(y)
		case protowire.Fixed64Type:
			x, n = protowire.ConsumeFixed64(b)
		case protowire.BytesType:
			v, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if err := f(num, typ, v, x); err != nil {
			return err
		}
	}
	return nil
}

// appendInts reads a repeated int64 field, packed or not.
func appendInts(dst []int64, typ protowire.Type, v []byte, x uint64) ([]int64, error) {
	switch typ {
	case protowire.VarintType:
		return append(dst, int64(x)), nil
	case protowire.BytesType:
		for len(v) > 0 {
			y, n := protowire.ConsumeVarint(v)
			if n < 0 {
				return nil, protowire.ParseError(n)
			}
			dst, v = append(dst, int64(y)), v[n:]
		}
		return dst, nil
	}
	return nil, fmt.Errorf("int64 field has wire type %d", typ)
}

// appendFloats reads a repeated float field, packed or not.
func appendFloats(dst []float32, typ protowire.Type, v []byte, x uint64) ([]float32, error) {
	switch typ {
	case protowire.Fixed32Type:
		return append(dst, math.Float32frombits(uint32(x))), nil
	case protowire.BytesType:
		if len(v)%4 != 0 {
			return nil, fmt.Errorf("packed floats of %d bytes", len(v))
		}
		for i := 0; i < len(v); i += 4 {
			dst = append(dst, math.Float32frombits(binary.LittleEndian.Uint32(v[i:])))
		}
		return dst, nil
	}
	return nil, fmt.Errorf("float field has wire type %d", typ)
}

// numel is the element count of dims, or -1 when it overflows.
func numel(dims []int64) int64 {
	n := int64(1)
	for _, d := range dims {
		if d != 0 && n > math.MaxInt32/d {
			return -1
		}
		n *= d
	}
	return n
}

// tensorBytes returns t's raw little-endian bytes: raw_data, or the span of
// its external data file.
func (g *graph) tensorBytes(t *tensor) ([]byte, error) {
	if !t.hasExt {
		return t.raw, nil
	}
	loc := t.external["location"]
	if loc == "" || filepath.IsAbs(loc) || !filepath.IsLocal(loc) || containsDotDot(loc) {
		return nil, modelErr("tensor %q: external data location %q must be a relative path inside the model's directory", t.name, loc)
	}
	if g.dir == "" {
		return nil, modelErr("tensor %q: external data %q, but the model was not read from a file", t.name, loc)
	}
	data, ok := g.extFiles[loc]
	if !ok {
		var err error
		data, err = os.ReadFile(filepath.Join(g.dir, loc))
		if err != nil {
			return nil, fmt.Errorf("tensor %q: external data: %w", t.name, err)
		}
		g.extFiles[loc] = data
	}
	off, length := int64(0), int64(-1)
	var err error
	if s, ok := t.external["offset"]; ok {
		if off, err = strconv.ParseInt(s, 10, 64); err != nil || off < 0 {
			return nil, modelErr("tensor %q: external data offset %q", t.name, s)
		}
	}
	if s, ok := t.external["length"]; ok {
		if length, err = strconv.ParseInt(s, 10, 64); err != nil || length < 0 {
			return nil, modelErr("tensor %q: external data length %q", t.name, s)
		}
	}
	if off > int64(len(data)) {
		return nil, modelErr("tensor %q: external data offset %d past the end of %s (%d bytes)", t.name, off, loc, len(data))
	}
	if length < 0 {
		length = int64(len(data)) - off
	}
	if length > int64(len(data))-off {
		return nil, modelErr("tensor %q: external data [%d, +%d) past the end of %s (%d bytes)", t.name, off, length, loc, len(data))
	}
	return data[off : off+length], nil
}

func containsDotDot(p string) bool {
	for _, part := range strings.FieldsFunc(p, func(r rune) bool { return r == '/' || r == '\\' }) {
		if part == ".." {
			return true
		}
	}
	return false
}

// floatData decodes a float32 tensor; any other type is an error naming it.
func (g *graph) floatData(t *tensor) ([]float32, error) {
	if t.dataType != dtFloat {
		return nil, modelErr("tensor %q has data type %s, want float32", t.name, dtypeName(t.dataType))
	}
	n := numel(t.dims)
	if n < 0 {
		return nil, modelErr("tensor %q: dims %v too large", t.name, t.dims)
	}
	if t.floats != nil || (!t.hasExt && t.raw == nil) {
		if int64(len(t.floats)) != n {
			return nil, modelErr("tensor %q: %d float_data values for dims %v", t.name, len(t.floats), t.dims)
		}
		return append([]float32(nil), t.floats...), nil
	}
	raw, err := g.tensorBytes(t)
	if err != nil {
		return nil, err
	}
	if int64(len(raw)) != 4*n {
		return nil, modelErr("tensor %q: %d data bytes for dims %v (want %d)", t.name, len(raw), t.dims, 4*n)
	}
	out := make([]float32, n)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	return out, nil
}

// intData decodes an int64 (or int32) tensor.
func (g *graph) intData(t *tensor) ([]int64, error) {
	n := numel(t.dims)
	if n < 0 {
		return nil, modelErr("tensor %q: dims %v too large", t.name, t.dims)
	}
	switch t.dataType {
	case dtInt64:
		if t.ints != nil || (!t.hasExt && t.raw == nil) {
			if int64(len(t.ints)) != n {
				return nil, modelErr("tensor %q: %d int64_data values for dims %v", t.name, len(t.ints), t.dims)
			}
			return append([]int64(nil), t.ints...), nil
		}
		raw, err := g.tensorBytes(t)
		if err != nil {
			return nil, err
		}
		if int64(len(raw)) != 8*n {
			return nil, modelErr("tensor %q: %d data bytes for dims %v", t.name, len(raw), t.dims)
		}
		out := make([]int64, n)
		for i := range out {
			out[i] = int64(binary.LittleEndian.Uint64(raw[8*i:]))
		}
		return out, nil
	case dtInt32:
		raw, err := g.tensorBytes(t)
		if err != nil {
			return nil, err
		}
		if int64(len(raw)) != 4*n {
			return nil, modelErr("tensor %q: %d data bytes for dims %v", t.name, len(raw), t.dims)
		}
		out := make([]int64, n)
		for i := range out {
			out[i] = int64(int32(binary.LittleEndian.Uint32(raw[4*i:])))
		}
		return out, nil
	}
	return nil, modelErr("tensor %q has data type %s, want int64", t.name, dtypeName(t.dataType))
}

func dtypeName(dt int64) string {
	switch dt {
	case dtFloat:
		return "float32"
	case dtInt32:
		return "int32"
	case dtInt64:
		return "int64"
	case dtFloat16:
		return "float16"
	case dtBFloat:
		return "bfloat16"
	}
	return "#" + strconv.FormatInt(dt, 10)
}

// constant returns the tensor a value name holds when it is a constant: an
// initializer or a Constant node's output.
func (g *graph) constant(name string) *tensor {
	if t, ok := g.inits[name]; ok {
		return t
	}
	return g.consts[name]
}
