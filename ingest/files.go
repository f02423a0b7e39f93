package ingest

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// An embedded node (no nats.url) keeps each received data set that fits one
// message under <data_dir>/instances instead of a message of the instance
// stream: as a record in a segment written ahead of time (segments.go) or,
// when no segment is ready, as a file of its own: a file write, then its
// flush and its folder's. Either flush runs in parallel with the work item's
// queueing and with other associations' flushes. The sender hears success
// only when the record or file (data, size and folder entry) and the work
// item are both on disk: the work item in the work stream (synced) or, when
// that stream flushes in batches (requeue.go), kept in the record's meta.
// The bytes are written before the work item is queued, so a killed process
// never leaves a work item without them; a power cut between the two flushes
// can, and the sender's re-send is then queued anew (Service.accept). In
// nats.url mode the instance stream stays, since every node of the cluster
// must read the bytes.
//
// File layout: magic, meta length (uint32), data length (uint64), CRC-32C of
// meta and data (uint32), meta (JSON: transfer syntax and UIDs), data set. A
// file cut short by a crash before its flush fails the check and is replaced
// by the next copy; a complete stored copy is never replaced (the first file
// wins, like the stream's discard-new per subject).

const fileMagic = "ANODEIN1"

const fileHeaderLen = len(fileMagic) + 4 + 8 + 4

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errBadFile marks an instance file that is incomplete or damaged.
var errBadFile = errors.New("ingest: instance file incomplete or damaged")

// fileMeta is what an instance file says about its data set.
type fileMeta struct {
	TransferSyntaxUID string `json:"ts"`
	SOPClassUID       string `json:"class"`
	SOPInstanceUID    string `json:"sop"`
	SeriesInstanceUID string `json:"series"`
	// Work is the data set's work item when the work stream's writes are
	// flushed in batches (Service.workAsync): a restart queues it again
	// from here (Service.requeueRecent).
	Work json.RawMessage `json:"work,omitempty"`
}

// instanceFiles is the file store of an embedded node.
type instanceFiles struct {
	dir string
	// sync is false when the operator chose nats.sync_interval: the files
	// are then left to the kernel's writeback, like the JetStream writes.
	sync bool
	log  zerolog.Logger
	// segs takes the data sets first (segments.go); nil: files only.
	segs *segments
	// shards are the sub-folders known to be durable.
	mu     sync.Mutex
	shards map[string]bool
}

func openInstanceFiles(dir string, syncWrites, makeSpares bool, log zerolog.Logger) (*instanceFiles, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("ingest: instance files: %w", err)
	}
	if err := syncDir(filepath.Dir(dir)); err != nil {
		return nil, fmt.Errorf("ingest: instance files: %w", err)
	}
	segs, err := openSegments(filepath.Join(dir, "segments"), syncWrites, makeSpares, log)
	if err != nil {
		return nil, err
	}
	return &instanceFiles{dir: dir, sync: syncWrites, log: log, segs: segs, shards: map[string]bool{}}, nil
}

// path is the file of an instance: 256 sub-folders by the first byte of the
// UID's hash, so no folder grows past a few thousand entries a day.
func (f *instanceFiles) path(sop string) (shard, file string) {
	name := uidKey("", sop)
	shard = filepath.Join(f.dir, name[:2])
	return shard, filepath.Join(shard, name)
}

// put stores a data set unless a complete copy is stored already, and
// returns the stored copy's transfer syntax and size.
func (f *instanceFiles) put(m fileMeta, data []byte) (storedTS string, size int64, err error) {
	p, err := f.write(m, data)
	if err != nil {
		return "", 0, err
	}
	if err := p.commit(); err != nil {
		return "", 0, err
	}
	return p.ts, p.size, nil
}

// unflushed is a data set in its file, written (a process crash keeps it:
// the kernel has the bytes) and not yet flushed (a power cut may not).
type unflushed struct {
	f           *instanceFiles
	file        *os.File
	shard, path string
	// seg holds the record instead of a file of its own (segments.go).
	seg  *segment
	segs *segments
	sop  string
	// created: this copy's bytes were written; false when a complete copy
	// was stored already and is kept.
	created bool
	// ts and size are the stored copy's.
	ts   string
	size int64
}

