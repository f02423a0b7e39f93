package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/rs/zerolog"

	"anomalynode/configs"
	"anomalynode/internal/dcm"
)

// Acceptor takes an instance into the durable store; *Service implements it.
type Acceptor interface {
	Accept(ctx context.Context, in *Incoming) (Result, error)
}

// Watcher ingests DICOM files dropped into a folder tree. A file is read once
// its size and modification time have been stable for StableFor; files present
// at start-up are processed too, new sub-folders are watched as they appear,
// and a kernel queue overflow (or the periodic rescan) walks the tree again.
// Accepted files are moved to DoneDir (or deleted); files that look like DICOM
// but cannot be parsed go to the quarantine folder with a <name>.reason.txt;
// non-DICOM files and DICOMDIRs are left in place and skipped. A symbolic
// link to a file is followed (the link is moved or deleted, its target kept);
// any other link is quarantined with its reason.
type Watcher struct {
	acc        Acceptor
	cfg        configs.WatchFolder
	root       string
	quarantine string
	done       string
	maxHeader  int64
	workers    int
	log        zerolog.Logger
	m          *metrics

	mu      sync.Mutex
	pending map[string]*pendingFile
	busy    map[string]bool
	skipped map[string]fileSig
	work    chan string
	rescan  chan struct{}
	// overflows counts kernel queue overflows (each triggers a rescan).
	overflows atomic.Int64
}

type fileSig struct {
	size  int64
	mtime time.Time
}

type pendingFile struct {
	sig      fileSig
	since    time.Time // when sig was first seen unchanged
	failedAt time.Time // first parse failure with this sig (zero: none)
	retryAt  time.Time // do not try before (store unavailable)
}

// NewWatcher watches one folder. dataDir is used for the default quarantine
// folder. The metrics of svc are shared when acc is a *Service.
func NewWatcher(acc Acceptor, cfg configs.WatchFolder, dataDir string, log zerolog.Logger) *Watcher {
	w := &Watcher{
		acc: acc, cfg: cfg, root: filepath.Clean(cfg.Path), log: log.With().Str("folder", cfg.Path).Logger(),
		maxHeader: 64 << 20, workers: 4,
		pending: map[string]*pendingFile{}, busy: map[string]bool{}, skipped: map[string]fileSig{},
		work: make(chan string, 1024), rescan: make(chan struct{}, 1),
	}
	w.quarantine = cfg.QuarantineDir
	if w.quarantine == "" {
		w.quarantine = filepath.Join(dataDir, "quarantine")
	}
	if cfg.DoneDir != "" {
		w.done = filepath.Clean(cfg.DoneDir)
	}
	if s, ok := acc.(*Service); ok {
		w.m = s.m
		w.maxHeader = s.cfg.MaxHeaderBytes
	}
	if w.cfg.StableFor <= 0 {
		w.cfg.StableFor = 2 * time.Second
	}
	return w
}

// Run watches until ctx is done; files being accepted then finish first.
func (w *Watcher) Run(ctx context.Context) error {
	for _, d := range []string{w.root, w.quarantine, w.done} {
		if d == "" {
			continue
		}
		if err := os.MkdirAll(d, 0o750); err != nil {
			return fmt.Errorf("ingest: watch: %w", err)
		}
	}
	fw, err := fsnotify.NewBufferedWatcher(4096)
	if err != nil {
		return fmt.Errorf("ingest: watch: %w", err)
	}
	defer fw.Close()
	var wg sync.WaitGroup
	for i := 0; i < w.workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range w.work {
				w.processGuarded(ctx, p)
			}
		}()
	}
	defer func() {
		close(w.work)
		wg.Wait()
	}()
	w.scan(fw, w.root)
	tickEvery := w.cfg.StableFor / 4
	if tickEvery < 10*time.Millisecond {
		tickEvery = 10 * time.Millisecond
	}
	if tickEvery > 500*time.Millisecond {
		tickEvery = 500 * time.Millisecond
	}
	tick := time.NewTicker(tickEvery)
	defer tick.Stop()
	var rescanC <-chan time.Time
	if w.cfg.RescanInterval > 0 {
		rt := time.NewTicker(w.cfg.RescanInterval)
		defer rt.Stop()
		rescanC = rt.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-fw.Events:
			if !ok {
				return errors.New("ingest: watch: event channel closed")
			}
			w.event(fw, ev)
		case err, ok := <-fw.Errors:
			if !ok {
				return errors.New("ingest: watch: error channel closed")
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				w.overflows.Add(1)
				w.log.Warn().Msg("ingest: watch: kernel event queue overflowed; rescanning")
			} else {
				w.log.Warn().Err(err).Msg("ingest: watch: rescanning after error")
			}
			w.scan(fw, w.root)
		case <-rescanC:
			w.scan(fw, w.root)
		case <-w.rescan:
			w.scan(fw, w.root)
		case <-tick.C:
			w.dispatchStable(ctx)
		}
	}
}

