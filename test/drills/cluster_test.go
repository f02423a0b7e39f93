package drills

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"anomalynode/dimse"
	"anomalynode/internal/peers"
)

// natsCluster is three JetStream servers in this test process, clustered by
// routes on loopback: the external cluster of README's scale-out section.
type natsCluster struct {
	t     testing.TB
	opts  []func() *server.Options
	srv   []*server.Server
	ports []int
}

func startNATSCluster(t testing.TB) *natsCluster {
	t.Helper()
	c := &natsCluster{t: t}
	var routes []string
	cports := make([]int, 3)
	for i := range cports {
		cports[i] = peers.FreePort(t)
		c.ports = append(c.ports, peers.FreePort(t))
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", cports[i]))
	}
	base := t.TempDir()
	for i := range 3 {
		dir := filepath.Join(base, fmt.Sprintf("n%d", i+1))
		c.opts = append(c.opts, func() *server.Options {
			return &server.Options{
				ServerName: fmt.Sprintf("n%d", i+1), Host: "127.0.0.1", Port: c.ports[i],
				JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true,
				Cluster: server.ClusterOpts{Name: "drill", Host: "127.0.0.1", Port: cports[i]},
				Routes:  server.RoutesFromStr(strings.Join(routes, ",")),
			}
		})
		c.srv = append(c.srv, nil)
	}
	for i := range 3 {
		c.start(i)
	}
	t.Cleanup(func() {
		for i := range c.srv {
			c.stop(i)
		}
	})
	// Ready once a replicated stream can be created: a meta leader is
	// elected and all three servers take part.
	nc, err := nats.Connect(c.url())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "DRILL_PROBE", Subjects: []string{"drill.probe"}, Replicas: 3})
		cancel()
		if err == nil {
			_ = js.DeleteStream(context.Background(), "DRILL_PROBE")
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("NATS cluster not ready in 60s: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (c *natsCluster) start(i int) {
	c.t.Helper()
	s, err := server.NewServer(c.opts[i]())
	if err != nil {
		c.t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		c.t.Fatalf("NATS server n%d not ready", i+1)
	}
	c.srv[i] = s
}

// stop shuts server i down (no goodbye to its clients beyond the closed
// connection: the drill's stand-in for kill -9 of a NATS process).
func (c *natsCluster) stop(i int) {
	if c.srv[i] != nil {
		c.srv[i].Shutdown()
		c.srv[i].WaitForShutdown()
		c.srv[i] = nil
	}
}

// url lists every server, as nats.url does in a scale-out config.
func (c *natsCluster) url() string {
	var u []string
	for _, p := range c.ports {
		u = append(u, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	return strings.Join(u, ",")
}

// notCurrent lists the streams (as STREAM@server) with a replica that is
// not current.
func (c *natsCluster) notCurrent(t testing.TB) []string {
	conn, err := nats.Connect(c.url())
	if err != nil {
		return []string{err.Error()}
	}
	defer conn.Close()
	js, _ := jetstream.New(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var lag []string
	l := js.ListStreams(ctx)
	for si := range l.Info() {
		if si.Cluster == nil {
			continue
		}
		for _, r := range si.Cluster.Replicas {
			if !r.Current {
				lag = append(lag, si.Config.Name+"@"+r.Name)
			}
		}
	}
	if err := l.Err(); err != nil {
		lag = append(lag, err.Error())
	}
	return lag
}

// clusterWork returns a probe of the shared work: slices and series
// completions waiting or handed out and not yet acknowledged.
func clusterWork(t testing.TB, c *natsCluster) func() int {
	t.Helper()
	conn, err := nats.Connect(c.url())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	js, _ := jetstream.New(conn)
	return func() int {
		n := 0
		for _, sc := range [][2]string{{"ANOMALYNODE_WORK", "slices"}, {"ANOMALYNODE_SERIES_DONE", "finaliser"}} {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			info, err := js.Consumer(ctx, sc[0], sc[1])
			if err == nil {
				var ci *jetstream.ConsumerInfo
				if ci, err = info.Info(ctx); err == nil {
					n += int(ci.NumPending) + ci.NumAckPending
				}
			}
			cancel()
			if err != nil {
				return 1 << 20 // unknown counts as pending
			}
		}
		return n
	}
}

// clusterSend records what the senders saw across both nodes.
type clusterSend struct {
	mu      sync.Mutex
	acked   map[string]string // SOP Instance UID -> node address that acknowledged it
	longest time.Duration     // the longest wait for a C-STORE response
	refused int               // responses that were not success (A700 while the store was down)
}

// send stores files, paced, on addrs[0], moving to the next address when an
// association fails (the node is gone), and re-sending what was not
// acknowledged, until all are or ctx is done.
func (cs *clusterSend) send(ctx context.Context, addrs []string, calling string, files []string, uid map[string]string, pause time.Duration, progress func(int)) error {
	left, at := files, 0
	cfg := dimse.ClientConfig{CallingAE: calling, CalledAE: nodeAE, DialTimeout: 5 * time.Second, DIMSETimeout: 60 * time.Second,
		Contexts: dimse.ContextsFor([][2]string{{mrClass, "1.2.840.10008.1.2.1"}})}
	for len(left) > 0 {
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %d instances never acknowledged", calling, len(left))
		}
		c, err := dimse.Dial(ctx, addrs[at%len(addrs)], cfg)
		if err != nil {
			at++
			time.Sleep(100 * time.Millisecond)
			continue
		}
		var rest []string
		broken := false
		for _, f := range left {
			if broken {
				rest = append(rest, f)
				continue
			}
			start := time.Now()
			st, err := c.StoreFile(ctx, f)
			took := time.Since(start)
			cs.mu.Lock()
			cs.longest = max(cs.longest, took)
			switch {
			case err == nil && (st.IsSuccess() || st.IsWarning()):
				cs.acked[uid[f]] = addrs[at%len(addrs)]
			case err == nil || errors.As(err, new(*dimse.StatusError)):
				cs.refused++
				rest = append(rest, f)
			default:
				broken = true
				rest = append(rest, f)
			}
			n := len(cs.acked)
			cs.mu.Unlock()
			if progress != nil {
				progress(n)
			}
			time.Sleep(pause)
		}
		if broken {
			_ = c.Abort()
			at++
		} else {
			_ = c.Release(ctx)
		}
		left = rest
		if len(left) > 0 {
			time.Sleep(200 * time.Millisecond)
		}
	}
	return nil
}

// TestClusterScaleOut is README's scale-out on loopback: three JetStream
// servers in one cluster (replicas 3) and two anomalynode nodes sharing
// them (nats.url lists all three, one shared folder destination). Faults,
// with series in flight: node A is SIGKILLed mid-series (its sender moves
// to node B), then one NATS server is shut down mid-send and restarted on
// its ports and store. Checked: every acknowledged instance is scored
// (heat map delivered), exactly one SEG per series version, nothing
// dead-lettered (exports, work), every C-STORE answered within
// ingest.store_timeout (plus slack), and the work node A held taken over
// by node B within ingest.ack_wait (plus the series' own completion time).
func TestClusterScaleOut(t *testing.T) {
	setup(t)
	nc := startNATSCluster(t)
	const (
		ackWait      = 5 * time.Second
		storeTimeout = 3 * time.Second
		slack        = 2 * time.Second
	)
	out := filepath.Join(t.TempDir(), "out")
	mk := func(name string) nodeConfig {
		c, _ := defaultConfig(t)
		c.name, c.natsURL, c.replicas = name, nc.url(), 3
		c.ackWait, c.storeTimeout = ackWait.String(), storeTimeout.String()
		c.dests = []dest{{name: "folder", folder: out}}
		return c
	}
	a, b := startNode(t, mk("node-a")), startNode(t, mk("node-b"))

	const nSeries, nSlices = 4, 10
	series := synthSeries(t, nSeries, nSlices, 64, 64)
	uid := map[string]string{}
	seriesOf := map[string]int{}
	for i, files := range series {
		for _, f := range files {
			u := fileMeta(t, f).MediaStorageSOPInstanceUID
			uid[f], seriesOf[u] = u, i
		}
	}
	cs := &clusterSend{acked: map[string]string{}}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pause := 150 * time.Millisecond
	var wg sync.WaitGroup
	errs := make([]error, nSeries)
	sendTo := func(i int, addrs []string, progress func(int)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = cs.send(ctx, addrs, fmt.Sprintf("MOD%d", i), series[i], uid, pause, progress)
		}()
	}
	ackedBy := func(addr string, idx int) []string {
		cs.mu.Lock()
		defer cs.mu.Unlock()
		var l []string
		for u, at := range cs.acked {
			if at == addr && seriesOf[u] == idx {
				l = append(l, u)
			}
		}
		return l
	}

	// Phase 1: series 0 to node A, series 1 to node B; node A is killed
	// once it has acknowledged 4 slices of series 0.
	killA := make(chan struct{})
	var once sync.Once
	sendTo(0, []string{a.cfg.dimse, b.cfg.dimse}, func(int) {
		if len(ackedBy(a.cfg.dimse, 0)) >= 4 {
			once.Do(func() { close(killA) })
		}
	})
	sendTo(1, []string{b.cfg.dimse}, nil)
	select {
	case <-killA:
	case <-ctx.Done():
		t.Fatal("node A never acknowledged 4 slices")
	}
	// Kill node A while it holds work (a slice handed to its model and not
	// yet acknowledged), if that moment comes within 10 s.
	holding := false
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		m, err := peers.ScrapeMetrics("http://" + a.cfg.admin + "/metrics")
		if err == nil && m.Sum("anomalynode_ingest_slices_dispatched_total") > m.Sum("anomalynode_ingest_slices_acked_total")+m.Sum("anomalynode_ingest_work_dead_lettered_total") {
			holding = true
			break
		}
	}
	a.kill9()
	killedAt := time.Now()
	work := clusterWork(t, nc)
	pendingAtKill := work()
	t.Logf("node A killed (holding a slice: %v) after acknowledging %d slices of series 0; work handed out and not acknowledged: %d",
		holding, len(ackedBy(a.cfg.dimse, 0)), pendingAtKill)
	wg.Wait()
	// Takeover: what node A held comes back to node B after ack_wait, so the
	// work and completion queues are empty (nothing pending, nothing handed
	// out) within ack_wait of the kill, plus the senders' own time.
	var takeover time.Duration
	waitFor(t, 90*time.Second, func() string { return fmt.Sprintf("%d work items still pending or held", work()) }, func() bool {
		if work() > 0 {
			return false
		}
		takeover = time.Since(killedAt)
		return true
	})
	// The last term is node B's own scoring of the backlog: 5 s on an idle
	// machine, but one run took 12.8 s of this 13.5 s bound, so a loaded 2-core
	// CI machine (test binaries run side by side) gets 15 s. A takeover that
	// does not happen still fails: the wait above gives up after 90 s.
	bound := ackWait + time.Duration(nSlices)*pause + 2*time.Second /* series_timeout */ + 15*time.Second
	t.Logf("takeover: work and completion queues empty %v after the kill (bound %v)", takeover.Round(time.Millisecond), bound)
	if takeover > bound {
		t.Errorf("takeover took %v, want within %v", takeover, bound)
	}
	a.start()

	// Phase 2: series 2 to node A, series 3 to node B; the NATS server the
	// nodes are connected to is shut down once 3 slices of phase 2 are
	// acknowledged, and restarted 3 s later on the same ports and store.
	cs.mu.Lock()
	before := len(cs.acked)
	cs.mu.Unlock()
	killNATS := make(chan struct{})
	var once2 sync.Once
	progress := func(n int) {
		if n-before >= 3 {
			once2.Do(func() { close(killNATS) })
		}
	}
	sendTo(2, []string{a.cfg.dimse, b.cfg.dimse}, progress)
	sendTo(3, []string{b.cfg.dimse, a.cfg.dimse}, progress)
	select {
	case <-killNATS:
	case <-ctx.Done():
		t.Fatal("phase 2 never got 3 slices acknowledged")
	}
	// The server most nodes are connected to: its clients must fail over
	// mid-store.
	victim := 0
	for i, s := range nc.srv {
		if s.NumClients() > nc.srv[victim].NumClients() {
			victim = i
		}
	}
	t.Logf("NATS server n%d (%d clients) shut down", victim+1, nc.srv[victim].NumClients())
	nc.stop(victim)
	time.Sleep(3 * time.Second)
	nc.start(victim)
	restarted := time.Now()
	t.Logf("NATS server n%d restarted", victim+1)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	cs.mu.Lock()
	acked := map[string]string{}
	for u := range cs.acked {
		acked[u] = u
	}
	longest, refused := cs.longest, cs.refused
	cs.mu.Unlock()
	if len(acked) != nSeries*nSlices {
		t.Fatalf("%d instances acknowledged, want %d", len(acked), nSeries*nSlices)
	}
	t.Logf("C-STORE: longest wait for a response %v (bound %v + %v), %d refused and re-sent", longest.Round(time.Millisecond), storeTimeout, slack, refused)
	if longest > storeTimeout+slack {
		t.Errorf("a C-STORE waited %v for its response, want within %v", longest, storeTimeout+slack)
	}

	var outs []output
	waitFor(t, 120*time.Second, func() string {
		m := b.metrics()
		return fmt.Sprintf("%d acknowledged instances without a heat map; work queue %v, export queue %v, open series %v",
			len(missingHeatMaps(outs, acked)), m.Sum("anomalynode_ingest_queue_depth"), m.Sum("anomalynode_export_queue_depth"), m.Sum("anomalynode_ingest_series_open"))
	}, func() bool {
		outs = readOutputs(t, out)
		if len(missingHeatMaps(outs, acked)) > 0 {
			return false
		}
		m := b.metrics()
		return m.Sum("anomalynode_ingest_queue_depth") == 0 && m.Sum("anomalynode_export_queue_depth") == 0
	})
	checkSEGs(t, outs, acked, seriesOf, nSeries)
	for _, n := range []*node{a, b} {
		m := n.metrics()
		t.Logf("%s: scored %v slices, stored %v instances", n.cfg.name, m.Sum("anomalynode_slices_scored_total"), m.Sum("anomalynode_ingest_instances_stored_total"))
	}

	// How long the restarted server's replicas take to be current again
	// (a measurement for docs/scaleout.md, not an assertion: it is NATS's
	// own catch-up).
	if lag := nc.notCurrent(t); len(lag) > 0 {
		waitFor(t, 60*time.Second, func() string { return fmt.Sprintf("replicas not current: %v", nc.notCurrent(t)) }, func() bool {
			return len(nc.notCurrent(t)) == 0
		})
	}
	t.Logf("every stream replica current %v after the NATS restart", time.Since(restarted).Round(100*time.Millisecond))

	// Nothing dead-lettered, in the shared streams (either node's config
	// reads them).
	for _, sub := range []string{"list", "poison"} {
		res, err := runBin("exports", sub, "--config", b.cfgPath, "--json")
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(strings.TrimSpace(res), "\n") {
			var j map[string]any
			if json.Unmarshal([]byte(l), &j) == nil && j["seq"] != nil {
				t.Errorf("exports %s after the drill: %s", sub, l)
			}
		}
	}
}
