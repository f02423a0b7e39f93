package configs

// Inference configures the embedder runtime shared by all models.
type Inference struct {
	// Device is cpu or cuda.
	Device string `yaml:"device"`
	// ORTLibrary is the path of libonnxruntime.so; empty uses $ONNXRUNTIME_LIB.
	ORTLibrary string `yaml:"ort_library"`
	// Threads is ONNX Runtime's intra-op thread count (0: all cores).
	Threads int `yaml:"threads"`
	// Batch is the largest number of slices per model run.
	Batch int `yaml:"batch"`
}

func (i *Inference) setDefaults() {
	if i.Device == "" {
		i.Device = "cpu"
	}
	if i.Batch == 0 {
		i.Batch = 4
	}
}

func (i *Inference) validate(p *problems, path string) {
	if i.Device != "cpu" && i.Device != "cuda" {
		p.add(path+".device", "must be cpu or cuda, not %q", i.Device)
	}
	if i.Batch < 1 {
		p.add(path+".batch", "must be at least 1")
	}
}

// Model names a fitted DPMM model file and the embedder it was fitted with.
type Model struct {
	// Path of the model file written by 'anomalynode fit'.
	Path string `yaml:"path"`
	// Embedder is the ONNX file of the backbone.
	Embedder string `yaml:"embedder"`
}

func (m *Model) setDefaults() {}

func (m *Model) validate(p *problems, path string) {
	if m.Path == "" {
		p.add(path+".path", "required")
	}
	if m.Embedder == "" {
		p.add(path+".embedder", "required")
	}
}