// excluded reports paths inside the tree that are ours (done, quarantine).
func (w *Watcher) excluded(p string) bool {
	for _, d := range []string{w.done, filepath.Clean(w.quarantine)} {
		if d != "" && (p == d || strings.HasPrefix(p, d+string(filepath.Separator))) {
			return true
		}
	}
	return false
}

func hidden(p string) bool { return strings.HasPrefix(filepath.Base(p), ".") }

// scan adds watches to every directory under dir and notes every file.
func (w *Watcher) scan(fw *fsnotify.Watcher, dir string) {
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // vanished while walking: its events say what happened
		}
		if w.excluded(p) || (p != dir && hidden(p)) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			if err := fw.Add(p); err != nil {
				w.log.Warn().Err(err).Str("dir", p).Msg("ingest: watch: cannot watch folder")
			}
			return nil
		}
		if d.Type().IsRegular() {
			w.note(p)
		} else if d.Type()&fs.ModeSymlink != 0 {
			w.link(p)
		}
		return nil
	})
}

// link handles a symbolic link in the tree: one to a regular file is followed
// (the file is read through it; the link, never its target, is then moved or
// deleted); any other (to a folder, dangling, to a device) is moved to
// quarantine with its reason, so that it neither stays in the inbox for ever
// nor leads the watcher outside its tree.
func (w *Watcher) link(p string) {
	fi, err := os.Stat(p)
	switch {
	case err == nil && fi.Mode().IsRegular():
		w.note(p)
		return
	case err == nil && fi.IsDir():
		err = errors.New("symbolic link to a folder: not followed (move or copy the files into the watched folder)")
	case err == nil:
		err = fmt.Errorf("symbolic link to a %s, not a file", fi.Mode().Type())
	default:
		err = fmt.Errorf("dangling symbolic link: %w", err)
	}
	w.mu.Lock()
	busy := w.busy[p]
	w.mu.Unlock()
	if !busy {
		w.quarantineFile(p, err.Error())
	}
}

func (w *Watcher) event(fw *fsnotify.Watcher, ev fsnotify.Event) {
	p := filepath.Clean(ev.Name)
	if w.excluded(p) || hidden(p) {
		return
	}
	switch {
	case ev.Has(fsnotify.Create) || ev.Has(fsnotify.Write) || ev.Has(fsnotify.Chmod):
		fi, err := os.Lstat(p)
		if err != nil {
			return
		}
		if fi.IsDir() {
			// Files may have landed in the folder before its watch existed.
			w.scan(fw, p)
			return
		}
		if fi.Mode().IsRegular() {
			w.note(p)
		} else if fi.Mode()&fs.ModeSymlink != 0 {
			w.link(p)
		}
	case ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename):
		w.mu.Lock()
		delete(w.pending, p)
		delete(w.skipped, p)
		w.mu.Unlock()
	}
}

// note records a file as a candidate; its stability clock starts now.
func (w *Watcher) note(p string) {
	fi, err := os.Stat(p)
	if err != nil {
		return
	}
	sig := fileSig{fi.Size(), fi.ModTime()}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.busy[p] {
		return
	}
	if s, ok := w.skipped[p]; ok && s == sig {
		return
	}
	if pf, ok := w.pending[p]; ok {
		if pf.sig != sig {
			pf.sig, pf.since, pf.failedAt = sig, time.Now(), time.Time{}
		}
		return
	}
	w.pending[p] = &pendingFile{sig: sig, since: time.Now()}
}

