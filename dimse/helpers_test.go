package dimse

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"anomalynode/internal/dcm"
)

// synthSpec describes the test instances makeSeries writes.
type synthSpec struct {
	N        int
	Size     int    // rows = cols
	SOPClass string // default CT
	TS       string // default Explicit VR LE
	Sequence bool   // add a nested sequence to exercise conversion
}

func newUID() string {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return "2.25." + n.String()
}

// makeSeries writes N synthetic 16-bit slices with suyashkumar/dicom and
// returns their paths in order.
func makeSeries(t testing.TB, dir string, s synthSpec) []string {
	t.Helper()
	if s.Size == 0 {
		s.Size = 64
	}
	if s.SOPClass == "" {
		s.SOPClass = CTImageStorage
	}
	if s.TS == "" {
		s.TS = dcm.ExplicitVRLittleEndian
	}
	study, series, frame := newUID(), newUID(), newUID()
	paths := make([]string, s.N)
	pix := make([]byte, 2*s.Size*s.Size)
	for i := 0; i < s.N; i++ {
		inst := newUID()
		for p := 0; p < s.Size*s.Size; p++ {
			x, y := p%s.Size, p/s.Size
			binary.LittleEndian.PutUint16(pix[2*p:], uint16((x*7+y*3+i*11)%4096))
		}
		el := func(tg tag.Tag, v any) *dicom.Element {
			e, err := dicom.NewElement(tg, v)
			if err != nil {
				t.Fatalf("element %v: %v", tg, err)
			}
			return e
		}
		elems := []*dicom.Element{
			el(tag.MediaStorageSOPClassUID, []string{s.SOPClass}),
			el(tag.MediaStorageSOPInstanceUID, []string{inst}),
			el(tag.TransferSyntaxUID, []string{s.TS}),
			el(tag.ImplementationClassUID, []string{ImplementationClassUID}),
			el(tag.SpecificCharacterSet, []string{"ISO_IR 100"}),
			el(tag.ImageType, []string{"ORIGINAL", "PRIMARY", "AXIAL"}),
			el(tag.SOPClassUID, []string{s.SOPClass}),
			el(tag.SOPInstanceUID, []string{inst}),
			el(tag.StudyDate, []string{"20260101"}),
			el(tag.Modality, []string{"CT"}),
			el(tag.Manufacturer, []string{"anomalynode test"}),
			el(tag.PatientName, []string{"Test^Synthetic"}),
			el(tag.PatientID, []string{"SYN0001"}),
			el(tag.SliceThickness, []string{"1.0"}),
			el(tag.StudyInstanceUID, []string{study}),
			el(tag.SeriesInstanceUID, []string{series}),
			el(tag.StudyID, []string{"1"}),
			el(tag.SeriesNumber, []string{"1"}),
			el(tag.InstanceNumber, []string{fmt.Sprint(i + 1)}),
			el(tag.ImagePositionPatient, []string{"0", "0", fmt.Sprint(i)}),
			el(tag.ImageOrientationPatient, []string{"1", "0", "0", "0", "1", "0"}),
			el(tag.FrameOfReferenceUID, []string{frame}),
			el(tag.SamplesPerPixel, []int{1}),
			el(tag.PhotometricInterpretation, []string{"MONOCHROME2"}),
			el(tag.Rows, []int{s.Size}),
			el(tag.Columns, []int{s.Size}),
			el(tag.PixelSpacing, []string{"0.7", "0.7"}),
			el(tag.BitsAllocated, []int{16}),
			el(tag.BitsStored, []int{12}),
			el(tag.HighBit, []int{11}),
			el(tag.PixelRepresentation, []int{0}),
			el(tag.RescaleIntercept, []string{"-1024"}),
			el(tag.RescaleSlope, []string{"1"}),
		}
		if s.Sequence {
			item := []*dicom.Element{
				el(tag.CodeValue, []string{"113691"}),
				el(tag.CodingSchemeDesignator, []string{"DCM"}),
				el(tag.CodeMeaning, []string{"IHE Standard"}),
			}
			elems = append(elems, el(tag.ProcedureCodeSequence, [][]*dicom.Element{item, item}))
		}
		elems = append(elems, el(tag.PixelData, dicom.PixelDataInfo{IntentionallyUnprocessed: true, UnprocessedValueData: pix}))
		// suyashkumar/dicom writes elements in the order given: keep them ascending.
		sort.SliceStable(elems, func(a, b int) bool { return elems[a].Tag.Uint32() < elems[b].Tag.Uint32() })
		var buf bytes.Buffer
		if err := dicom.Write(&buf, dicom.Dataset{Elements: elems}, dicom.SkipVRVerification()); err != nil {
			t.Fatalf("write test instance: %v", err)
		}
		paths[i] = filepath.Join(dir, fmt.Sprintf("slice%04d.dcm", i))
		if err := os.WriteFile(paths[i], buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return paths
}

// readInstance returns the meta and the bare data set bytes of a Part-10 file.
func readInstance(t testing.TB, path string) (FileMeta, []byte) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	br := bufio.NewReader(f)
	m, _, err := ReadFileMeta(br)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	ds, err := io.ReadAll(br)
	if err != nil {
		t.Fatal(err)
	}
	return m, ds
}

// received is what the recording handler saw for one C-STORE.
type received struct {
	Req  StoreRequest
	Data []byte
}

// recorder is a StoreHandler that keeps every data set in memory.
type recorder struct {
	mu   sync.Mutex
	got  map[string]received
	list []string
}

func newRecorder() *recorder { return &recorder{got: map[string]received{}} }

func (r *recorder) ServeStore(ctx context.Context, req *StoreRequest) (Status, error) {
	data, err := io.ReadAll(req.DataSet)
	if err != nil {
		return StatusProcessingFailure, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	cp := *req
	cp.DataSet = nil
	r.got[req.SOPInstanceUID] = received{Req: cp, Data: data}
	r.list = append(r.list, req.SOPInstanceUID)
	return StatusSuccess, nil
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

func (r *recorder) get(uid string) (received, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.got[uid]
	return v, ok
}

// startServer runs a Server on a free loopback port until the test ends.
func startServer(t testing.TB, cfg ServerConfig, h StoreHandler) (*Server, string) {
	t.Helper()
	if cfg.AETitle == "" {
		cfg.AETitle = "NODE"
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(cfg, h, testLogger(t), nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, ErrServerClosed) {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("Serve did not return after cancel")
		}
	})
	return s, l.Addr().String()
}

func testLogger(t testing.TB) zerolog.Logger {
	if os.Getenv("DIMSE_TEST_LOG") != "" {
		return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel)
	}
	return zerolog.Nop()
}

func hostPort(t testing.TB, addr string) (string, string) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return h, p
}

