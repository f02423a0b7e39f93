// Package onnxgen writes small ONNX models from Go: a graph builder (inputs and
// outputs with fixed or symbolic dimensions, float32/int64 initializers, nodes
// with attributes) and a protobuf encoder for ModelProto. It exists because no
// generated onnx.pb.go is available to this module, so the handful of onnx.proto3
// messages a model needs are encoded field by field with protowire. It only
// writes models; running them is ONNX Runtime's job, and it does not know any
// operator's semantics beyond checking that the graph is well formed.
package onnxgen

import (
	"errors"
	"fmt"
	"sort"
)

// DataType is an ONNX TensorProto.DataType value.
type DataType int32

// The element types this package can store in initializers and declare on graph inputs and outputs.
const (
	Float32 DataType = 1
	Int32   DataType = 6
	Int64   DataType = 7
)

// Defaults used by Model when its fields are zero.
const (
	// DefaultOpset is ONNX opset 17: the first with LayerNormalization, and
	// supported by every ONNX Runtime release since 1.13.
	DefaultOpset = 17
	// DefaultIRVersion is the IR version that goes with opset 17.
	DefaultIRVersion = 8
)

// ErrInvalidGraph is wrapped by every error Marshal returns for a malformed graph.
var ErrInvalidGraph = errors.New("onnxgen: invalid graph")

// Dim is one dimension of a graph input or output: a fixed size, or a symbolic
// name when Param is set (ONNX Runtime then accepts any size there).
type Dim struct {
	// Size is the fixed size; ignored when Param is set.
	Size int64
	// Param names a symbolic dimension, e.g. "batch_size".
	Param string
}

// Fixed returns a dimension of fixed size n.
func Fixed(n int64) Dim { return Dim{Size: n} }

// Sym returns a symbolic dimension named name.
func Sym(name string) Dim { return Dim{Param: name} }

type attrKind int32

// AttributeProto.AttributeType values.
const (
	attrFloat  attrKind = 1
	attrInt    attrKind = 2
	attrString attrKind = 3
	attrFloats attrKind = 6
	attrInts   attrKind = 7
)

// Attr is one node attribute; build it with AttrInt, AttrInts, AttrFloat, AttrFloats or AttrString.
type Attr struct {
	name   string
	kind   attrKind
	f      float32
	i      int64
	s      string
	floats []float32
	ints   []int64
}

// AttrInt returns an INT attribute.
func AttrInt(name string, v int64) Attr { return Attr{name: name, kind: attrInt, i: v} }

// AttrInts returns an INTS attribute.
func AttrInts(name string, v ...int64) Attr { return Attr{name: name, kind: attrInts, ints: v} }

// AttrFloat returns a FLOAT attribute.
func AttrFloat(name string, v float32) Attr { return Attr{name: name, kind: attrFloat, f: v} }

// AttrFloats returns a FLOATS attribute.
func AttrFloats(name string, v ...float32) Attr { return Attr{name: name, kind: attrFloats, floats: v} }

// AttrString returns a STRING attribute.
func AttrString(name, v string) Attr { return Attr{name: name, kind: attrString, s: v} }

// Tensor is a named constant of the graph (an initializer). Exactly one of
// Float32Data / Int64Data is used, according to Type.
type Tensor struct {
	Name        string
	Type        DataType
	Dims        []int64
	Float32Data []float32
	Int64Data   []int64
}

// Elements is the product of the tensor's dimensions (1 for a scalar).
func (t Tensor) Elements() int64 {
	n := int64(1)
	for _, d := range t.Dims {
		n *= d
	}
	return n
}

type valueInfo struct {
	name string
	typ  DataType
	dims []Dim
}

type node struct {
	op      string
	inputs  []string
	outputs []string
	attrs   []Attr
}

// Graph is an ONNX graph under construction. Nodes must be added in
// topological order (every input defined before use), as ONNX requires.
// A Graph is not safe for concurrent use.
type Graph struct {
	// Name is the graph's name in the model.
	Name    string
	inputs  []valueInfo
	outputs []valueInfo
	inits   []Tensor
	nodes   []node
	counter map[string]int
}

// NewGraph returns an empty graph called name.
func NewGraph(name string) *Graph {
	return &Graph{Name: name, counter: map[string]int{}}
}

// Input declares a graph input and returns its name.
func (g *Graph) Input(name string, t DataType, dims ...Dim) string {
	g.inputs = append(g.inputs, valueInfo{name: name, typ: t, dims: dims})
	return name
}

// Output declares that value name is a graph output of the given type and shape.
func (g *Graph) Output(name string, t DataType, dims ...Dim) {
	g.outputs = append(g.outputs, valueInfo{name: name, typ: t, dims: dims})
}

// Float32 adds a float32 initializer (data in row-major order) and returns its name.
func (g *Graph) Float32(name string, dims []int64, data []float32) string {
	g.inits = append(g.inits, Tensor{Name: name, Type: Float32, Dims: dims, Float32Data: data})
	return name
}

