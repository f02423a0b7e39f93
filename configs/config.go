// Package configs owns the node's configuration: the schema, defaults (set in one
// place, Default), strict loading (unknown keys are errors with file:line) and
// validation that reports every problem at once. It holds no business logic: the
// packages that act on a section receive plain values from it.
//
// Each section lives in its own file (dimse.go, ingest.go, inference.go,
// output.go); every section type has setDefaults and validate methods that this
// file calls.
package configs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"gopkg.in/yaml.v3"
)

// Version is the software version written into outputs (SoftwareVersions) and logs.
const Version = "0.1.0"

// Config is the whole configuration file.
type Config struct {
	// Node is the node as a whole: its name and data directory.
	Node Node `yaml:"node"`
	// Log configures logging.
	Log Log `yaml:"log"`
	// Admin is the HTTP server for /metrics, /healthz, /readyz and the console.
	Admin Admin `yaml:"admin"`
	// DIMSE is the DICOM listener (SCP) and its acceptance policy.
	DIMSE DIMSE `yaml:"dimse"`
	// NATS is the durable store and queue: embedded JetStream, or an external cluster.
	NATS NATS `yaml:"nats"`
	// Ingest is how instances get in: store limits, watched folders, series completion.
	Ingest Ingest `yaml:"ingest"`
	// Inference is the embedder runtime shared by all models.
	Inference Inference `yaml:"inference"`
	// Models are the fitted models, by the name routing rules use.
	Models map[string]Model `yaml:"models"`
	// Routes are the routing rules, evaluated in order; the first match wins.
	Routes []Route `yaml:"routes"`
	// Destinations are where outputs go, by the name routing rules use.
	Destinations map[string]Destination `yaml:"destinations"`
	// Output configures the SEG and SC objects.
	Output Output `yaml:"output"`
	// Export configures delivery retries and the dead-letter store.
	Export Export `yaml:"export"`

	// source is the file name and parsed tree, kept so validation problems can
	// name the line of the key they are about.
	source string
	root   *yaml.Node
}

// Node holds settings of the node as a whole.
type Node struct {
	// DataDir holds the durable store (JetStream), quarantine and state.
	DataDir string `yaml:"data_dir"`
	// Name identifies this node in logs and metrics.
	Name string `yaml:"name"`
	// Role is what this node runs: "all" (the default: DICOM listener,
	// watched folders, inference, SEG/SC export), "receiver" (listener,
	// watched folders and series tracking; no model is loaded, routing still
	// names models for the workers) or "worker" (inference, series tracking
	// and export; no DICOM listener, no watched folders). The split roles
	// share an external NATS cluster (nats.url).
	Role string `yaml:"role"`
}

// Node roles (node.role).
const (
	RoleAll      = "all"
	RoleReceiver = "receiver"
	RoleWorker   = "worker"
)

// Receives reports whether the node runs the DICOM listener and the watched
// folders.
func (n Node) Receives() bool { return n.Role != RoleWorker }

// Works reports whether the node loads its models and runs inference, the
// finaliser and the export queue.
func (n Node) Works() bool { return n.Role != RoleReceiver }

// Log configures logging.
type Log struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
	// Format is json, console, or auto (console on a terminal, else json).
	Format string `yaml:"format"`
}

// Default returns a configuration with every default filled in.
func Default() *Config {
	c := &Config{}
	c.setDefaults()
	return c
}

func (c *Config) setDefaults() {
	if c.Node.DataDir == "" {
		c.Node.DataDir = "data"
	}
	if c.Node.Name == "" {
		c.Node.Name = "anomalynode"
	}
	if c.Node.Role == "" {
		c.Node.Role = RoleAll
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "auto"
	}
	c.Admin.setDefaults()
	c.DIMSE.setDefaults()
	c.NATS.setDefaults()
	c.Ingest.setDefaults()
	c.Inference.setDefaults()
	for name, m := range c.Models {
		m.setDefaults()
		c.Models[name] = m
	}
	for i := range c.Routes {
		c.Routes[i].setDefaults()
	}
	for name, d := range c.Destinations {
		d.setDefaults()
		c.Destinations[name] = d
	}
	c.Output.setDefaults()
	c.Export.setDefaults()
}

// Load reads, strictly parses, defaults and validates a configuration file.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("configs: %w", err)
	}
	return Parse(data, path)
}

// Parse is Load on bytes already read; name is used in error messages.
func Parse(data []byte, name string) (*Config, error) {
	c := &Config{source: name}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("configs: %s: %w", name, cleanYAMLError(err))
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("configs: %s: %w", name, cleanYAMLError(err))
	}
	c.root = &root
	c.setDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// cleanYAMLError turns yaml.v3's "line N: field x not found in type configs.T"
