package configs

import "time"

// NATS configures the durable store and queue (JetStream).
type NATS struct {
	// URL of an external NATS cluster; empty runs the embedded server under
	// node.data_dir.
	URL string `yaml:"url"`
}

func (n *NATS) setDefaults() {}

func (n *NATS) validate(p *problems, path string) {}

// Ingest configures how instances get in: watched folders and series completion.
type Ingest struct {
	// SeriesTimeout completes a series after this long without new instances.
	SeriesTimeout time.Duration `yaml:"series_timeout"`
}

func (i *Ingest) setDefaults() {
	if i.SeriesTimeout == 0 {
		i.SeriesTimeout = 30 * time.Second
	}
}

func (i *Ingest) validate(p *problems, path string) {
	if i.SeriesTimeout < 0 {
		p.add(path+".series_timeout", "must not be negative")
	}
}

// Route is one routing rule: a match and what to do with matching instances.
type Route struct {
	Name  string `yaml:"name"`
	Model string `yaml:"model"`
	// Ignore drops matching instances instead of running a model.
	Ignore       bool     `yaml:"ignore"`
	Destinations []string `yaml:"destinations"`
}

func (r *Route) setDefaults() {}

func (r *Route) validate(p *problems, path string, c *Config) {
	if r.Ignore {
		return
	}
	if _, ok := c.Models[r.Model]; !ok {
		p.add(path+".model", "unknown model %q", r.Model)
	}
	for i, d := range r.Destinations {
		if _, ok := c.Destinations[d]; !ok {
			p.add(path+".destinations", "destination %d: unknown destination %q", i, d)
		}
	}
}