// dispatchStable hands files whose size and mtime stayed unchanged for
// StableFor to the workers.
func (w *Watcher) dispatchStable(ctx context.Context) {
	now := time.Now()
	var ready []string
	w.mu.Lock()
	for p, pf := range w.pending {
		if now.Before(pf.retryAt) {
			continue
		}
		fi, err := os.Stat(p)
		if err != nil {
			delete(w.pending, p) // deleted before it was read
			continue
		}
		sig := fileSig{fi.Size(), fi.ModTime()}
		if sig != pf.sig {
			pf.sig, pf.since, pf.failedAt = sig, now, time.Time{}
			continue
		}
		if now.Sub(pf.since) < w.cfg.StableFor || w.busy[p] {
			continue
		}
		w.busy[p] = true
		ready = append(ready, p)
	}
	w.mu.Unlock()
	for _, p := range ready {
		select {
		case w.work <- p:
		case <-ctx.Done():
			return
		}
	}
}

// processGuarded is process with a panic (a fault this file triggers)
// recovered: the file is quarantined with the reason and the watcher goes on.
func (w *Watcher) processGuarded(ctx context.Context, p string) {
	defer func() {
		if r := recover(); r != nil {
			w.log.Error().Str("file", p).Str("stack", string(debug.Stack())).Msgf("ingest: watch: panic on a file: %v", r)
			w.mu.Lock()
			delete(w.busy, p)
			delete(w.pending, p)
			w.mu.Unlock()
			w.quarantineFile(p, fmt.Sprintf("the node failed on this file (%v: %v); report it with the file", ErrPanic, r))
		}
	}()
	w.process(ctx, p)
}

// process reads one stable file; the outcome decides where the file goes.
func (w *Watcher) process(ctx context.Context, p string) {
	outcome, why := w.ingestFile(ctx, p)
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.busy, p)
	pf := w.pending[p]
	switch outcome {
	case fileGone, fileDone, fileQuarantined:
		delete(w.pending, p)
	case fileSkipped:
		delete(w.pending, p)
		if fi, err := os.Stat(p); err == nil {
			w.skipped[p] = fileSig{fi.Size(), fi.ModTime()}
		}
		w.log.Info().Str("file", p).Str("why", why).Msg("ingest: watch: skipped")
	case fileRetry:
		if pf != nil {
			pf.retryAt = time.Now().Add(w.cfg.StableFor + time.Second)
		}
	case fileBroken:
		// Maybe still being written by a writer that pauses: quarantine only
		// once it failed the same way after another stable period.
		if pf == nil {
			return
		}
		if pf.failedAt.IsZero() {
			pf.failedAt, pf.since = time.Now(), time.Now()
			return
		}
		delete(w.pending, p)
		w.quarantineFile(p, why)
	}
}

type fileOutcome int

const (
	fileDone fileOutcome = iota
	fileGone
	fileSkipped
	fileRetry
	fileBroken
	fileQuarantined
)

