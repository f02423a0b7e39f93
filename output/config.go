package output

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"sort"
	"time"

	"github.com/rs/zerolog"

	"anomalynode/configs"
	"anomalynode/dimse"
)

// equipment is this node as the outputs' equipment modules describe it.
func equipment(c *configs.Config) Equipment {
	return Equipment{
		Manufacturer:          c.Output.Manufacturer,
		ManufacturerModelName: "anomalynode",
		DeviceSerialNumber:    c.Output.DeviceSerialNumber,
		SoftwareVersion:       configs.Version,
	}
}

// SEGOptionsFrom turns the output section into SEG build options.
func SEGOptionsFrom(c *configs.Config) SEGOptions {
	o := c.Output
	return SEGOptions{
		SeriesDescription: o.SEGSeriesDescription,
		SeriesNumber:      o.SEGSeriesNumber,
		AllSlices:         o.SEGAllSlices,
		ContentLabel:      o.ContentLabel,
		SegmentLabel:      o.SegmentLabel,
		SegmentType:       Code{o.SegmentType.Value, o.SegmentType.Scheme, o.SegmentType.Meaning},
		Equipment:         equipment(c),
		MaxSegments:       o.SEGMaxSegments,
	}
}

// SCOptionsFrom turns the output section into heat-map build options.
func SCOptionsFrom(c *configs.Config) SCOptions {
	o := c.Output
	return SCOptions{
		SeriesDescription: o.SCSeriesDescription,
		SeriesNumber:      o.SCSeriesNumber,
		OnlyFindings:      o.SCOnlyFindings,
		Disabled:          !o.SCEnabled(),
		Opacity:           o.HeatmapOpacity,
		Equipment:         equipment(c),
	}
}

// QueueConfigFrom turns the export section (and the NATS prefix) into the
// queue's configuration.
func QueueConfigFrom(c *configs.Config) QueueConfig {
	return QueueConfig{
		Prefix:         c.NATS.Prefix,
		Replicas:       c.NATS.Replicas,
		MaxAttempts:    c.Export.MaxAttempts,
		MaxAge:         c.Export.MaxAge,
		BackoffInitial: c.Export.BackoffInitial,
		BackoffMax:     c.Export.BackoffMax,
	}
}

// DestinationsFrom builds a Destination per configured destination: a
// C-STORE sender (with DICOM TLS when enabled) and/or a folder.
func DestinationsFrom(c *configs.Config, log zerolog.Logger) ([]Destination, error) {
	names := make([]string, 0, len(c.Destinations))
	for n := range c.Destinations {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []Destination
	for _, n := range names {
		d := c.Destinations[n]
		var senders Multi
		if d.Address != "" {
			calling := d.CallingAE
			if calling == "" {
				calling = c.DIMSE.AETitle
			}
			cfg := dimse.ClientConfig{CallingAE: calling, CalledAE: d.CalledAE, DIMSETimeout: d.Timeout, DialTimeout: min(d.Timeout, 30*time.Second)}
			if d.TLS.Enabled {
				tc, err := destinationTLS(d)
				if err != nil {
					return nil, fmt.Errorf("output: destination %s: %w", n, err)
				}
				cfg.TLS = tc
			}
			senders = append(senders, &CStore{Addr: d.Address, Config: cfg, Log: log.With().Str("destination", n).Logger()})
		}
		if d.Folder != "" {
			senders = append(senders, &Folder{Dir: d.Folder})
		}
		var s Sender = senders
		if len(senders) == 1 {
			s = senders[0]
		}
		out = append(out, Destination{Name: n, Sender: s, Concurrency: d.Concurrency, Timeout: d.Timeout})
	}
	return out, nil
}

func destinationTLS(d configs.Destination) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: d.TLS.ServerName}
	if tc.ServerName == "" {
		tc.ServerName, _, _ = net.SplitHostPort(d.Address)
	}
	if d.TLS.CA != "" {
		pem, err := os.ReadFile(d.TLS.CA)
		if err != nil {
			return nil, fmt.Errorf("tls ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls ca %s: no certificates", d.TLS.CA)
		}
		tc.RootCAs = pool
	}
	if d.TLS.Cert != "" {
		cert, err := tls.LoadX509KeyPair(d.TLS.Cert, d.TLS.Key)
		if err != nil {
			return nil, fmt.Errorf("tls cert: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
