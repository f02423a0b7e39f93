package ingest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"anomalynode/internal/collect"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	received     *prometheus.CounterVec
	refused      *prometheus.CounterVec
	stored       prometheus.Counter
	storedBytes  prometheus.Counter
	duplicate    prometheus.Counter
	ignored      prometheus.Counter
	quarantined  prometheus.Counter
	dispatched   prometheus.Counter
	acked        prometheus.Counter
	redundant    prometheus.Counter
	reopened     prometheus.Counter
	completed    *prometheus.CounterVec
	deadLettered *prometheus.CounterVec
	openSeries   prometheus.Gauge
	storeSeconds prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer, s *Service) (*metrics, error) {
	const ns, sub = "anomalynode", "ingest"
	m := &metrics{
		received: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "instances_received_total",
			Help: "Instances offered to the store, by source (network, folder); every offer is counted by its outcome too: received = stored + duplicate + ignored + refused."}, []string{"source"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "instances_refused_total",
			Help: "Instances not accepted, by reason (disk, store, malformed, source: the sender or file went away mid-read)."}, []string{"reason"}),
		stored: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "instances_stored_total",
			Help: "Instances stored durably and queued."}),
		storedBytes: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "stored_bytes_total",
			Help: "Bytes of data sets stored."}),
		duplicate: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "instances_duplicate_total",
			Help: "Instances received again (same SOP Instance UID) and discarded."}),
		ignored: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "instances_ignored_total",
			Help: "Instances routed nowhere (non-image, ignore rule, no rule)."}),
		quarantined: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "files_quarantined_total",
			Help: "Watched-folder files moved to quarantine (files, not offers: each was refused as malformed on its last offer, or is a symbolic link that is not followed)."}),
		dispatched: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "slices_dispatched_total",
			Help: "Slice deliveries to the slice consumer (redeliveries included)."}),
		acked: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "slices_acked_total",
			Help: "Slices acknowledged by the slice consumer."}),
		redundant: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "slices_redundant_total",
			Help: "Work items dropped because their instance was already processed (lost ack or re-send after a crash)."}),
		reopened: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "series_reopened_total",
			Help: "Completed series re-opened by a late instance."}),
		completed: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "series_completed_total",
			Help: "Series completions, by reason (quiet, expected, implied)."}, []string{"reason"}),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "work_dead_lettered_total",
			Help: "Work items set aside (failed their bounded deliveries, or can never succeed), by stage (slice, completion); list them with 'anomalynode exports list'."}, []string{"stage"}),
		openSeries: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "series_open",
			Help: "Series not yet complete."}),
		storeSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "store_seconds",
			Help:    "Time from receiving an instance to it being durable and queued.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
	}
	depth := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "queue_depth",
		Help: "Slices stored and not yet acknowledged by the slice consumer."}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st, err := s.js.JetStream.Stream(ctx, s.workName)
		if err != nil {
			return -1
		}
		info, err := st.Info(ctx)
		if err != nil {
			return -1
		}
		return float64(info.State.Msgs)
	})
	spares := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "spare_segments",
		Help: "Segments written ahead and ready for data sets (instance files); at 0 data sets go to files of their own, slower, until the upkeep makes one."}, func() float64 {
		if s.files == nil || s.files.segs == nil {
			return 0
		}
		_, n := s.files.segs.counts()
		return float64(n)
	})
	// Registered before the label values below are set: a second service on
	// the same registry counts into the collectors the first registered.
	if err := errors.Join(collect.Register(reg, &m.received), collect.Register(reg, &m.refused), collect.Register(reg, &m.stored),
		collect.Register(reg, &m.storedBytes), collect.Register(reg, &m.duplicate), collect.Register(reg, &m.ignored),
		collect.Register(reg, &m.quarantined), collect.Register(reg, &m.dispatched), collect.Register(reg, &m.acked),
		collect.Register(reg, &m.redundant), collect.Register(reg, &m.reopened), collect.Register(reg, &m.completed),
		collect.Register(reg, &m.deadLettered), collect.Register(reg, &m.openSeries), collect.Register(reg, &m.storeSeconds),
		collect.Register(reg, &depth), collect.Register(reg, &spares)); err != nil {
		return nil, fmt.Errorf("ingest: register metrics: %w", err)
	}
	// Every label value is exported from the start (at 0): a dashboard or an
	// alert on a rate needs the series before its first event.
	for _, src := range []string{SourceNetwork, SourceFolder} {
		m.received.WithLabelValues(src)
	}
	for _, reason := range []string{"disk", "store", "malformed", "source"} {
		m.refused.WithLabelValues(reason)
	}
	for _, stage := range []string{StageSlice, StageCompletion} {
		m.deadLettered.WithLabelValues(stage)
	}
	return m, nil
}