func (w *Watcher) ingestFile(ctx context.Context, p string) (fileOutcome, string) {
	f, err := os.Open(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fileGone, ""
		}
		w.log.Warn().Err(err).Str("file", p).Msg("ingest: watch: cannot open; will retry")
		return fileRetry, err.Error()
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fileRetry, err.Error()
	}
	// refused is a file that starts like DICOM but is refused before it
	// reaches Accept: it is an offer like any other, counted as received and
	// refused (malformed), so the counter identity of Accept holds.
	refused := func(why string) (fileOutcome, string) {
		if w.m != nil {
			w.m.received.WithLabelValues(SourceFolder).Inc()
			w.m.refused.WithLabelValues("malformed").Inc()
		}
		return fileBroken, why
	}
	fi, err := SniffFile(f, w.maxHeader)
	switch {
	case errors.Is(err, dcm.ErrNotDICOM):
		return fileSkipped, "not DICOM"
	case err != nil:
		return refused(err.Error())
	case fi.IsDICOMDIR():
		return fileSkipped, "DICOMDIR"
	}
	if fi.PixelDataEnd > st.Size() {
		return refused(fmt.Sprintf("truncated: pixel data ends at byte %d, file has %d", fi.PixelDataEnd, st.Size()))
	}
	if !fi.Header.HasPixelData && nonImageClass(fi.SOPClassUID) == "" && fi.SOPClassUID != "" && strings.HasPrefix(fi.SOPClassUID, "1.2.840.10008.5.1.4.1.1.") {
		return refused("image SOP class " + fi.SOPClassUID + " without pixel data (truncated?)")
	}
	if _, err := f.Seek(fi.DataSetOffset, io.SeekStart); err != nil {
		return fileRetry, err.Error()
	}
	res, err := w.acc.Accept(ctx, &Incoming{
		Source:            Source{Kind: SourceFolder, Path: p},
		TransferSyntaxUID: fi.TransferSyntaxUID,
		SOPClassUID:       fi.SOPClassUID,
		DataSet:           f,
	})
	switch {
	case err == nil:
	case errors.Is(err, ErrUnavailable), ctx.Err() != nil:
		w.log.Warn().Err(err).Str("file", p).Msg("ingest: watch: store unavailable; will retry")
		return fileRetry, err.Error()
	case errors.Is(err, ErrMalformed), errors.Is(err, ErrIncomplete), errors.Is(err, ErrHeaderTooLarge), errors.Is(err, ErrUnsupportedSyntax):
		return fileBroken, err.Error()
	default:
		w.log.Warn().Err(err).Str("file", p).Msg("ingest: watch: will retry")
		return fileRetry, err.Error()
	}
	f.Close()
	// The line that ties a file name to its instance, whatever became of it.
	w.log.Debug().Str("file", p).Str("sop", res.SOPInstanceUID).Str("series", res.SeriesInstanceUID).
		Str("outcome", res.Outcome.String()).Str("rule", res.Decision.Rule).Msg("ingest: watch: accepted")
	if err := w.finish(p); err != nil {
		w.log.Error().Err(err).Str("file", p).Msg("ingest: watch: accepted but could not move or delete the file")
	}
	return fileDone, ""
}

// finish moves an accepted file to the done folder (keeping its relative path)
// or deletes it.
func (w *Watcher) finish(p string) error {
	if w.done == "" {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	_, err := moveInto(p, w.root, w.done)
	return err
}

func (w *Watcher) quarantineFile(p, why string) {
	dst, err := moveInto(p, w.root, w.quarantine)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			w.log.Error().Err(err).Str("file", p).Msg("ingest: watch: cannot quarantine")
		}
		return
	}
	// Counted once moved: the sidecar below is what observers wait for.
	if w.m != nil {
		w.m.quarantined.Inc()
	}
	reason := fmt.Sprintf("file: %s\ntime: %s\nreason: %s\n", p, time.Now().UTC().Format(time.RFC3339), why)
	if err := os.WriteFile(dst+".reason.txt", []byte(reason), 0o640); err != nil {
		w.log.Error().Err(err).Str("file", dst).Msg("ingest: watch: cannot write quarantine reason")
	}
	w.log.Warn().Str("file", p).Str("to", dst).Str("reason", why).Msg("ingest: watch: quarantined")
}

// moveInto moves p (under root) to the same relative path under dir, adding
// a suffix when the name is taken, and falls back to copying across file
// systems. It returns the new path.
func moveInto(p, root, dir string) (string, error) {
	rel, err := filepath.Rel(root, p)
	if err != nil || strings.HasPrefix(rel, "..") {
		rel = filepath.Base(p)
	}
	dst := filepath.Join(dir, rel)
	if err := os.MkdirAll(filepath.Dir(dst), 0o750); err != nil {
		return "", err
	}
	for i := 1; ; i++ {
		if _, err := os.Lstat(dst); errors.Is(err, fs.ErrNotExist) {
			break
		}
		dst = filepath.Join(dir, fmt.Sprintf("%s.%d", rel, i))
	}
	if err := os.Rename(p, dst); err == nil {
		return dst, nil
	} else if errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	in, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return "", err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return "", err
	}
	if err := out.Close(); err != nil {
		return "", err
	}
	return dst, os.Remove(p)
}