// elementDump renders every data element of a bare data set with dcmdump
// (full values), normalised so that it does not depend on the transfer syntax
// or on defined/undefined sequence and item lengths, for comparing what
// arrived with what was sent.
func elementDump(t testing.TB, data []byte, ts string) []string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "ds.dcm")
	var buf bytes.Buffer
	if err := WriteFileMeta(&buf, FileMeta{MediaStorageSOPClassUID: "1.2", MediaStorageSOPInstanceUID: "1.2", TransferSyntaxUID: ts}); err != nil {
		t.Fatal(err)
	}
	buf.Write(data)
	if err := os.WriteFile(f, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("dcmdump", "-q", "+L", f).CombinedOutput()
	if err != nil {
		t.Fatalf("dcmdump (%s): %v\n%s", ts, err, out)
	}
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		tl := strings.TrimSpace(l)
		switch {
		case tl == "", strings.HasPrefix(tl, "#"), strings.HasPrefix(tl, "(0002,"),
			strings.HasPrefix(tl, "(fffe,e00d)"), strings.HasPrefix(tl, "(fffe,e0dd)"):
			continue
		case strings.HasPrefix(tl, "(fffe,e000)") || strings.Contains(tl, " SQ ("):
			lines = append(lines, l[:strings.Index(l, "(")+11])
		default:
			lines = append(lines, l)
		}
	}
	return lines
}

// sameElements fails the test when two data sets differ in any data element.
func sameElements(t testing.TB, what string, a []byte, aTS string, b []byte, bTS string) {
	t.Helper()
	if aTS == bTS && bytes.Equal(a, b) {
		return
	}
	da, db := elementDump(t, a, aTS), elementDump(t, b, bTS)
	if len(da) != len(db) {
		t.Fatalf("%s: %d elements vs %d:\n%s\n---\n%s", what, len(da), len(db), strings.Join(da, "\n"), strings.Join(db, "\n"))
	}
	for i := range da {
		if da[i] != db[i] {
			t.Fatalf("%s: element %d differs:\n%.300s\n%.300s", what, i, da[i], db[i])
		}
	}
}
