package ingest

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// Segments: where an embedded node writes received data sets first. A new
// file costs a journal commit on its flush (its inode, its folder entry, its
// blocks), and the work item's JetStream append, flushed at the same time,
// waits for that commit too. Overwriting blocks that were written and flushed
// before needs none: fdatasync writes the data alone. So data sets go as
// records into segment files of segmentSize bytes whose blocks were filled
// with zeros and flushed ahead of time (spares, made off the sender's path),
// or recycled once every record in them expired; segments are never
// truncated. When no spare is ready (a burst larger than the spares, or the
// disk full), or a data set is larger than a segment, it goes to a file of
// its own as before (files.go), logged; both are read.
//
// Layout, little-endian. Segment header at offset 0: magic, generation
// (uint64, new at each recycling), CRC-32C of the two. Records start on 4 KiB
// boundaries after the first block: magic, generation, meta length (uint32),
// data length (uint64), stored time (Unix ns), CRC-32C of meta and data
// (uint32), CRC-32C of the header so far (uint32); then meta (the instance
// file's JSON) and the data set, zero-padded to the next boundary (no
// partial block: no read before the write). A record counts when its header
// and its data pass their checks and its generation is the segment's, so a
// recycled segment's older records are never read as current.
//
// The index (SOP Instance UID -> record) is kept in memory. At start it is
// read from each segment's .idx file (written once a full segment's records
// are all flushed; its generation must match the segment's) or rebuilt by
// reading the segment: a record cut short by a crash fails its check and is
// skipped by its length (or, with a torn header, block by block), so records
// of other associations written after it are still found.

const (
	segMagic     = "ANODESG1"
	recMagic     = "ANODERC1"
	idxMagic     = "ANODEIX1"
	segBlock     = 4096
	segHeaderLen = 8 + 8 + 4
	recHeaderLen = 8 + 8 + 4 + 8 + 8 + 4 + 4

	defaultSegmentSize = 64 << 20
	// minSpares are kept ready; maxSpares expired segments are kept for
	// reuse, the rest removed.
	minSpares = 2
	maxSpares = 8
)

// segmentSize is the size of new segments (the tests make them small).
var segmentSize int64 = defaultSegmentSize

// segment is one segment file, open for reading and writing.
type segment struct {
	num  int
	path string
	f    *os.File
	size int64
	gen  uint64
	// guarded by segments.mu
	next     int64     // where the next record goes
	inflight int       // records written and not yet flushed
	newest   time.Time // the newest record's stored time
	sealed   bool      // takes no more records
	indexed  bool      // its .idx file matches
	flush    groupSync
}

// groupSync is group commit for one file: records written by several
// associations at once share one fdatasync (a flush that starts after a
// record was written covers it), so concurrent senders cost fewer device
// flushes than records.
type groupSync struct {
	mu      sync.Mutex
	cond    *sync.Cond
	started uint64 // flushes started
	done    uint64 // the last flush finished
	running bool
	// err is the first failed flush's: it sticks, since a later flush may
	// succeed without the pages the failed one lost.
	err error
}

// sync returns once a flush that started after the call has finished.
func (g *groupSync) sync(f *os.File) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cond == nil {
		g.cond = sync.NewCond(&g.mu)
	}
	want := g.started + 1
	for g.done < want && g.err == nil {
		if g.running {
			g.cond.Wait()
			continue
		}
		g.running = true
		g.started++
		n := g.started
		g.mu.Unlock()
		err := unix.Fdatasync(int(f.Fd()))
		g.mu.Lock()
		g.running, g.done = false, n
		if err != nil {
			g.err = err
		}
		g.cond.Broadcast()
	}
	return g.err
}

// recordRef is where a record is and what the index needs of its meta.
type recordRef struct {
	seg    *segment
	gen    uint64
	off    int64
	ml     uint32
	dl     uint64
	stored time.Time
	ts     string
}

// segments is the segment store of an embedded node (files.go uses it).
type segments struct {
	dir  string
	sync bool
	log  zerolog.Logger
	// kick wakes the maintainer (Service.sweepFiles): a spare was taken or
	// a segment filled up.
	kick chan struct{}

	mu      sync.Mutex
	index   map[string]recordRef
	cur     *segment
	spares  []*segment
	used    []*segment // segments holding records, cur included
	nextNum int
	// fellBack: the last write found no spare (logged once per run of them).
	fellBack bool
}