// write writes a data set to its file unless a complete copy is stored
// already (then that copy is kept). Nothing is flushed yet: commit does.
func (f *instanceFiles) write(m fileMeta, data []byte) (*unflushed, error) {
	shard, path := f.path(m.SOPInstanceUID)
	if f.segs != nil {
		if p, ok := f.keptRecord(m.SOPInstanceUID); ok {
			return p, nil
		}
		// A file of its own (stored when no segment was ready) is the
		// first copy: it is kept, below.
		if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
			if p, ok, err := f.segs.append(m, data); ok || err != nil {
				return p, err
			}
		}
	}
	if err := f.ensureShard(shard); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	for range 2 {
		file, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
		if errors.Is(err, fs.ErrExist) {
			kept, kdata, rerr := readInstanceFile(path)
			if rerr == nil {
				// The first copy wins. Its writer may have died before its
				// flush: commit flushes it again.
				return &unflushed{f: f, shard: shard, path: path, ts: kept.TransferSyntaxUID, size: int64(len(kdata))}, nil
			}
			if !errors.Is(rerr, errBadFile) {
				return nil, fmt.Errorf("%w: %v", ErrUnavailable, rerr)
			}
			// Left by a crash before its flush: never queued, replace it.
			f.log.Warn().Str("sop", m.SOPInstanceUID).Str("path", path).Err(rerr).Msg("ingest: incomplete instance file from an earlier attempt replaced")
			if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		if err := writeInstance(file, m, data); err != nil {
			file.Close()
			os.Remove(path)
			return nil, fmt.Errorf("%w: write %s: %v", ErrUnavailable, path, err)
		}
		return &unflushed{f: f, file: file, shard: shard, path: path, created: true, ts: m.TransferSyntaxUID, size: int64(len(data))}, nil
	}
	return nil, fmt.Errorf("%w: %s keeps reappearing incomplete", ErrUnavailable, path)
}

// keptRecord returns a complete record of an instance, if one is stored:
// the first copy wins (its writer may have died before its flush: commit
// flushes it again). A record that fails its check is replaced (logged).
func (f *instanceFiles) keptRecord(sop string) (*unflushed, bool) {
	r, ok := f.segs.lookup(sop)
	if !ok {
		return nil, false
	}
	m, data, found, err := f.segs.read(r)
	if err != nil {
		f.log.Warn().Str("sop", sop).Err(err).Msg("ingest: stored record of an instance unreadable; replaced by this copy")
	}
	if !found {
		return nil, false
	}
	return &unflushed{f: f, seg: r.seg, segs: f.segs, sop: sop, ts: m.TransferSyntaxUID, size: int64(len(data))}, true
}

// commit flushes the file (fdatasync: the size goes with the data) and its
// folder entry, at once, and closes it. A kept copy is flushed too.
func (p *unflushed) commit() error {
	if p.seg != nil {
		if err := p.segs.commit(p); err != nil {
			return fmt.Errorf("%w: flush %s: %v", ErrUnavailable, p.seg.path, err)
		}
		return nil
	}
	dir := make(chan error, 1)
	if p.f.sync {
		// The new name must be durable too, not only the bytes; the two
		// flushes need no order (an entry without its bytes fails the check).
		go func() { dir <- syncDir(p.shard) }()
	} else {
		dir <- nil
	}
	var err error
	if p.file == nil {
		err = p.f.syncFile(p.path)
	} else {
		if p.f.sync {
			err = unix.Fdatasync(int(p.file.Fd()))
		}
		if cerr := p.file.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			// The bytes may be in the kernel only: remove them, so the
			// sender, refused, sends again and that copy is stored (and
			// queued anew if this one's work item got queued).
			os.Remove(p.path)
		}
	}
	if derr := <-dir; err == nil {
		err = derr
	}
	if err != nil {
		return fmt.Errorf("%w: flush %s: %v", ErrUnavailable, p.path, err)
	}
	return nil
}

// writeInstance writes header, meta and data set.
func writeInstance(file *os.File, m fileMeta, data []byte) error {
	meta, err := json.Marshal(m)
	if err != nil {
		return err
	}
	hdr := make([]byte, fileHeaderLen, fileHeaderLen+len(meta))
	copy(hdr, fileMagic)
	binary.LittleEndian.PutUint32(hdr[8:], uint32(len(meta)))
	binary.LittleEndian.PutUint64(hdr[12:], uint64(len(data)))
	crc := crc32.Update(crc32.Checksum(meta, castagnoli), castagnoli, data)
	binary.LittleEndian.PutUint32(hdr[20:], crc)
	hdr = append(hdr, meta...)
	if _, err := file.Write(hdr); err != nil {
		return err
	}
	_, err = file.Write(data)
	return err
}

