package ingest

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/suyashkumar/dicom/pkg/tag"

	"anomalynode/configs"
	"anomalynode/internal/dcm"
)

// el is one element for the test encoder.
type el struct {
	t  tag.Tag
	vr string
	v  []byte
}

func str(t tag.Tag, vr, s string) el {
	if len(s)%2 == 1 {
		if vr == "UI" {
			s += "\x00"
		} else {
			s += " "
		}
	}
	return el{t, vr, []byte(s)}
}

func u16(t tag.Tag, v uint16) el {
	b := make([]byte, 2)
	binary.LittleEndian.PutUint16(b, v)
	return el{t, "US", b}
}

// encode writes elements (sorted by tag) as a bare data set in explicit or
// implicit VR little endian, followed by pixelBytes of OW pixel data (none if <0).
func encode(explicit bool, els []el, pixelBytes int) []byte {
	sort.Slice(els, func(i, j int) bool { return els[i].t.Compare(els[j].t) < 0 })
	var b bytes.Buffer
	put := func(e el) {
		binary.Write(&b, binary.LittleEndian, e.t.Group)
		binary.Write(&b, binary.LittleEndian, e.t.Element)
		if !explicit {
			binary.Write(&b, binary.LittleEndian, uint32(len(e.v)))
		} else if dcm.LongVR(e.vr) {
			b.WriteString(e.vr)
			b.Write([]byte{0, 0})
			binary.Write(&b, binary.LittleEndian, uint32(len(e.v)))
		} else {
			b.WriteString(e.vr)
			binary.Write(&b, binary.LittleEndian, uint16(len(e.v)))
		}
		b.Write(e.v)
	}
	for _, e := range els {
		put(e)
	}
	if pixelBytes >= 0 {
		px := make([]byte, pixelBytes)
		for i := range px {
			px[i] = byte(i * 7)
		}
		put(el{tag.PixelData, "OW", px})
	}
	return b.Bytes()
}

const ctImage = "1.2.840.10008.5.1.4.1.1.2"

// inst describes a test instance.
type inst struct {
	series, sop string
	modality    string
	number      int
	z           float64
	images      int // ImagesInAcquisition, 0 = absent
	extra       []el
	pixels      int
	implicit    bool
	sopClass    string
}

func (in inst) dataSet() []byte {
	mod := in.modality
	if mod == "" {
		mod = "CT"
	}
	cls := in.sopClass
	if cls == "" {
		cls = ctImage
	}
	els := []el{
		str(tag.SOPClassUID, "UI", cls),
		str(tag.SOPInstanceUID, "UI", in.sop),
		str(tag.Modality, "CS", mod),
		str(tag.StudyInstanceUID, "UI", "1.2.3.4"),
		str(tag.SeriesInstanceUID, "UI", in.series),
		str(tag.InstanceNumber, "IS", fmt.Sprint(in.number)),
		str(tag.ImagePositionPatient, "DS", fmt.Sprintf(`0\0\%g`, in.z)),
		str(tag.SliceThickness, "DS", "1.5"),
		u16(tag.Rows, 16), u16(tag.Columns, 16),
	}
	if in.images > 0 {
		els = append(els, str(tag.ImagesInAcquisition, "IS", fmt.Sprint(in.images)))
	}
	els = append(els, in.extra...)
	px := in.pixels
	if px == 0 {
		px = 512
	}
	return encode(!in.implicit, els, px)
}

func (in inst) ts() string {
	if in.implicit {
		return dcm.ImplicitVRLittleEndian
	}
	return dcm.ExplicitVRLittleEndian
}

// part10 returns a Part-10 file of the instance.
func (in inst) part10() []byte {
	cls := in.sopClass
	if cls == "" {
		cls = ctImage
	}
	return append(Part10Header(cls, in.sop, in.ts()), in.dataSet()...)
}

func testConfig(t testing.TB, dataDir string) *configs.Config {
	t.Helper()
	src := fmt.Sprintf(`
node:
  data_dir: %s
ingest:
  series_timeout: 1s
  ack_wait: 2s
models:
  m:
    path: m.dpmm
    embedder: e.onnx
routes:
  - name: ct
    match:
      modality: [CT]
    model: m
  - name: rest
    ignore: true
`, dataDir)
	c, err := configs.Parse([]byte(src), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func testLogger(t testing.TB) zerolog.Logger {
	if testing.Verbose() {
		return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel)
	}
	return zerolog.Nop()
}

// newTestService opens an embedded JetStream under dir and a Service on it.
func newTestService(t testing.TB, cfg *configs.Config) (*Service, *JS) {
	t.Helper()
	ctx := context.Background()
	js, err := OpenJetStream(ctx, cfg.NATS, cfg.Node.DataDir, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { js.Close() })
	svc, err := NewService(ctx, js, cfg, testLogger(t), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	svc.tickEvery = 20 * time.Millisecond
	return svc, js
}

// recorder is a fake slice and completion consumer.
type recorder struct {
	mu          sync.Mutex
	slices      []*Slice
	completions []*SeriesCompletion
	noAck       bool
	acked       int
	fail        int // fail this many first deliveries
}

func (r *recorder) ConsumeSlice(ctx context.Context, s *Slice) error {
	r.mu.Lock()
	if r.fail > 0 {
		r.fail--
		r.mu.Unlock()
		return fmt.Errorf("fake failure")
	}
	r.slices = append(r.slices, s)
	noAck := r.noAck
	r.mu.Unlock()
	if noAck {
		return nil
	}
	if err := s.Ack(ctx); err != nil {
		return err
	}
	r.mu.Lock()
	r.acked++
	r.mu.Unlock()
	return nil
}

func (r *recorder) ackedCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.acked
}

func (r *recorder) ConsumeCompletion(ctx context.Context, c *SeriesCompletion) error {
	r.mu.Lock()
	r.completions = append(r.completions, c)
	r.mu.Unlock()
	return c.Ack(ctx)
}

func (r *recorder) counts() (int, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.slices), len(r.completions)
}

func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