// openSegments loads the segments under dir, rebuilding the index, and (if
// makeSpares) makes spares up to minSpares before the first write; a spare
// that cannot be made is logged (the data sets go to files meanwhile).
func openSegments(dir string, syncWrites bool, makeSpares bool, log zerolog.Logger) (*segments, error) {
	s := &segments{dir: dir, sync: syncWrites, log: log, kick: make(chan struct{}, 1), index: map[string]recordRef{}}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("ingest: segments: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("ingest: segments: %w", err)
	}
	for _, e := range ents {
		name := e.Name()
		if filepath.Ext(name) == ".tmp" {
			// A segment or index being made when the node stopped.
			os.Remove(filepath.Join(dir, name))
			continue
		}
		num, err := strconv.Atoi(name)
		if err != nil || len(name) != 8 {
			continue
		}
		s.nextNum = max(s.nextNum, num+1)
		if err := s.load(num); err != nil {
			return nil, err
		}
	}
	if makeSpares {
		if err := s.makeSpares(); err != nil {
			log.Warn().Err(err).Str("dir", dir).Msg("ingest: no spare segment made; data sets go to files of their own until one is")
		}
	}
	return s, nil
}

func (s *segments) segPath(num int) string { return filepath.Join(s.dir, fmt.Sprintf("%08d", num)) }

// load opens one segment and indexes its records.
func (s *segments) load(num int) error {
	path := s.segPath(num)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("ingest: segment: %w", err)
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("ingest: segment: %w", err)
	}
	seg := &segment{num: num, path: path, f: f, size: info.Size()}
	hdr := make([]byte, segHeaderLen)
	if _, err := f.ReadAt(hdr, 0); err != nil || string(hdr[:8]) != segMagic ||
		crc32.Checksum(hdr[:16], castagnoli) != binary.LittleEndian.Uint32(hdr[16:]) || seg.size < 2*segBlock {
		// Cut while it was recycled (its records had expired): reuse it.
		s.log.Warn().Str("segment", path).Msg("ingest: segment header unreadable (cut while recycled?); reused as a spare")
		if err := s.reset(seg); err != nil {
			f.Close()
			return err
		}
		s.spares = append(s.spares, seg)
		return nil
	}
	seg.gen = binary.LittleEndian.Uint64(hdr[8:])
	refs, ok := s.readIdx(seg)
	if ok {
		seg.indexed = true
	} else if refs, err = s.scan(seg); err != nil {
		f.Close()
		return err
	}
	if len(refs) == 0 {
		s.spares = append(s.spares, seg)
		return nil
	}
	seg.sealed = true
	for sop, r := range refs {
		if old, dup := s.index[sop]; dup && !old.stored.After(r.stored) {
			continue
		}
		s.index[sop] = r
		seg.next = max(seg.next, r.off+recordLen(r.ml, r.dl))
		if r.stored.After(seg.newest) {
			seg.newest = r.stored
		}
	}
	s.used = append(s.used, seg)
	return nil
}

// scan reads a segment and returns its current records by SOP Instance UID.
func (s *segments) scan(seg *segment) (map[string]recordRef, error) {
	b, err := os.ReadFile(seg.path)
	if err != nil {
		return nil, fmt.Errorf("ingest: segment: %w", err)
	}
	refs := map[string]recordRef{}
	torn := 0
	for off := int64(segBlock); off+recHeaderLen <= int64(len(b)); {
		h := b[off : off+recHeaderLen]
		ml, dl, ok := parseRecHeader(h, seg.gen, int64(len(b))-off)
		if !ok {
			off += segBlock
			continue
		}
		body := b[off+recHeaderLen : off+recHeaderLen+int64(ml)+int64(dl)]
		var m fileMeta
		if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(h[36:]) || json.Unmarshal(body[:ml], &m) != nil {
			torn++ // written when a crash came, never acknowledged
		} else {
			stored := time.Unix(0, int64(binary.LittleEndian.Uint64(h[28:])))
			if old, dup := refs[m.SOPInstanceUID]; !dup || stored.Before(old.stored) {
				refs[m.SOPInstanceUID] = recordRef{seg: seg, gen: seg.gen, off: off, ml: ml, dl: dl, stored: stored, ts: m.TransferSyntaxUID}
			}
		}
		off += recordLen(ml, dl)
	}
	if torn > 0 {
		s.log.Warn().Str("segment", seg.path).Int("records", torn).Msg("ingest: records cut short by a crash before their flush skipped (never acknowledged)")
	}
	return refs, nil
}