func (f *instanceFiles) syncFile(path string) error {
	if !f.sync {
		return nil
	}
	file, err := os.Open(path)
	if err != nil {
		return err
	}
	defer file.Close()
	return file.Sync()
}

// ensureShard creates a sub-folder and makes its entry durable, once.
func (f *instanceFiles) ensureShard(shard string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.shards[shard] {
		return nil
	}
	if err := os.Mkdir(shard, 0o750); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	if f.sync {
		if err := syncDir(f.dir); err != nil {
			return err
		}
	}
	f.shards[shard] = true
	return nil
}

// get reads a stored instance: found false when there is none; an error
// wrapping errBadFile for a file that fails its check.
func (f *instanceFiles) get(sop string) (m fileMeta, data []byte, found bool, err error) {
	if f.segs != nil {
		if r, ok := f.segs.lookup(sop); ok {
			if m, data, found, err := f.segs.read(r); found || err != nil {
				return m, data, found, err
			}
		}
	}
	_, path := f.path(sop)
	m, data, err = readInstanceFile(path)
	switch {
	case err == nil:
		return m, data, true, nil
	case errors.Is(err, fs.ErrNotExist):
		return fileMeta{}, nil, false, nil
	}
	return fileMeta{}, nil, false, err
}

// stored says whether a complete copy of an instance is stored. An
// incomplete file is removed: it was left by a crash before its sync, so no
// work item names it.
func (f *instanceFiles) stored(sop string) (m fileMeta, size int64, found bool, err error) {
	m, data, found, err := f.get(sop)
	if errors.Is(err, errBadFile) && f.segs != nil && f.segs.drop(sop) {
		f.log.Warn().Str("sop", sop).Err(err).Msg("ingest: stored record of an instance unreadable; taken out of the index")
		return fileMeta{}, 0, false, nil
	}
	if errors.Is(err, errBadFile) {
		_, path := f.path(sop)
		f.log.Warn().Str("sop", sop).Str("path", path).Err(err).Msg("ingest: incomplete instance file from an earlier attempt removed")
		if rerr := os.Remove(path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			return fileMeta{}, 0, false, rerr
		}
		return fileMeta{}, 0, false, nil
	}
	return m, int64(len(data)), found, err
}

// open returns a stored instance's data set and transfer syntax. A file
// that fails its check is an error, never "not found": its work item is
// queued, so the bytes were complete once (a damaged disk).
func (f *instanceFiles) open(sop string) (io.ReadCloser, string, bool, error) {
	m, data, found, err := f.get(sop)
	if !found || err != nil {
		return nil, "", found, err
	}
	return io.NopCloser(bytes.NewReader(data)), m.TransferSyntaxUID, true, nil
}

// readInstanceFile reads and checks an instance file.
func readInstanceFile(path string) (fileMeta, []byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return fileMeta{}, nil, err
	}
	if len(b) < fileHeaderLen || string(b[:8]) != fileMagic {
		return fileMeta{}, nil, fmt.Errorf("%w: %s: no header", errBadFile, path)
	}
	ml := uint64(binary.LittleEndian.Uint32(b[8:]))
	dl := binary.LittleEndian.Uint64(b[12:])
	body := b[fileHeaderLen:]
	if uint64(len(body)) != ml+dl {
		return fileMeta{}, nil, fmt.Errorf("%w: %s: %d bytes, header says %d", errBadFile, path, len(body), ml+dl)
	}
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(b[20:]) {
		return fileMeta{}, nil, fmt.Errorf("%w: %s: checksum mismatch", errBadFile, path)
	}
	var m fileMeta
	if err := json.Unmarshal(body[:ml], &m); err != nil {
		return fileMeta{}, nil, fmt.Errorf("%w: %s: meta: %v", errBadFile, path, err)
	}
	return m, body[ml:], nil
}

// sweep removes the files older than retention (by modification time, the
// time they were stored) and returns how many it removed.
func (f *instanceFiles) sweep(now time.Time, retention time.Duration) (removed int, err error) {
	cut := now.Add(-retention)
	err = f.eachFile(func(path string, info fs.FileInfo) error {
		if !info.ModTime().Before(cut) {
			return nil
		}
		if rerr := os.Remove(path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			return rerr
		}
		removed++
		return nil
	})
	return removed, err
}

