//go:build linux

package dimse

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"anomalynode/internal/peers"

	"golang.org/x/sys/unix"
)

// fsyncFolder is the benchmark's SCP handler: it writes each instance as a
// Part-10 file and, when sync is set, makes it durable before answering, as a
// node must before it acknowledges a C-STORE: data flushed (fdatasync), then
// renamed into place and the folder flushed. Writeback of the data starts while
// it is still arriving, so the flush at the end waits for the last chunk only.
func fsyncFolder(dir string, sync bool) StoreHandler {
	return StoreHandlerFunc(func(ctx context.Context, req *StoreRequest) (Status, error) {
		f, err := os.CreateTemp(dir, ".in-*")
		if err != nil {
			return StatusOutOfResources, err
		}
		defer os.Remove(f.Name())
		err = WriteFileMeta(f, FileMeta{MediaStorageSOPClassUID: req.SOPClassUID, MediaStorageSOPInstanceUID: req.SOPInstanceUID,
			TransferSyntaxUID: req.TransferSyntaxUID, SourceAETitle: req.Assoc.CallingAE})
		if err == nil {
			if sync {
				err = copyWithWriteback(f, req.DataSet)
			} else {
				_, err = io.Copy(f, req.DataSet)
			}
		}
		if err == nil && sync {
			// The file is new, so fdatasync also flushes its size and blocks:
			// everything needed to read the data back.
			err = unix.Fdatasync(int(f.Fd()))
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(f.Name(), filepath.Join(dir, req.SOPInstanceUID+".dcm"))
		}
		if err == nil && sync {
			var d *os.File
			if d, err = os.Open(dir); err == nil {
				err = d.Sync()
				d.Close()
			}
		}
		if err != nil {
			return StatusOutOfResources, err
		}
		return StatusSuccess, nil
	})
}

// copyWithWriteback copies r to the end of f and asks the kernel to start
// writing each 64 KiB chunk to disk at once (sync_file_range without waiting),
// so the disk works while the rest of the instance is still on the wire.
func copyWithWriteback(f *os.File, r io.Reader) error {
	off, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return err
	}
	buf := make([]byte, 64<<10)
	for {
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			if _, err := f.Write(buf[:n]); err != nil {
				return err
			}
			// Only a hint: the fdatasync that follows is what makes it durable.
			_ = unix.SyncFileRange(int(f.Fd()), off, int64(n), unix.SYNC_FILE_RANGE_WRITE)
			off += int64(n)
		}
		switch {
		case rerr == io.EOF || rerr == io.ErrUnexpectedEOF:
			return nil
		case rerr != nil:
			return rerr
		}
	}
}

// benchSlices is the number of 512x512 16-bit slices each run sends.
const benchSlices = 500

// BenchmarkCStoreVsStoreSCP sends the same 500 synthetic 512x512 16-bit CT
// slices with dcmtk's storescu (one association) to our SCP, which fsyncs each
// instance before answering, and to dcmtk's storescp (which does not fsync),
// and reports our throughput as a ratio of storescp's. A third run to our SCP
// without fsync separates the cost of the protocol stack from the disk's.
func BenchmarkCStoreVsStoreSCP(b *testing.B) {
	src := b.TempDir()
	start := time.Now()
	files := makeSeries(b, src, synthSpec{N: benchSlices, Size: 512})
	b.Logf("generated %d slices in %s", len(files), time.Since(start).Round(time.Millisecond))
	var total int64
	for _, f := range files {
		st, _ := os.Stat(f)
		total += st.Size()
	}
	storescu := peers.Tool(b, "storescu")
	send := func(b *testing.B, port string) time.Duration {
		cmd := exec.Command(storescu, append([]string{"-aec", "NODE", "127.0.0.1", port}, files...)...)
		cmd.Env = dcmtkEnv()
		// Flush the previous run's dirty pages first: an fsync must not pay
		// for another run's writeback (storescp leaves 260 MB unflushed).
		syscall.Sync()
		t0 := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("storescu: %v\n%s", err, out)
		}
		return time.Since(t0)
	}

	ourDir, noSyncDir := b.TempDir(), b.TempDir()
	_, addr := startServer(b, ServerConfig{AETitle: "NODE"}, fsyncFolder(ourDir, true))
	_, ourPort := hostPort(b, addr)
	_, addr = startServer(b, ServerConfig{AETitle: "NODE"}, fsyncFolder(noSyncDir, false))
	_, noSyncPort := hostPort(b, addr)

	dcmDir := b.TempDir()
	port := peers.FreePort(b)
	scp := exec.Command(peers.Tool(b, "storescp"), "-aet", "NODE", "-od", dcmDir, strconv.Itoa(port))
	scp.Env = dcmtkEnv()
	if err := scp.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = scp.Process.Kill(); _ = scp.Wait() }()
	waitPort(b, fmt.Sprintf("127.0.0.1:%d", port))

	var ours, noSync, theirs time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		theirs += send(b, strconv.Itoa(port))
		ours += send(b, ourPort)
		noSync += send(b, noSyncPort)
	}
	b.StopTimer()
	if n, _ := os.ReadDir(ourDir); len(n) != benchSlices {
		b.Fatalf("our SCP stored %d files, want %d", len(n), benchSlices)
	}
	mb := float64(total) * float64(b.N) / 1e6
	b.ReportMetric(mb/ours.Seconds(), "ours_MB/s")
	b.ReportMetric(mb/theirs.Seconds(), "storescp_MB/s")
	b.ReportMetric(float64(benchSlices*b.N)/ours.Seconds(), "ours_inst/s")
	b.ReportMetric(float64(benchSlices*b.N)/theirs.Seconds(), "storescp_inst/s")
	b.ReportMetric(float64(benchSlices*b.N)/noSync.Seconds(), "nosync_inst/s")
	b.ReportMetric(theirs.Seconds()/ours.Seconds(), "ratio_vs_storescp")
	// The same without fsync isolates the protocol stack from the disk flush.
	b.ReportMetric(theirs.Seconds()/noSync.Seconds(), "ratio_nosync_vs_storescp")
}