// parseRecHeader checks a record header of generation gen with at most room
// bytes from its start.
func parseRecHeader(h []byte, gen uint64, room int64) (ml uint32, dl uint64, ok bool) {
	if string(h[:8]) != recMagic || binary.LittleEndian.Uint64(h[8:]) != gen ||
		crc32.Checksum(h[:40], castagnoli) != binary.LittleEndian.Uint32(h[40:]) {
		return 0, 0, false
	}
	ml, dl = binary.LittleEndian.Uint32(h[16:]), binary.LittleEndian.Uint64(h[20:])
	if dl > uint64(room) || int64(recHeaderLen)+int64(ml)+int64(dl) > room {
		return 0, 0, false
	}
	return ml, dl, true
}

// recordLen is a record's length on disk, padding included.
func recordLen(ml uint32, dl uint64) int64 {
	n := int64(recHeaderLen) + int64(ml) + int64(dl)
	return (n + segBlock - 1) / segBlock * segBlock
}

// lookup returns the record of an instance, if one is indexed.
func (s *segments) lookup(sop string) (recordRef, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.index[sop]
	return r, ok
}

// records returns the indexed records.
func (s *segments) records() []recordRef {
	s.mu.Lock()
	defer s.mu.Unlock()
	refs := make([]recordRef, 0, len(s.index))
	for _, r := range s.index {
		refs = append(refs, r)
	}
	return refs
}

// readMeta reads a record's header and meta only (its data's checksum is
// not checked).
func (s *segments) readMeta(r recordRef) (fileMeta, error) {
	b := make([]byte, int64(recHeaderLen)+int64(r.ml))
	if _, err := r.seg.f.ReadAt(b, r.off); err != nil {
		return fileMeta{}, fmt.Errorf("ingest: read %s at %d: %w", r.seg.path, r.off, err)
	}
	return recordMeta(b, r, r.seg.size-r.off)
}

// recordMeta checks the header of a record read into b (at least its
// header and meta; room bytes from its start are in the segment) against
// its index entry and decodes its meta.
func recordMeta(b []byte, r recordRef, room int64) (fileMeta, error) {
	if ml, dl, ok := parseRecHeader(b[:recHeaderLen], r.gen, room); !ok || ml != r.ml || dl != r.dl {
		return fileMeta{}, fmt.Errorf("%w: %s at %d: record header", errBadFile, r.seg.path, r.off)
	}
	var m fileMeta
	if err := json.Unmarshal(b[recHeaderLen:recHeaderLen+int(r.ml)], &m); err != nil {
		return fileMeta{}, fmt.Errorf("%w: %s at %d: meta: %v", errBadFile, r.seg.path, r.off, err)
	}
	return m, nil
}

// drop takes an instance's record out of the index; false when none was
// indexed.
func (s *segments) drop(sop string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.index[sop]
	delete(s.index, sop)
	return ok
}

