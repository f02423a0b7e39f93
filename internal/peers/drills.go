package peers

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// BuildBinary returns the anomalynode binary for a test binary's whole run:
// $ANOMALYNODE_BIN when set, else one built into dir (which outlives single
// tests, unlike Binary's t.TempDir).
func BuildBinary(dir string) (string, error) {
	if p := os.Getenv("ANOMALYNODE_BIN"); p != "" {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	out := filepath.Join(dir, "anomalynode")
	cmd := exec.Command("go", "build", "-o", out, "anomalynode/cmd/anomalynode")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("peers: build anomalynode: %w\n%s", err, b)
	}
	return out, nil
}

// Metrics is one scrape of a Prometheus text endpoint: every sample by its
// full series name (metric name plus labels as written, e.g.
// `anomalynode_export_delivered_total{destination="folder"}`).
type Metrics map[string]float64

// ScrapeMetrics reads url (a /metrics endpoint) once.
func ScrapeMetrics(url string) (Metrics, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("peers: %s: HTTP %d", url, resp.StatusCode)
	}
	return ParseMetrics(resp.Body)
}

// ParseMetrics parses the Prometheus text exposition format (comments skipped).
func ParseMetrics(r io.Reader) (Metrics, error) {
	m := Metrics{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<16), 1<<22)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		m[line[:i]] = v
	}
	return m, sc.Err()
}

// Sum adds every sample of metric name whose labels contain all of labels
// (each written as `key="value"`).
func (m Metrics) Sum(name string, labels ...string) float64 {
	var s float64
	for k, v := range m {
		base, lbl, _ := strings.Cut(k, "{")
		if base != name {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(lbl, l) {
				ok = false
				break
			}
		}
		if ok {
			s += v
		}
	}
	return s
}

// VmRSS returns the resident set size of process pid in bytes, from
// /proc/PID/status.
func VmRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				break
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, err
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("peers: no VmRSS in /proc/%d/status", pid)
}