// into "line N: unknown key "x"", the form an operator can act on.
func cleanYAMLError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: unmarshal errors:\n")
	var lines []string
	for _, l := range strings.Split(msg, "\n") {
		l = strings.TrimSpace(l)
		if i := strings.Index(l, ": field "); i >= 0 && strings.Contains(l, " not found in type ") {
			field := l[i+len(": field "):]
			field = field[:strings.Index(field, " not found in type ")]
			l = fmt.Sprintf("%s: unknown key %q", l[:i], field)
		}
		if l != "" {
			lines = append(lines, l)
		}
	}
	return errors.New(strings.Join(lines, "; "))
}

// problems collects validation failures, each keyed by its YAML path
// (e.g. "dimse.max_pdu" or "routes[2].model").
type problems struct {
	list []problem
}

type problem struct {
	path string
	msg  string
}

func (p *problems) add(path, format string, args ...any) {
	p.list = append(p.list, problem{path: path, msg: fmt.Sprintf(format, args...)})
}

// Validate checks the whole configuration and returns every problem found, each
// with the file and line of the key when the configuration came from a file.
func (c *Config) Validate() error {
	var p problems
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		p.add("log.level", "must be debug, info, warn or error, not %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "json", "console", "auto":
	default:
		p.add("log.format", "must be json, console or auto, not %q", c.Log.Format)
	}
	c.Admin.validate(&p, "admin")
	switch c.Node.Role {
	case RoleAll:
	case RoleReceiver, RoleWorker:
		if c.NATS.URL == "" {
			p.add("node.role", "%q shares its work with other nodes through an external NATS cluster: set nats.url", c.Node.Role)
		}
	default:
		p.add("node.role", "must be all, receiver or worker, not %q", c.Node.Role)
	}
	c.DIMSE.validate(&p, "dimse")
	c.NATS.validate(&p, "nats")
	c.Ingest.validate(&p, "ingest")
	if c.NATS.URL != "" && c.Ingest.InstanceStore == "files" {
		p.add("ingest.instance_store", "files are local to one node; with nats.url every node reads the bytes from the cluster: use stream")
	}
	c.Inference.validate(&p, "inference")
	for name, m := range c.Models {
		m.validate(&p, "models."+name)
	}
	for i := range c.Routes {
		c.Routes[i].validate(&p, fmt.Sprintf("routes[%d]", i), c)
	}
	for name, d := range c.Destinations {
		d.validate(&p, "destinations."+name)
	}
	c.Output.validate(&p, "output")
	c.Export.validate(&p, "export")
	if len(p.list) == 0 {
		return nil
	}
	msgs := make([]string, 0, len(p.list))
	for _, pr := range p.list {
		loc := c.source
		if line := lineOf(c.root, pr.path); line > 0 {
			loc = fmt.Sprintf("%s:%d", c.source, line)
		}
		if loc != "" {
			loc += ": "
		}
		msgs = append(msgs, fmt.Sprintf("%s%s: %s", loc, pr.path, pr.msg))
	}
	return fmt.Errorf("configs: invalid configuration:\n  %s", strings.Join(msgs, "\n  "))
}

// lineOf finds the line of the key at path ("a.b[2].c") in a parsed YAML tree,
// falling back to the deepest ancestor found; 0 when unknown.
func lineOf(root *yaml.Node, path string) int {
	if root == nil {
		return 0
	}
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := 0
	for _, part := range splitPath(path) {
		switch {
		case part.index >= 0:
			if n.Kind != yaml.SequenceNode || part.index >= len(n.Content) {
				return line
			}
			n = n.Content[part.index]
			line = n.Line
		default:
			if n.Kind != yaml.MappingNode {
				return line
			}
			found := false
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == part.key {
					line = n.Content[i].Line
					n = n.Content[i+1]
					found = true
					break
				}
			}
			if !found {
				return line
			}
		}
	}
	return line
}

type pathPart struct {
	key   string
	index int
}

func splitPath(path string) []pathPart {
	var parts []pathPart
	for _, seg := range strings.Split(path, ".") {
		key, rest, _ := strings.Cut(seg, "[")
		if key != "" {
			parts = append(parts, pathPart{key: key, index: -1})
		}
		for rest != "" {
			var idx int
			fmt.Sscanf(rest, "%d]", &idx)
			parts = append(parts, pathPart{index: idx})
			_, rest, _ = strings.Cut(rest, "[")
		}
	}
	return parts
}
