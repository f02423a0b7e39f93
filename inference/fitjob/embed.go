package fitjob

import (
	"context"
	"encoding/json"
	"fmt"

	"anomalynode/inference"
	"anomalynode/inference/pixel"
)

// ONNXEmbedder is the SliceEmbedder of the real pipeline: decode (inference.
// DecodeFile), preprocess (METHOD.md 1) and embed one slice at a time (batch
// 1) with the ONNX Runtime embedder.
type ONNXEmbedder struct {
	// Embedder is the open ONNX session.
	Embedder *inference.Embedder
	// Pre is the preprocessing the model records.
	Pre *inference.Preprocessor
	// EmbedderSHA256 identifies the ONNX file (part of the cache key).
	EmbedderSHA256 string
}

// EmbedFile implements SliceEmbedder.
func (o *ONNXEmbedder) EmbedFile(ctx context.Context, path string) ([]EmbeddedSlice, error) {
	slices, err := pixel.DecodeFile(path)
	if err != nil {
		return nil, err
	}
	out := make([]EmbeddedSlice, 0, len(slices))
	for _, s := range slices {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		e, err := o.EmbedSlice(s)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// EmbedSlice preprocesses and embeds one decoded slice.
func (o *ONNXEmbedder) EmbedSlice(s *pixel.Slice) (EmbeddedSlice, error) {
	pr, err := o.Pre.Preprocess(s)
	if err != nil {
		return EmbeddedSlice{}, err
	}
	g := pr.Geometry
	emb, err := o.Embedder.Embed(pr.Tensor, 1, g.Rows, g.Cols)
	if err != nil {
		return EmbeddedSlice{}, err
	}
	if emb.Patches != g.Patches() {
		return EmbeddedSlice{}, fmt.Errorf("fitjob: embedder returned %d patches for a %dx%d grid", emb.Patches, g.GridRows, g.GridCols)
	}
	e := EmbeddedSlice{Patches: emb.Slice(0), D: emb.Dim, Geometry: g, Series: s.SeriesInstanceUID}
	if pl, err := inference.Plane(s); err == nil {
		// Without a plane the slice still fits and calibrates pixel
		// thresholds; only finding calibration needs it.
		e.Plane = &pl
	}
	return e, nil
}

// Identity implements SliceEmbedder: the ONNX file's hash and the preprocessing.
func (o *ONNXEmbedder) Identity() string {
	b, _ := json.Marshal(o.Pre)
	return o.EmbedderSHA256 + "|" + string(b)
}
