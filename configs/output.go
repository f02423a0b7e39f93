package configs

import "time"

// Output configures the SEG and SC objects the node builds.
type Output struct {
	// SEGSeriesDescription is the SeriesDescription of SEG series.
	SEGSeriesDescription string `yaml:"seg_series_description"`
}

func (o *Output) setDefaults() {
	if o.SEGSeriesDescription == "" {
		o.SEGSeriesDescription = "Anomaly segmentation (anomalynode)"
	}
}

func (o *Output) validate(p *problems, path string) {}

// Destination is where outputs are delivered: a DICOM AE and/or a folder.
type Destination struct {
	// Address is HOST:PORT of a C-STORE SCP.
	Address string `yaml:"address"`
	// CalledAE is the destination's AE title.
	CalledAE string `yaml:"called_ae"`
	// Folder writes outputs as files instead of (or as well as) sending them.
	Folder string `yaml:"folder"`
}

func (d *Destination) setDefaults() {}

func (d *Destination) validate(p *problems, path string) {
	if d.Address == "" && d.Folder == "" {
		p.add(path, "needs an address or a folder")
	}
	if d.Address != "" && d.CalledAE == "" {
		p.add(path+".called_ae", "required with address")
	}
}

// Export configures delivery retries and the dead-letter store.
type Export struct {
	MaxAttempts int           `yaml:"max_attempts"`
	MaxAge      time.Duration `yaml:"max_age"`
}

func (e *Export) setDefaults() {
	if e.MaxAttempts == 0 {
		e.MaxAttempts = 10
	}
	if e.MaxAge == 0 {
		e.MaxAge = 24 * time.Hour
	}
}

func (e *Export) validate(p *problems, path string) {
	if e.MaxAttempts < 1 {
		p.add(path+".max_attempts", "must be at least 1")
	}
}
