package drills

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"anomalynode/internal/peers"
)

// rssSampler samples a process's VmRSS until stopped and keeps the maximum.
type rssSampler struct {
	max  atomic.Int64
	stop chan struct{}
	done chan struct{}
}

func sampleRSS(pid int, every time.Duration) *rssSampler {
	s := &rssSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tk := time.NewTicker(every)
		defer tk.Stop()
		for {
			if v, err := peers.VmRSS(pid); err == nil && v > s.max.Load() {
				s.max.Store(v)
			}
			select {
			case <-s.stop:
				return
			case <-tk.C:
			}
		}
	}()
	return s
}

// Stop ends sampling and returns the maximum RSS in bytes.
func (s *rssSampler) Stop() int64 {
	close(s.stop)
	<-s.done
	return s.max.Load()
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// TestLoad: 16 concurrent associations x 200 instances (64x64 slices; sizes
// from DRILLS_LOAD_ASSOCIATIONS / DRILLS_LOAD_INSTANCES) are all stored
// (received == stored == acknowledged == sent) while the node's RSS, sampled
// from /proc/PID/status, stays under DRILLS_LOAD_MAX_RSS_MB (default 1024).
// Slices/s through the whole node (ingest, inference, SEG/SC, export) is
// measured over the run; on CI's 2 shared cores scoring 3200 slices takes
// minutes, so the drill waits for all of them to be finalised and exported
// only with DRILLS_LOAD_FULL=1 or DRILLS_SCALE > 1, else it measures for
// DRILLS_LOAD_WINDOW seconds (default 15) after the last instance is stored.
func TestLoad(t *testing.T) {
	setup(t)
	assocs := envInt("DRILLS_LOAD_ASSOCIATIONS", 16)
	per := envInt("DRILLS_LOAD_INSTANCES", 200*scale())
	maxRSS := int64(envInt("DRILLS_LOAD_MAX_RSS_MB", 1024)) << 20
	full := scale() > 1 || os.Getenv("DRILLS_LOAD_FULL") != ""
	window := time.Duration(envInt("DRILLS_LOAD_WINDOW", 15)) * time.Second
	c, out := defaultConfig(t)
	c.maxAssociations = assocs + 4
	n := startNode(t, c)
	series := synthSeries(t, assocs, per, 64, 64)
	total := assocs * per

	rss := sampleRSS(n.pid(), 100*time.Millisecond)
	idle, _ := peers.VmRSS(n.pid())
	start := time.Now()
	var wg sync.WaitGroup
	results := make([]sendResult, assocs)
	for i := range series {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = storeFiles(context.Background(), c.dimse, fmt.Sprintf("LOAD%02d", i), series[i])
		}()
	}
	wg.Wait()
	stored := time.Since(start)
	sent := 0
	for i, r := range results {
		if r.err != nil || len(r.acked) != per {
			t.Errorf("association %d: %d of %d acknowledged: %v", i, len(r.acked), per, r.err)
		}
		sent += len(r.acked)
	}
	m := n.metrics()
	if v := m.Sum("anomalynode_ingest_instances_received_total"); v != float64(total) {
		t.Errorf("instances_received_total = %v, sent %d", v, total)
	}
	if v := m.Sum("anomalynode_ingest_instances_stored_total"); v != float64(sent) || sent != total {
		t.Errorf("instances_stored_total = %v, acknowledged %d, sent %d", v, sent, total)
	}

	if full {
		waitFor(t, 20*time.Minute, func() string {
			return fmt.Sprintf("scored %v of %d, series finalised %v of %d, export queue %v",
				m.Sum("anomalynode_slices_scored_total"), total, m.Sum("anomalynode_series_completed_total"), assocs,
				m.Sum("anomalynode_export_queue_depth"))
		}, func() bool {
			m = n.metrics()
			return m.Sum("anomalynode_slices_scored_total") >= float64(total) &&
				m.Sum("anomalynode_series_completed_total") >= float64(assocs) &&
				m.Sum("anomalynode_export_queue_depth") == 0
		})
	} else {
		deadline := time.Now().Add(window)
		for time.Now().Before(deadline) && m.Sum("anomalynode_slices_scored_total") < float64(total) {
			time.Sleep(200 * time.Millisecond)
			m = n.metrics()
		}
	}
	elapsed := time.Since(start)
	peak := rss.Stop()
	scored := m.Sum("anomalynode_slices_scored_total")
	if v := m.Sum("anomalynode_slices_failed_total"); v != 0 {
		t.Errorf("slices_failed_total = %v", v)
	}
	if full {
		if scored != float64(total) {
			t.Errorf("slices_scored_total = %v, want %d", scored, total)
		}
		if outs := readOutputs(t, out); len(outs) != total+assocs {
			t.Errorf("%d objects in the folder destination, want %d (a SEG and %d SC per series)", len(outs), total+assocs, per)
		}
	}
	if peak > maxRSS {
		t.Errorf("node RSS peaked at %d MiB, over the %d MiB bound", peak>>20, maxRSS>>20)
	}
	t.Logf("load: %d associations x %d instances (64x64): all %d stored in %s (%.0f instances/s); %.0f slices scored in %s: %.1f slices/s scored (full=%v: with full, SEG/SC built and exported too); RSS idle %d MiB, peak %d MiB",
		assocs, per, sent, stored.Round(time.Millisecond), float64(sent)/stored.Seconds(), scored, elapsed.Round(time.Millisecond),
		scored/elapsed.Seconds(), full, idle>>20, peak>>20)
}