// eachFile calls fn for every instance file (in the shard folders); errors
// are joined and the walk goes on.
func (f *instanceFiles) eachFile(fn func(path string, info fs.FileInfo) error) (err error) {
	shards, err := os.ReadDir(f.dir)
	if err != nil {
		return err
	}
	for _, sh := range shards {
		if !sh.IsDir() || len(sh.Name()) != 2 {
			continue
		}
		if _, herr := hex.DecodeString(sh.Name()); herr != nil {
			continue
		}
		dir := filepath.Join(f.dir, sh.Name())
		ents, rerr := os.ReadDir(dir)
		if rerr != nil {
			err = errors.Join(err, rerr)
			continue
		}
		for _, e := range ents {
			info, ierr := e.Info()
			if ierr != nil || info.IsDir() {
				continue
			}
			err = errors.Join(err, fn(filepath.Join(dir, e.Name()), info))
		}
	}
	return err
}

// storedMeta is a stored data set's meta and when it was stored.
type storedMeta struct {
	fileMeta
	stored time.Time
}

// recent returns the meta of the data sets stored at most window before
// the newest one (segment records and files of their own), oldest first:
// what a restart must queue again when the work stream's writes are
// flushed in batches. A record or file it cannot read is skipped (one cut
// short by a crash was never acknowledged).
func (f *instanceFiles) recent(window time.Duration) ([]storedMeta, error) {
	type file struct {
		path   string
		stored time.Time
	}
	var files []file
	werr := f.eachFile(func(path string, info fs.FileInfo) error {
		files = append(files, file{path, info.ModTime()})
		return nil
	})
	var refs []recordRef
	if f.segs != nil {
		refs = f.segs.records()
	}
	var newest time.Time
	for _, fl := range files {
		newest = later(newest, fl.stored)
	}
	for _, r := range refs {
		newest = later(newest, r.stored)
	}
	cut := newest.Add(-window)
	var out []storedMeta
	for _, fl := range files {
		if fl.stored.Before(cut) {
			continue
		}
		if m, _, err := readInstanceFile(fl.path); err == nil {
			out = append(out, storedMeta{m, fl.stored})
		}
	}
	for _, r := range refs {
		if r.stored.Before(cut) {
			continue
		}
		if m, err := f.segs.readMeta(r); err == nil {
			out = append(out, storedMeta{m, r.stored})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].stored.Before(out[j].stored) })
	return out, werr
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// sweepFiles removes expired instance files and recycles expired segments
// (ingest.retention, as the streams' max age does for their messages) at
// start and then every 10 minutes (or a tenth of the retention, if shorter)
// until ctx is done; between, it makes spare segments and index files when
// a writer asks (segments.kick). A failed sweep is logged and tried again at
// the next tick.
func (s *Service) sweepFiles(ctx context.Context) error {
	every := min(10*time.Minute, s.cfg.Retention/10)
	if every <= 0 {
		every = 10 * time.Minute
	}
	t := time.NewTicker(every)
	defer t.Stop()
	var kick chan struct{}
	if s.files.segs != nil {
		kick = s.files.segs.kick
	}
	for full := true; ; {
		if full {
			n, err := s.files.sweep(s.now(), s.cfg.Retention)
			if err != nil {
				s.log.Warn().Err(err).Str("dir", s.files.dir).Msg("ingest: removing expired instance files failed; tried again later")
			}
			if n > 0 {
				s.log.Info().Int("removed", n).Str("dir", s.files.dir).Dur("retention", s.cfg.Retention).Msg("ingest: expired instance files removed")
			}
		}
		if segs := s.files.segs; segs != nil {
			var cut time.Time
			if full {
				cut = s.now().Add(-s.cfg.Retention)
			}
			// Spares are made only above the free-space floor: below it the
			// instances are refused anyway, and a spare would eat what is left.
			n, err := segs.maintain(cut, s.checkSpaceFor(uint64(segmentSize)) == nil)
			if err != nil {
				s.log.Warn().Err(err).Str("dir", segs.dir).Msg("ingest: segment upkeep (spares, index files, expired segments) failed; tried again later")
			}
			if n > 0 {
				s.log.Info().Int("segments", n).Str("dir", segs.dir).Dur("retention", s.cfg.Retention).Msg("ingest: expired segments recycled")
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			full = true
		case <-kick:
			full = false
		}
	}
}

// syncDir makes a folder's entries durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
