package dimse

import (
	"errors"
	"fmt"

	"anomalynode/internal/collect"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are recorded by the server around every association and C-STORE,
// so handlers need not count anything themselves.
type metrics struct {
	associations *prometheus.CounterVec // by result: accepted, rejected, aborted...
	active       prometheus.Gauge
	stores       *prometheus.CounterVec // by status class
	storeBytes   prometheus.Counter
	storeSeconds prometheus.Histogram
}

// newMetrics returns the server's metrics registered on reg (may be nil),
// and the registration error, if any.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		associations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "anomalynode_dimse_associations_total",
			Help: "DICOM associations by outcome (accepted, rejected, aborted, released, failed).",
		}, []string{"outcome"}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "anomalynode_dimse_associations_active",
			Help: "Open DICOM connections (negotiating or associated).",
		}),
		stores: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "anomalynode_dimse_cstore_total",
			Help: "C-STORE requests answered, by status class (success, warning, failure).",
		}, []string{"status"}),
		storeBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "anomalynode_dimse_cstore_bytes_total",
			Help: "Data set bytes received by C-STORE.",
		}),
		storeSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "anomalynode_dimse_cstore_duration_seconds",
			Help:    "Time from C-STORE command to response.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
	}
	err := errors.Join(collect.Register(reg, &m.associations), collect.Register(reg, &m.active), collect.Register(reg, &m.stores),
		collect.Register(reg, &m.storeBytes), collect.Register(reg, &m.storeSeconds))
	if err != nil {
		err = fmt.Errorf("dimse: register metrics: %w", err)
	}
	return m, err
}

func statusClass(s Status) string {
	switch {
	case s.IsSuccess():
		return "success"
	case s.IsWarning():
		return "warning"
	}
	return "failure"
}