// append writes a data set as a new record, not flushed yet; ok false when
// no segment can take it now (the caller writes a file of its own).
func (s *segments) append(m fileMeta, data []byte) (p *unflushed, ok bool, err error) {
	meta, err := json.Marshal(m)
	if err != nil {
		return nil, false, err
	}
	n := recordLen(uint32(len(meta)), uint64(len(data)))
	s.mu.Lock()
	seg := s.cur
	if seg == nil || seg.next+n > seg.size {
		if int64(segBlock)+n > segmentSize {
			s.mu.Unlock()
			return nil, false, nil
		}
		if seg != nil {
			seg.sealed = true
		}
		if len(s.spares) == 0 {
			s.cur = nil
			first := !s.fellBack
			s.fellBack = true
			s.mu.Unlock()
			s.wake()
			if first {
				s.log.Warn().Str("dir", s.dir).Msg("ingest: no pre-written segment ready; data sets go to files of their own (slower) until one is")
			}
			return nil, false, nil
		}
		seg = s.spares[0]
		s.spares = s.spares[1:]
		seg.next, seg.newest, seg.sealed, seg.indexed = segBlock, time.Time{}, false, false
		s.cur = seg
		s.used = append(s.used, seg)
		s.fellBack = false
		s.wake()
	}
	off := seg.next
	seg.next += n
	seg.inflight++
	s.mu.Unlock()

	stored := time.Now()
	hdr := make([]byte, recHeaderLen, recHeaderLen+len(meta))
	copy(hdr, recMagic)
	binary.LittleEndian.PutUint64(hdr[8:], seg.gen)
	binary.LittleEndian.PutUint32(hdr[16:], uint32(len(meta)))
	binary.LittleEndian.PutUint64(hdr[20:], uint64(len(data)))
	binary.LittleEndian.PutUint64(hdr[28:], uint64(stored.UnixNano()))
	binary.LittleEndian.PutUint32(hdr[36:], crc32.Update(crc32.Checksum(meta, castagnoli), castagnoli, data))
	binary.LittleEndian.PutUint32(hdr[40:], crc32.Checksum(hdr[:40], castagnoli))
	hdr = append(hdr, meta...)
	pad := zeroBlock[:n-int64(len(hdr))-int64(len(data))]
	w := off
	for _, b := range [][]byte{hdr, data, pad} {
		if _, err = seg.f.WriteAt(b, w); err != nil {
			break
		}
		w += int64(len(b))
	}
	r := recordRef{seg: seg, gen: seg.gen, off: off, ml: uint32(len(meta)), dl: uint64(len(data)), stored: stored, ts: m.TransferSyntaxUID}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.settle(seg)
		return nil, false, fmt.Errorf("%w: write %s at %d: %v", ErrUnavailable, seg.path, off, err)
	}
	// Written: a killed process keeps it (the kernel has the bytes).
	s.index[m.SOPInstanceUID] = r
	if stored.After(seg.newest) {
		seg.newest = stored
	}
	return &unflushed{seg: seg, segs: s, sop: m.SOPInstanceUID, created: true, ts: m.TransferSyntaxUID, size: int64(len(data))}, true, nil
}

var zeroBlock = make([]byte, segBlock)

// settle counts a record of seg as flushed or failed (mu held); a sealed
// segment with none left in flight gets its index file.
func (s *segments) settle(seg *segment) {
	seg.inflight--
	if seg.sealed && seg.inflight == 0 {
		s.wake()
	}
}

// wake asks the maintainer to look at the spares and index files.
func (s *segments) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// commit flushes a record (fdatasync: only data, as the blocks were written
// before) and, for a new one, settles it; a failed flush takes it out of the
// index, so the sender, refused, sends again and that copy is written.
func (s *segments) commit(p *unflushed) error {
	if !p.created {
		// A kept record: within this process its own commit finished before
		// (the accept lock), after a restart it may not have been flushed.
		if !s.sync {
			return nil
		}
		return unix.Fdatasync(int(p.seg.f.Fd()))
	}
	var err error
	if s.sync {
		err = p.seg.flush.sync(p.seg.f)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.settle(p.seg)
	if err != nil {
		if r, ok := s.index[p.sop]; ok && r.seg == p.seg {
			delete(s.index, p.sop)
		}
		// The segment takes no more records: they go to the next one.
		p.seg.sealed = true
		if s.cur == p.seg {
			s.cur = nil
		}
	}
	return err
}

// read returns a record's meta and data set; found false when the segment
// was recycled since (the record expired); an error wrapping errBadFile
// when it fails its check.
func (s *segments) read(r recordRef) (fileMeta, []byte, bool, error) {
	recycled := func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return r.seg.gen != r.gen
	}
	if recycled() {
		return fileMeta{}, nil, false, nil
	}
	b := make([]byte, int64(recHeaderLen)+int64(r.ml)+int64(r.dl))
	if _, err := r.seg.f.ReadAt(b, r.off); err != nil {
		return fileMeta{}, nil, false, fmt.Errorf("ingest: read %s at %d: %w", r.seg.path, r.off, err)
	}
	m, data, err := checkRecord(b, r)
	if err != nil && recycled() {
		// Overwritten while it was read: it had expired.
		return fileMeta{}, nil, false, nil
	}
	return m, data, err == nil, err
}