// Int64 adds an int64 initializer and returns its name.
func (g *Graph) Int64(name string, dims []int64, data []int64) string {
	g.inits = append(g.inits, Tensor{Name: name, Type: Int64, Dims: dims, Int64Data: data})
	return name
}

// Node adds a node of the default ONNX domain with explicit output names.
// An empty input name means an omitted optional input.
func (g *Graph) Node(op string, inputs, outputs []string, attrs ...Attr) {
	g.nodes = append(g.nodes, node{op: op, inputs: inputs, outputs: outputs, attrs: attrs})
}

// Op adds a single-output node and returns the generated name of its output
// ("<op>_<n>"), which is convenient for chaining.
func (g *Graph) Op(op string, inputs []string, attrs ...Attr) string {
	if g.counter == nil {
		g.counter = map[string]int{}
	}
	out := fmt.Sprintf("%s_%d", op, g.counter[op])
	g.counter[op]++
	g.Node(op, inputs, []string{out}, attrs...)
	return out
}

// Initializers returns the graph's constants in the order they were added.
func (g *Graph) Initializers() []Tensor { return g.inits }

// Params counts the elements of all float32 initializers: the model's
// parameter count when shape constants are int64, as this package's users keep them.
func (g *Graph) Params() int64 {
	var n int64
	for _, t := range g.inits {
		if t.Type == Float32 {
			n += t.Elements()
		}
	}
	return n
}

// validate checks what ONNX Runtime would otherwise reject with a less direct
// message: unique value names, data sizes that match dims, inputs defined
// before use, and outputs that some node or input produces.
func (g *Graph) validate() error {
	defined := map[string]string{}
	define := func(name, what string) error {
		if name == "" {
			return fmt.Errorf("%w: %s has an empty name", ErrInvalidGraph, what)
		}
		if prev, dup := defined[name]; dup {
			return fmt.Errorf("%w: %q defined twice (%s, %s)", ErrInvalidGraph, name, prev, what)
		}
		defined[name] = what
		return nil
	}
	for _, in := range g.inputs {
		if err := define(in.name, "input"); err != nil {
			return err
		}
	}
	for _, t := range g.inits {
		if err := define(t.Name, "initializer"); err != nil {
			return err
		}
		var have int
		switch t.Type {
		case Float32:
			have = len(t.Float32Data)
		case Int64:
			have = len(t.Int64Data)
		default:
			return fmt.Errorf("%w: initializer %q: unsupported data type %d", ErrInvalidGraph, t.Name, t.Type)
		}
		if int64(have) != t.Elements() {
			return fmt.Errorf("%w: initializer %q: %d values for dims %v", ErrInvalidGraph, t.Name, have, t.Dims)
		}
	}
	for i, n := range g.nodes {
		for _, in := range n.inputs {
			if in == "" {
				continue
			}
			if _, ok := defined[in]; !ok {
				return fmt.Errorf("%w: node %d (%s): input %q is not defined before use", ErrInvalidGraph, i, n.op, in)
			}
		}
		for _, out := range n.outputs {
			if err := define(out, fmt.Sprintf("node %d (%s)", i, n.op)); err != nil {
				return err
			}
		}
	}
	if len(g.outputs) == 0 {
		return fmt.Errorf("%w: no outputs", ErrInvalidGraph)
	}
	for _, out := range g.outputs {
		if _, ok := defined[out.name]; !ok {
			return fmt.Errorf("%w: output %q is not produced", ErrInvalidGraph, out.name)
		}
	}
	return nil
}

// Model is a graph plus the model-level fields of ModelProto.
type Model struct {
	// Graph is the computation.
	Graph *Graph
	// Opset is the default-domain opset version; DefaultOpset when zero.
	Opset int64
	// IRVersion is the ONNX IR version; DefaultIRVersion when zero.
	IRVersion int64
	// Producer and ProducerVersion name the tool that wrote the model.
	Producer        string
	ProducerVersion string
	// Doc is the model's doc_string.
	Doc string
	// Metadata becomes metadata_props, written in key order so output is deterministic.
	Metadata map[string]string
}

// Marshal validates the graph and encodes the model as ONNX protobuf bytes.
// The same model always encodes to the same bytes.
func (m *Model) Marshal() ([]byte, error) {
	if m.Graph == nil {
		return nil, fmt.Errorf("%w: model has no graph", ErrInvalidGraph)
	}
	if err := m.Graph.validate(); err != nil {
		return nil, err
	}
	opset, ir := m.Opset, m.IRVersion
	if opset == 0 {
		opset = DefaultOpset
	}
	if ir == 0 {
		ir = DefaultIRVersion
	}
	keys := make([]string, 0, len(m.Metadata))
	for k := range m.Metadata {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	meta := make([][2]string, len(keys))
	for i, k := range keys {
		meta[i] = [2]string{k, m.Metadata[k]}
	}
	return encodeModel(ir, opset, m.Producer, m.ProducerVersion, m.Doc, meta, m.Graph), nil
}
