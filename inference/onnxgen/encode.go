package onnxgen

import (
	"encoding/binary"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers from onnx.proto3. Only the fields this package writes are listed.
const (
	// ModelProto
	modelIRVersion       = 1
	modelProducerName    = 2
	modelProducerVersion = 3
	modelDocString       = 6
	modelGraph           = 7
	modelOpsetImport     = 8
	modelMetadataProps   = 14

	// OperatorSetIdProto
	opsetDomain  = 1
	opsetVersion = 2

	// StringStringEntryProto
	entryKey   = 1
	entryValue = 2

	// GraphProto
	graphNode        = 1
	graphName        = 2
	graphInitializer = 5
	graphInput       = 11
	graphOutput      = 12

	// NodeProto
	nodeInput     = 1
	nodeOutput    = 2
	nodeName      = 3
	nodeOpType    = 4
	nodeAttribute = 5

	// AttributeProto
	attrName        = 1
	attrF           = 2
	attrI           = 3
	attrS           = 4
	attrFloatsField = 7
	attrIntsField   = 8
	attrType        = 20

	// TensorProto
	tensorDims     = 1
	tensorDataType = 2
	tensorName     = 8
	tensorRawData  = 9

	// ValueInfoProto
	valueName = 1
	valueType = 2

	// TypeProto / TypeProto.Tensor / TensorShapeProto / Dimension
	typeTensorType = 1
	tensorElemType = 1
	tensorShape    = 2
	shapeDim       = 1
	dimValue       = 1
	dimParam       = 2
)

func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendMessage(b []byte, num protowire.Number, msg []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, msg)
}

func encodeModel(ir, opset int64, producer, producerVersion, doc string, meta [][2]string, g *Graph) []byte {
	var b []byte
	b = appendVarint(b, modelIRVersion, uint64(ir))
	b = appendString(b, modelProducerName, producer)
	b = appendString(b, modelProducerVersion, producerVersion)
	b = appendString(b, modelDocString, doc)
	b = appendMessage(b, modelGraph, encodeGraph(g))
	// The default domain is the empty string, which proto3 leaves out.
	b = appendMessage(b, modelOpsetImport, appendVarint(nil, opsetVersion, uint64(opset)))
	for _, kv := range meta {
		var e []byte
		e = appendString(e, entryKey, kv[0])
		e = appendString(e, entryValue, kv[1])
		b = appendMessage(b, modelMetadataProps, e)
	}
	return b
}

func encodeGraph(g *Graph) []byte {
	var b []byte
	for i, n := range g.nodes {
		b = appendMessage(b, graphNode, encodeNode(i, n))
	}
	b = appendString(b, graphName, g.Name)
	for _, t := range g.inits {
		b = appendMessage(b, graphInitializer, encodeTensor(t))
	}
	for _, v := range g.inputs {
		b = appendMessage(b, graphInput, encodeValueInfo(v))
	}
	for _, v := range g.outputs {
		b = appendMessage(b, graphOutput, encodeValueInfo(v))
	}
	return b
}

func encodeNode(i int, n node) []byte {
	var b []byte
	for _, in := range n.inputs {
		// Empty names mark omitted optional inputs and must be kept in position.
		b = protowire.AppendTag(b, nodeInput, protowire.BytesType)
		b = protowire.AppendString(b, in)
	}
	for _, out := range n.outputs {
		b = protowire.AppendTag(b, nodeOutput, protowire.BytesType)
		b = protowire.AppendString(b, out)
	}
	if len(n.outputs) > 0 {
		b = appendString(b, nodeName, n.outputs[0])
	}
	b = appendString(b, nodeOpType, n.op)
	for _, a := range n.attrs {
		b = appendMessage(b, nodeAttribute, encodeAttr(a))
	}
	return b
}

func encodeAttr(a Attr) []byte {
	var b []byte
	b = appendString(b, attrName, a.name)
	switch a.kind {
	case attrFloat:
		b = protowire.AppendTag(b, attrF, protowire.Fixed32Type)
		b = protowire.AppendFixed32(b, math.Float32bits(a.f))
	case attrInt:
		b = appendVarint(b, attrI, uint64(a.i))
	case attrString:
		b = protowire.AppendTag(b, attrS, protowire.BytesType)
		b = protowire.AppendString(b, a.s)
	case attrFloats:
		var p []byte
		for _, f := range a.floats {
			p = protowire.AppendFixed32(p, math.Float32bits(f))
		}
		b = appendMessage(b, attrFloatsField, p)
	case attrInts:
		var p []byte
		for _, v := range a.ints {
			p = protowire.AppendVarint(p, uint64(v))
		}
		b = appendMessage(b, attrIntsField, p)
	}
	b = appendVarint(b, attrType, uint64(a.kind))
	return b
}

func encodeTensor(t Tensor) []byte {
	var b []byte
	for _, d := range t.Dims {
		b = appendVarint(b, tensorDims, uint64(d))
	}
	b = appendVarint(b, tensorDataType, uint64(t.Type))
	b = appendString(b, tensorName, t.Name)
	// raw_data is fixed-width little-endian, whatever the host order.
	var raw []byte
	switch t.Type {
	case Float32:
		raw = make([]byte, 4*len(t.Float32Data))
		for i, f := range t.Float32Data {
			binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(f))
		}
	case Int64:
		raw = make([]byte, 8*len(t.Int64Data))
		for i, v := range t.Int64Data {
			binary.LittleEndian.PutUint64(raw[8*i:], uint64(v))
		}
	}
	b = protowire.AppendTag(b, tensorRawData, protowire.BytesType)
	return protowire.AppendBytes(b, raw)
}

func encodeValueInfo(v valueInfo) []byte {
	var shape []byte
	for _, d := range v.dims {
		var dim []byte
		if d.Param != "" {
			dim = appendString(dim, dimParam, d.Param)
		} else {
			dim = appendVarint(dim, dimValue, uint64(d.Size))
		}
		shape = appendMessage(shape, shapeDim, dim)
	}
	var tt []byte
	tt = appendVarint(tt, tensorElemType, uint64(v.typ))
	// A present-but-empty shape means a scalar; it must still be written.
	tt = appendMessage(tt, tensorShape, shape)
	var b []byte
	b = appendString(b, valueName, v.name)
	b = appendMessage(b, valueType, appendMessage(nil, typeTensorType, tt))
	return b
}