// checkRecord checks a record read whole against its index entry.
func checkRecord(b []byte, r recordRef) (fileMeta, []byte, error) {
	m, err := recordMeta(b, r, int64(len(b)))
	if err != nil {
		return fileMeta{}, nil, err
	}
	body := b[recHeaderLen:]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(b[36:]) {
		return fileMeta{}, nil, fmt.Errorf("%w: %s at %d: checksum mismatch", errBadFile, r.seg.path, r.off)
	}
	return m, body[r.ml:], nil
}

// makeSegment writes a new segment: zeros, then its header, flushed, under
// a temporary name, then renamed into place.
func (s *segments) makeSegment() (*segment, error) {
	s.mu.Lock()
	num := s.nextNum
	s.nextNum++
	s.mu.Unlock()
	path := s.segPath(num)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return nil, err
	}
	seg := &segment{num: num, path: path, f: f, size: segmentSize}
	err = func() error {
		zeros := make([]byte, 1<<20)
		for off := int64(0); off < segmentSize; off += int64(len(zeros)) {
			if _, err := f.WriteAt(zeros[:min(int64(len(zeros)), segmentSize-off)], off); err != nil {
				return err
			}
		}
		if err := s.reset(seg); err != nil {
			return err
		}
		if err := os.Rename(tmp, path); err != nil {
			return err
		}
		if s.sync {
			return syncDir(s.dir)
		}
		return nil
	}()
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("ingest: make segment %s: %w", path, err)
	}
	return seg, nil
}

// reset gives a segment a new generation (its records no longer count) and
// flushes the whole file; a stale index file is removed after.
func (s *segments) reset(seg *segment) error {
	gen := uint64(time.Now().UnixNano())
	if gen == seg.gen {
		gen++
	}
	hdr := make([]byte, segHeaderLen)
	copy(hdr, segMagic)
	binary.LittleEndian.PutUint64(hdr[8:], gen)
	binary.LittleEndian.PutUint32(hdr[16:], crc32.Checksum(hdr[:16], castagnoli))
	if _, err := seg.f.WriteAt(hdr, 0); err != nil {
		return fmt.Errorf("ingest: segment %s: %w", seg.path, err)
	}
	if s.sync {
		if err := seg.f.Sync(); err != nil {
			return fmt.Errorf("ingest: segment %s: %w", seg.path, err)
		}
	}
	s.mu.Lock()
	seg.gen = gen
	s.mu.Unlock()
	if err := os.Remove(seg.path + ".idx"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("ingest: segment %s: %w", seg.path, err)
	}
	return nil
}

// makeSpares makes segments until minSpares are ready.
func (s *segments) makeSpares() error {
	for {
		s.mu.Lock()
		n := len(s.spares)
		s.mu.Unlock()
		if n >= minSpares {
			return nil
		}
		seg, err := s.makeSegment()
		if err != nil {
			return err
		}
		s.mu.Lock()
		s.spares = append(s.spares, seg)
		s.mu.Unlock()
	}
}

// maintain makes spares (if makeSpares), writes the index files of full
// segments whose records are all flushed and recycles the segments whose
// records all expired before cut (the zero time: none).
func (s *segments) maintain(cut time.Time, makeSpares bool) (recycled int, err error) {
	var toIndex, expired []*segment
	s.mu.Lock()
	if c := s.cur; c != nil && c.inflight == 0 && !cut.IsZero() && c.newest.Before(cut) {
		// Idle since before the cut: closed, so that it can expire.
		c.sealed, s.cur = true, nil
	}
	gone := map[*segment]bool{}
	keep := s.used[:0]
	for _, seg := range s.used {
		switch {
		case seg.sealed && seg.inflight == 0 && !cut.IsZero() && seg.newest.Before(cut):
			expired = append(expired, seg)
			gone[seg] = true
			continue
		case seg.sealed && seg.inflight == 0 && !seg.indexed:
			toIndex = append(toIndex, seg)
		}
		keep = append(keep, seg)
	}
	s.used = keep
	for sop, r := range s.index {
		if gone[r.seg] {
			delete(s.index, sop)
		}
	}
	s.mu.Unlock()
	for _, seg := range expired {
		s.mu.Lock()
		full := len(s.spares) >= maxSpares
		s.mu.Unlock()
		if full {
			s.mu.Lock()
			seg.gen = 0 // a reader still holding a record finds it gone
			s.mu.Unlock()
			seg.f.Close()
			err = errors.Join(err, os.Remove(seg.path), ignoreMissing(os.Remove(seg.path+".idx")))
			recycled++
			continue
		}
		if rerr := s.reset(seg); rerr != nil {
			seg.f.Close()
			err = errors.Join(err, rerr)
			continue
		}
		s.mu.Lock()
		s.spares = append(s.spares, seg)
		s.mu.Unlock()
		recycled++
	}
	for _, seg := range toIndex {
		if ierr := s.writeIdx(seg); ierr != nil {
			err = errors.Join(err, ierr)
			continue
		}
		s.mu.Lock()
		seg.indexed = true
		s.mu.Unlock()
	}
	if makeSpares {
		err = errors.Join(err, s.makeSpares())
	}
	return recycled, err
}

func ignoreMissing(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// writeIdx writes a full segment's index file: magic, generation, then per
// record its offset, lengths, stored time, transfer syntax and SOP Instance
// UID, then a CRC-32C of it all. It only saves reading the segment at start,
// so it is not flushed: a missing or damaged one means a scan.
func (s *segments) writeIdx(seg *segment) error {
	var b bytes.Buffer
	b.WriteString(idxMagic)
	b.Write(binary.LittleEndian.AppendUint64(nil, seg.gen))
	s.mu.Lock()
	for sop, r := range s.index {
		if r.seg != seg {
			continue
		}
		e := binary.LittleEndian.AppendUint64(nil, uint64(r.off))
		e = binary.LittleEndian.AppendUint32(e, r.ml)
		e = binary.LittleEndian.AppendUint64(e, r.dl)
		e = binary.LittleEndian.AppendUint64(e, uint64(r.stored.UnixNano()))
		e = binary.LittleEndian.AppendUint16(e, uint16(len(r.ts)))
		e = append(e, r.ts...)
		e = binary.LittleEndian.AppendUint16(e, uint16(len(sop)))
		e = append(e, sop...)
		b.Write(e)
	}
	s.mu.Unlock()
	b.Write(binary.LittleEndian.AppendUint32(nil, crc32.Checksum(b.Bytes(), castagnoli)))
	tmp := seg.path + ".idx.tmp"
	if err := os.WriteFile(tmp, b.Bytes(), 0o640); err != nil {
		return fmt.Errorf("ingest: segment index: %w", err)
	}
	if err := os.Rename(tmp, seg.path+".idx"); err != nil {
		return fmt.Errorf("ingest: segment index: %w", err)
	}
	return nil
}

// readIdx reads a segment's index file; ok false when there is none that
// matches the segment's generation.
func (s *segments) readIdx(seg *segment) (map[string]recordRef, bool) {
	b, err := os.ReadFile(seg.path + ".idx")
	if err != nil || len(b) < 20 || string(b[:8]) != idxMagic || binary.LittleEndian.Uint64(b[8:]) != seg.gen ||
		crc32.Checksum(b[:len(b)-4], castagnoli) != binary.LittleEndian.Uint32(b[len(b)-4:]) {
		return nil, false
	}
	refs := map[string]recordRef{}
	e := b[16 : len(b)-4]
	str := func() (string, bool) {
		if len(e) < 2 || len(e) < 2+int(binary.LittleEndian.Uint16(e)) {
			return "", false
		}
		n := int(binary.LittleEndian.Uint16(e))
		v := string(e[2 : 2+n])
		e = e[2+n:]
		return v, true
	}
	for len(e) > 0 {
		if len(e) < 28 {
			return nil, false
		}
		r := recordRef{seg: seg, gen: seg.gen, off: int64(binary.LittleEndian.Uint64(e)), ml: binary.LittleEndian.Uint32(e[8:]),
			dl: binary.LittleEndian.Uint64(e[12:]), stored: time.Unix(0, int64(binary.LittleEndian.Uint64(e[20:])))}
		e = e[28:]
		ts, ok1 := str()
		sop, ok2 := str()
		if !ok1 || !ok2 || r.off < segBlock || r.off+recordLen(r.ml, r.dl) > seg.size {
			return nil, false
		}
		r.ts = ts
		refs[sop] = r
	}
	return refs, true
}

// counts returns the number of indexed records and of spare segments.
func (s *segments) counts() (records, spares int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.index), len(s.spares)
}
