package ingest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/suyashkumar/dicom/pkg/tag"

	"anomalynode/configs"
	"anomalynode/internal/jsconsume"
)

// Sentinel errors of the store.
var (
	// ErrUnavailable: the durable store cannot take the instance now (answer
	// C-STORE with A700 out of resources; the sender retries later).
	ErrUnavailable = errors.New("ingest: store unavailable")
	// ErrLowDisk: the data directory is below the free-space floor. It matches
	// ErrUnavailable.
	ErrLowDisk = fmt.Errorf("%w: free disk space below the configured floor", ErrUnavailable)
	// ErrIncomplete: the data set lacks an identifying attribute (SOP Instance
	// UID, Series Instance UID).
	ErrIncomplete = errors.New("ingest: data set lacks identifying attributes")
	// ErrSourceRead: reading the incoming data set failed (the sender went away).
	ErrSourceRead = errors.New("ingest: read data set")
)

// Outcome says what Accept did with an instance.
type Outcome int

// Outcomes of Accept.
const (
	// Stored: the instance is durable and its work item queued.
	Stored Outcome = iota
	// Duplicate: an instance with this SOP Instance UID was already accepted;
	// the new copy is discarded.
	Duplicate
	// Ignored: routing sends it nowhere (non-image object, ignore rule, no
	// rule); it is read and discarded, not stored.
	Ignored
)

func (o Outcome) String() string {
	return [...]string{"stored", "duplicate", "ignored"}[o]
}

// Incoming is one instance offered to the store.
type Incoming struct {
	// Source says where it came from (routing may depend on it).
	Source Source
	// TransferSyntaxUID of DataSet.
	TransferSyntaxUID string
	// SOPClassUID and SOPInstanceUID from the C-STORE command, used when the
	// data set itself lacks them.
	SOPClassUID, SOPInstanceUID string
	// DataSet is the bare data set (no preamble or file meta), read once.
	DataSet io.Reader
}

// Result is what Accept did.
type Result struct {
	Outcome  Outcome
	Decision Decision
	// SOPInstanceUID and SeriesInstanceUID identify the instance.
	SOPInstanceUID, SeriesInstanceUID string
	// Size is the stored data set's size in bytes (0 unless Stored).
	Size int64
}

// workItem is the message on the work stream: one routed, stored instance.
type workItem struct {
	SOPInstanceUID    string    `json:"sop_instance_uid"`
	SOPClassUID       string    `json:"sop_class_uid"`
	SeriesInstanceUID string    `json:"series_instance_uid"`
	StudyInstanceUID  string    `json:"study_instance_uid"`
	TransferSyntaxUID string    `json:"transfer_syntax_uid"`
	Size              int64     `json:"size"`
	Decision          Decision  `json:"decision"`
	Source            Source    `json:"source"`
	Received          time.Time `json:"received"`
	InstanceNumber    int       `json:"instance_number,omitempty"`
	Frames            int       `json:"frames"`
	ImagesInAcq       int       `json:"images_in_acquisition,omitempty"`
	Position          []float64 `json:"position,omitempty"`
}

// maxChunkSize is the largest object store chunk; ChunkSize keeps chunks
// below the server's max payload (1 MiB by default on an external server).
const maxChunkSize = 1 << 20

// ChunkSize is the object-store chunk size for a connection whose server
// takes messages up to maxPayload bytes: each chunk is one synced write, so
// the largest that fits (the client's default, 128 KiB, makes eight times
// as many flushes).
func ChunkSize(maxPayload int64) uint32 {
	c := int64(maxChunkSize)
	if lim := maxPayload - 64<<10; lim > 0 && lim < c {
		c = lim
	}
	if c < 64<<10 {
		c = 64 << 10
	}
	return uint32(c)
}

// Service is the ingest stage: it accepts instances into the durable store
// (Accept, ServeStore), and Run feeds the queued work to the next stages and
// tracks series to completion.
type Service struct {
	js      *JS
	log     zerolog.Logger
	router  atomic.Pointer[Router]
	objects jetstream.ObjectStore
	// inst holds the data sets stored as one message each (instances.go);
	// instSubj is its subject prefix.
	inst     jetstream.Stream
	instSubj string
	// files keeps those data sets on an embedded node instead (files.go);
	// nil with the stream.
	files *instanceFiles
	// workAsync: the work stream's writes are flushed in batches (the
	// embedded server's sync interval), not one by one; each stored data
	// set keeps its work item, and a restart queues the recent ones again.
	workAsync bool
	series    jetstream.KeyValue
	workName  string
	workSubj  string
	doneName  string
	doneSubj  string
	deadSubj  string
	dataDir   string
	cfg       configs.Ingest
	m         *metrics
	now       func() time.Time
	space     func(dir string) (free, total uint64, err error)
	tickEvery time.Duration
	// retryDelay is the redelivery delay after a failed delivery (tests
	// shorten it).
	retryDelay func(delivery int) time.Duration
	// roundTrip bounds one request of a work item's answer (a series record
	// read or write, an acknowledgement): see defaultRoundTrip. Tests
	// shorten it.
	roundTrip time.Duration
	// accepting serialises Accepts of one SOP Instance UID, so that copies
	// arriving at once (in different transfer syntaxes) store one object.
	accepting keyedMutex
	// gate tells the stages behind ingest when receiving is quiet.
	gate *Gate
	// held are the work items handed to a consumer and not yet answered;
	// heartbeat keeps them from being redelivered.
	held holdings
}

// keyedMutex is a mutex per key, held only while in use.
type keyedMutex struct {
	mu sync.Mutex
	m  map[string]*keyedEntry
}

type keyedEntry struct {
	sync.Mutex
	users int
}

// lock locks key and returns its unlock.
func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyedEntry{}
	}
	e := k.m[key]
	if e == nil {
		e = &keyedEntry{}
		k.m[key] = e
	}
	e.users++
	k.mu.Unlock()
	e.Lock()
	return func() {
		e.Unlock()
		k.mu.Lock()
		if e.users--; e.users == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}

// NewService creates (or opens) the streams, buckets and the router.
func NewService(ctx context.Context, js *JS, cfg *configs.Config, log zerolog.Logger, reg prometheus.Registerer) (*Service, error) {
	router, err := NewRouter(cfg.Routes, cfg.Ingest.SeriesTimeout)
	if err != nil {
		return nil, err
	}
	s := &Service{
		js: js, log: log, cfg: cfg.Ingest, dataDir: cfg.Node.DataDir,
		workName: js.Name("WORK"), workSubj: js.Subject("work.slice"),
		doneName: js.Name("SERIES_DONE"), doneSubj: js.Subject("series.complete"),
		deadSubj: js.Subject("work.dead"), instSubj: js.Subject("instance"),
		now: time.Now, space: diskSpace, tickEvery: 200 * time.Millisecond, retryDelay: backoff,
		roundTrip: defaultRoundTrip, gate: newGate(defaultGateQuiet, defaultGateBound),
	}
	s.router.Store(router)
	j := js.JetStream
	s.objects, err = j.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket: js.Name("INSTANCES"), Description: "received DICOM data sets by SOP Instance UID",
		Storage: jetstream.FileStorage, Replicas: js.Replicas, TTL: cfg.Ingest.Retention,
	})
	if err != nil {
		return nil, fmt.Errorf("ingest: object store: %w", err)
	}
	if err := s.openInstanceStream(ctx, cfg.Ingest.Retention); err != nil {
		return nil, err
	}
	switch store := cfg.Ingest.InstanceStore; {
	case store == "files" && !js.Embedded:
		return nil, errors.New("ingest: instance_store files needs the embedded NATS server (nats.url is set)")
	case store == "files" || store == "" && js.Embedded:
		s.files, err = openInstanceFiles(filepath.Join(cfg.Node.DataDir, "instances"), cfg.NATS.SyncInterval == 0,
			s.checkSpaceFor(minSpares*uint64(segmentSize)) == nil, log)
		if err != nil {
			return nil, err
		}
	}
	s.series, err = j.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: js.Name("SERIES"), Description: "open and completed series",
		Storage: jetstream.FileStorage, Replicas: js.Replicas, TTL: cfg.Ingest.Retention, History: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("ingest: series bucket: %w", err)
	}
	for _, st := range []jetstream.StreamConfig{
		{Name: s.workName, Subjects: []string{s.workSubj}, Description: "routed instances waiting for inference"},
		{Name: s.doneName, Subjects: []string{s.doneSubj}, Description: "completed series waiting for the finaliser"},
	} {
		st.Retention = jetstream.WorkQueuePolicy
		st.Storage = jetstream.FileStorage
		st.Replicas = js.Replicas
		st.Duplicates = cfg.Ingest.DuplicateWindow
		if st.Name == s.workName {
			if st.PersistMode, err = s.workPersistMode(ctx); err != nil {
				return nil, err
			}
			s.workAsync = st.PersistMode == jetstream.AsyncPersistMode
		}
		if _, err := j.CreateOrUpdateStream(ctx, st); err != nil {
			return nil, fmt.Errorf("ingest: stream %s: %w", st.Name, err)
		}
	}
	if s.workAsync && s.files != nil {
		if err := s.requeueRecent(ctx); err != nil {
			return nil, err
		}
	}
	if _, err := j.CreateOrUpdateStream(ctx, deadStream(js, cfg.Ingest.Retention)); err != nil {
		return nil, fmt.Errorf("ingest: dead work stream: %w", err)
	}
	if s.m, err = newMetrics(reg, s); err != nil {
		return nil, err
	}
	return s, nil
}

// Router returns the routing rules in use.
func (s *Service) Router() *Router { return s.router.Load() }

// Gate is what the stages behind ingest wait at before their writes, so
// that receiving comes first (gate.go).
func (s *Service) Gate() *Gate { return s.gate }

// uidKey maps a UID to a KV key (UIDs may hold characters keys may not).
func uidKey(prefix, uid string) string {
	sum := sha256.Sum256([]byte(uid))
	return prefix + hex.EncodeToString(sum[:16])
}

// errReader remembers a read error of the source so it can be told apart from
// an error of the store.
type errReader struct {
	r   io.Reader
	err error
	n   int64
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	e.n += int64(n)
	if err != nil && err != io.EOF {
		e.err = err
	}
	return n, err
}

// progressReader reports each read that returns bytes as progress to a
// stall watchdog.
type progressReader struct {
	r        io.Reader
	progress func()
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.progress()
	}
	return n, err
}

// Accept makes one instance durable: it reads the header up to the pixel data,
// routes it, and - unless ignored or a duplicate - streams the data set into the
// object store and queues a work item. It returns only after both are durable;
// any error means the instance was not accepted (the sender must retry).
// errors.Is(err, ErrUnavailable) means out of resources (C-STORE A700).
//
// Every offer is counted once as received and once by its outcome (stored,
// duplicate, ignored, or refused by reason), so that received = stored +
// duplicate + ignored + refused holds at every scrape.
func (s *Service) Accept(ctx context.Context, in *Incoming) (res Result, err error) {
	s.m.received.WithLabelValues(in.Source.Kind).Inc()
	s.gate.enter()
	defer s.gate.leave()
	// A data set that makes the header reader (or anything else here) panic
	// is refused as malformed, like any other it cannot read; the node and
	// the other associations go on.
	defer func() {
		if p := recover(); p != nil {
			s.log.Error().Str("sop", res.SOPInstanceUID).Str("source", in.Source.Kind).Str("path", in.Source.Path).
				Str("stack", string(debug.Stack())).Msgf("ingest: accept panicked: %v", p)
			err = fmt.Errorf("%w: %w: %v", ErrMalformed, ErrPanic, p)
			s.m.refused.WithLabelValues(refusal(err)).Inc()
		}
	}()
	// Every offer gets an answer within a bound: a store that makes no
	// progress for store_timeout (JetStream slow or unreachable) refuses the
	// instance as unavailable (A700) instead of leaving the sender waiting.
	bound := s.cfg.StoreTimeout
	if bound <= 0 {
		bound = 10 * time.Second
	}
	sctx, progress, release := withStallTimeout(ctx, bound)
	defer release()
	in.DataSet = &progressReader{r: in.DataSet, progress: progress}
	res, err = s.accept(sctx, in)
	if err != nil && stalled(sctx) && ctx.Err() == nil {
		err = fmt.Errorf("%w (%v): %v", ErrStoreTimeout, bound, err)
		s.log.Warn().Err(err).Str("sop", res.SOPInstanceUID).Str("series", res.SeriesInstanceUID).Str("source", in.Source.Kind).
			Str("calling_ae", in.Source.CallingAE).Str("path", in.Source.Path).Msg("ingest: store did not answer in time; instance refused (A700), the sender keeps it")
	}
	if err != nil {
		s.m.refused.WithLabelValues(refusal(err)).Inc()
		return res, err
	}
	switch res.Outcome {
	case Stored:
		s.m.stored.Inc()
	case Duplicate:
		s.m.duplicate.Inc()
	case Ignored:
		s.m.ignored.Inc()
		// An image dropped without a word is what an operator cannot see:
		// say why, loudly for what someone probably meant to be scored.
		ev := s.log.Debug()
		if res.Decision.Rule == OwnOutputRule || res.Decision.Rule == NoRuleMatched {
			ev = s.log.Info()
		}
		ev.Str("sop", res.SOPInstanceUID).Str("series", res.SeriesInstanceUID).Str("source", in.Source.Kind).
			Str("calling_ae", in.Source.CallingAE).Str("path", in.Source.Path).Str("rule", res.Decision.Rule).
			Strs("because", res.Decision.Reasons).Msg("ingest: instance ignored (not stored, not scored)")
	}
	return res, nil
}

// refusal is the instances_refused_total reason of an Accept error.
func refusal(err error) string {
	switch {
	case errors.Is(err, ErrLowDisk):
		return "disk"
	case errors.Is(err, ErrSourceRead):
		return "source"
	case errors.Is(err, ErrUnavailable):
		return "store"
	}
	return "malformed"
}

// accept is Accept without the outcome counters.
func (s *Service) accept(ctx context.Context, in *Incoming) (Result, error) {
	start := s.now()
	if err := s.checkSpace(); err != nil {
		return Result{}, err
	}
	src := &errReader{r: in.DataSet}
	h, prefix, err := ReadHeader(src, in.TransferSyntaxUID, s.cfg.MaxHeaderBytes)
	if err != nil {
		if src.err != nil {
			return Result{}, fmt.Errorf("%w: %v", ErrSourceRead, src.err)
		}
		return Result{}, err
	}
	if h.Str(tag.SOPInstanceUID) == "" && in.SOPInstanceUID != "" {
		h.Set(tag.SOPInstanceUID, in.SOPInstanceUID)
	}
	if h.Str(tag.SOPClassUID) == "" && in.SOPClassUID != "" {
		h.Set(tag.SOPClassUID, in.SOPClassUID)
	}
	res := Result{SOPInstanceUID: h.Str(tag.SOPInstanceUID), SeriesInstanceUID: h.Str(tag.SeriesInstanceUID)}
	if res.SOPInstanceUID == "" || res.SeriesInstanceUID == "" {
		return res, fmt.Errorf("%w: SOPInstanceUID %q SeriesInstanceUID %q", ErrIncomplete, res.SOPInstanceUID, res.SeriesInstanceUID)
	}
	res.Decision = s.router.Load().Route(in.Source, h)
	if res.Decision.Ignore {
		if _, err := io.Copy(io.Discard, src); err != nil {
			return res, fmt.Errorf("%w: %v", ErrSourceRead, err)
		}
		res.Outcome = Ignored
		return res, nil
	}
	// Copies of one instance arriving at once are stored one at a time: the
	// later copy finds the first stored and is discarded.
	defer s.accepting.lock(res.SOPInstanceUID)()
	// The lookups (series record, an object-store copy) run while the rest
	// of the data set is still arriving, so their round trips hide behind
	// the network.
	look := make(chan lookup, 1)
	go func() { look <- s.lookup(ctx, res.SeriesInstanceUID, res.SOPInstanceUID) }()
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Write(prefix)
	limit := s.inlineLimit()
	_, rerr := io.CopyN(buf, src, limit-int64(len(prefix))+1)
	lk := <-look
	if rerr != nil && rerr != io.EOF {
		putBuf(buf)
		return res, fmt.Errorf("%w: %v", ErrSourceRead, rerr)
	}
	inline := int64(buf.Len()) <= limit
	// Duplicates: an instance already in its series record was dispatched
	// before; one still waiting in the work queue is caught by the message ID
	// below. Either way the copy is not queued again.
	if lk.err != nil {
		putBuf(buf)
		return res, lk.err
	}
	discardRest := func() error {
		putBuf(buf)
		if _, err := io.Copy(io.Discard, src); err != nil {
			return fmt.Errorf("%w: %v", ErrSourceRead, err)
		}
		return nil
	}
	if lk.dup {
		if err := discardRest(); err != nil {
			return res, err
		}
		res.Outcome = Duplicate
		return res, nil
	}
	// An object stored by an attempt whose work item never got queued (a
	// crash in between) is kept as it was: a stored object never changes
	// under a queued work item.
	// The work item names the transfer syntax of the bytes actually stored,
	// which for a kept object is not this copy's.
	storedTS := in.TransferSyntaxUID
	// newBytes: this copy's bytes went into a new instance file (no complete
	// copy was stored); flushed: that file's flush, run alongside the
	// queueing.
	var newBytes bool
	var flushed chan error
	// work is the encoded work item when it was made before the store.
	var work []byte
	switch {
	case lk.object != nil:
		if err := discardRest(); err != nil {
			return res, err
		}
		res.Size = int64(lk.object.Size)
		if ts := objectSyntax(lk.object); ts != "" {
			storedTS = ts
		}
	case inline:
		// The whole data set is here: a short pixel data value is refused
		// before anything is stored.
		if err := truncated(h, int64(buf.Len()-len(prefix))); err != nil {
			putBuf(buf)
			return res, err
		}
		if s.files == nil {
			ts, size, err := s.putInline(ctx, res.SOPInstanceUID, in.TransferSyntaxUID, h.Str(tag.SOPClassUID), res.SeriesInstanceUID, buf.Bytes())
			if err != nil {
				// Not returned to the pool: a failed publish may still hold it.
				return res, err
			}
			putBuf(buf)
			storedTS, res.Size = ts, size
		} else {
			m := fileMeta{TransferSyntaxUID: in.TransferSyntaxUID, SOPClassUID: h.Str(tag.SOPClassUID),
				SOPInstanceUID: res.SOPInstanceUID, SeriesInstanceUID: res.SeriesInstanceUID}
			if s.workAsync {
				// The work item goes with the bytes: the queue's write of
				// it is flushed later, and a restart queues it from here.
				item := s.workItem(in, h, res, start, in.TransferSyntaxUID, int64(buf.Len()))
				if m.Work, err = json.Marshal(item); err != nil {
					putBuf(buf)
					return res, fmt.Errorf("ingest: encode work item %s: %w", res.SOPInstanceUID, err)
				}
			}
			p, err := s.files.write(m, buf.Bytes())
			putBuf(buf)
			if err != nil {
				return res, err
			}
			storedTS, res.Size, newBytes = p.ts, p.size, p.created
			if newBytes {
				work = m.Work
			}
			// The bytes are in the kernel, so a killed process keeps them:
			// the file's flush and the work item's queueing run at once, and
			// the sender hears success only when the bytes are on disk and
			// the work item is too or, with workAsync, kept with them. A
			// power cut between the two flushes can leave a queued work
			// item without its bytes; the sender, never told success, sends
			// again, and that copy is queued anew (below).
			flushed = make(chan error, 1)
			go func() { flushed <- p.commit() }()
		}
	default:
		info, ts, err := s.putObject(ctx, res, h, len(prefix), in.TransferSyntaxUID, io.MultiReader(bytes.NewReader(buf.Bytes()), src), src)
		if err != nil {
			return res, err
		}
		putBuf(buf)
		res.Size = int64(info.Size)
		storedTS = ts
	}
	data := work
	if data == nil {
		if data, err = json.Marshal(s.workItem(in, h, res, start, storedTS, res.Size)); err != nil {
			return res, fmt.Errorf("ingest: encode work item %s: %w", res.SOPInstanceUID, err)
		}
	}
	// The SOP Instance UID as message ID makes a re-send that races a crash
	// (stored and queued, but the sender never saw success) a no-op.
	ack, err := s.js.JetStream.Publish(ctx, s.workSubj, data, jetstream.WithMsgID(res.SOPInstanceUID))
	if flushed != nil {
		if ferr := <-flushed; ferr != nil && err == nil {
			return res, ferr
		}
	}
	if err != nil {
		return res, fmt.Errorf("%w: queue %s: %v", ErrUnavailable, res.SOPInstanceUID, err)
	}
	if ack.Duplicate && newBytes {
		// Queued before, yet no complete copy of its bytes was stored: a
		// power cut took them after the work item was flushed (the sender
		// was never told success). That item may be set aside by now for
		// want of bytes, so this copy is queued under an ID of its own; a
		// slice processed twice is recognised and acknowledged.
		s.log.Warn().Str("sop", res.SOPInstanceUID).Str("series", res.SeriesInstanceUID).
			Msg("ingest: instance queued before without its bytes on disk (lost in a power cut?); queued again with this copy")
		ack, err = s.js.JetStream.Publish(ctx, s.workSubj, data, jetstream.WithMsgID(res.SOPInstanceUID+"@"+strconv.FormatInt(start.UnixNano(), 36)))
		if err != nil {
			return res, fmt.Errorf("%w: queue %s: %v", ErrUnavailable, res.SOPInstanceUID, err)
		}
	}
	if ack.Duplicate {
		res.Outcome = Duplicate
		return res, nil
	}
	res.Outcome = Stored
	s.m.storedBytes.Add(float64(res.Size))
	s.m.storeSeconds.Observe(s.now().Sub(start).Seconds())
	return res, nil
}

// workItem is the work item of an instance whose data set is stored (in
// the transfer syntax storedTS, size bytes).
func (s *Service) workItem(in *Incoming, h *Header, res Result, received time.Time, storedTS string, size int64) workItem {
	item := workItem{
		SOPInstanceUID: res.SOPInstanceUID, SOPClassUID: h.Str(tag.SOPClassUID),
		SeriesInstanceUID: res.SeriesInstanceUID, StudyInstanceUID: h.Str(tag.StudyInstanceUID),
		TransferSyntaxUID: storedTS, Size: size, Decision: res.Decision,
		Source: in.Source, Received: received.UTC(), Frames: 1,
		Position: h.Floats(tag.ImagePositionPatient),
	}
	item.Decision.Reasons = nil
	if f, ok := h.Float(tag.InstanceNumber); ok {
		item.InstanceNumber = int(f)
	}
	if f, ok := h.Float(tag.NumberOfFrames); ok && f >= 1 {
		item.Frames = int(f)
	}
	if f, ok := h.Float(tag.ImagesInAcquisition); ok && f >= 1 {
		item.ImagesInAcq = int(f)
	}
	return item
}

func (s *Service) checkSpace() error { return s.checkSpaceFor(0) }

// checkSpaceFor says whether the free-space floor would still hold with
// extra bytes more written (ErrLowDisk if not).
func (s *Service) checkSpaceFor(extra uint64) error {
	if s.cfg.MinFreeBytes <= 0 && s.cfg.MinFreePercent <= 0 {
		return nil
	}
	free, total, err := s.space(s.dataDir)
	if err != nil {
		return fmt.Errorf("%w: statfs %s: %v", ErrUnavailable, s.dataDir, err)
	}
	free -= min(free, extra)
	if s.cfg.MinFreeBytes > 0 && free < uint64(s.cfg.MinFreeBytes) {
		return ErrLowDisk
	}
	if s.cfg.MinFreePercent > 0 && total > 0 && float64(free)*100/float64(total) < s.cfg.MinFreePercent {
		return ErrLowDisk
	}
	return nil
}

// OpenInstance returns the stored bare data set of an instance and its
// transfer syntax. A "not found" that may come from a replica still catching
// up is retried for DefaultReadRaceBudget (SetReadRaceBudget) before it is returned.
func (s *Service) OpenInstance(ctx context.Context, sopInstanceUID string) (io.ReadCloser, string, error) {
	type opened struct {
		rc io.ReadCloser
		ts string
	}
	o, _, err := ReadRetrying(ctx, func(ctx context.Context) (opened, error) {
		// A data set that fitted one message lives in the instance stream;
		// a larger one (or one stored before that stream) in the object store.
		if rc, ts, found, err := s.openInline(ctx, sopInstanceUID); err != nil || found {
			return opened{rc, ts}, err
		}
		r, err := s.objects.Get(ctx, sopInstanceUID)
		if err != nil {
			return opened{}, err
		}
		ts := ""
		if info, err := r.Info(); err == nil {
			ts = objectSyntax(info)
		}
		return opened{r, ts}, nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("ingest: open %s: %w", sopInstanceUID, err)
	}
	return o.rc, o.ts, nil
}

// objectSyntax is the transfer syntax stored with an object's bytes ("" when
// unknown).
func objectSyntax(info *jetstream.ObjectInfo) string {
	if info == nil || info.Headers == nil {
		return ""
	}
	return info.Headers.Get("Transfer-Syntax-UID")
}

// Consumers are the stages Run feeds. Either may be nil: its queue then keeps
// its items for a later run (or another node) to take.
type Consumers struct {
	// Slices receives every routed, stored instance as soon as it is durable.
	Slices SliceConsumer
	// Completions receives each completed (or amended) series.
	Completions CompletionConsumer
}

// Run feeds queued slices and series completions to the consumers and
// completes series, until ctx is done.
func (s *Service) Run(ctx context.Context, c Consumers) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 3)
	start := func(f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil && ctx.Err() == nil {
				errc <- err
				cancel()
			}
		}()
	}
	if c.Slices != nil {
		start(func(ctx context.Context) error { return s.runSlices(ctx, c.Slices) })
	}
	if c.Completions != nil {
		start(func(ctx context.Context) error { return s.runCompletions(ctx, c.Completions) })
	}
	start(s.runTracker)
	start(s.heartbeat)
	if s.files != nil {
		start(s.sweepFiles)
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return err
	}
	return nil
}

func (s *Service) consume(ctx context.Context, stream, durable, subject string, handle func(context.Context, jetstream.Msg)) error {
	maxDeliver := s.cfg.MaxDeliver
	if s.js.Embedded {
		// This process alone owns the store: what a previous run had taken
		// and not acknowledged (a crash, or messages still arriving for its
		// pull requests at a graceful stop) is redelivered now instead of
		// after AckWait. A work-queue stream keeps the messages of a deleted
		// consumer; a re-scored slice is caught as already processed.
		if err := s.js.JetStream.DeleteConsumer(ctx, stream, durable); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("ingest: reset consumer %s: %w", durable, err)
		}
	}
	cons, err := s.js.JetStream.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
		Durable: durable, AckPolicy: jetstream.AckExplicitPolicy, AckWait: s.cfg.AckWait,
		MaxDeliver: maxDeliver, MaxAckPending: max(s.cfg.MaxInFlight, 1), FilterSubject: subject,
	})
	if err != nil {
		return fmt.Errorf("ingest: consumer %s: %w", durable, err)
	}
	return jsconsume.Run(ctx, cons, jsconsume.Options{Name: "ingest: consume " + durable, Prefetch: 64, Log: s.log}, handle)
}

func (s *Service) runSlices(ctx context.Context, sc SliceConsumer) error {
	return s.consume(ctx, s.workName, "slices", s.workSubj, func(ctx context.Context, msg jetstream.Msg) {
		var it workItem
		if err := json.Unmarshal(msg.Data(), &it); err != nil {
			s.log.Error().Err(err).Msg("ingest: undecodable work item dropped")
			_ = msg.TermWithReason("undecodable")
			return
		}
		delivery, seq := 1, uint64(0)
		if md, err := msg.Metadata(); err == nil {
			delivery, seq = int(md.NumDelivered), md.Sequence.Stream
		}
		version, already, err := s.trackInstance(ctx, &it)
		if err != nil {
			s.log.Warn().Err(err).Str("series", it.SeriesInstanceUID).Msg("ingest: series tracking failed; will retry")
			_ = msg.NakWithDelay(time.Second)
			return
		}
		if already {
			s.m.redundant.Inc()
			if err := msg.DoubleAck(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn().Err(err).Str("sop", it.SOPInstanceUID).Msg("ingest: ack of an already processed slice failed")
			}
			return
		}
		sl := &Slice{
			SOPInstanceUID: it.SOPInstanceUID, SOPClassUID: it.SOPClassUID,
			SeriesInstanceUID: it.SeriesInstanceUID, StudyInstanceUID: it.StudyInstanceUID,
			TransferSyntaxUID: it.TransferSyntaxUID, Size: it.Size, Decision: it.Decision,
			Source: it.Source, Received: it.Received, InstanceNumber: it.InstanceNumber,
			Frames: it.Frames, ImagePositionPatient: it.Position, SeriesVersion: version,
			Delivery: delivery, WorkSequence: seq, svc: s, msg: msg,
		}
		s.m.dispatched.Inc()
		s.held.hold(msg, "slice "+it.SOPInstanceUID)
		err = s.guard("slice consumer", func() error { return sc.ConsumeSlice(ctx, sl) })
		if err == nil && !sl.kept {
			// Returned without Hold: an item not answered yet is the
			// consumer's to answer, or to be redelivered after ack_wait.
			s.held.release(msg)
		}
		if err != nil {
			if ctx.Err() != nil && !errors.Is(err, ErrPanic) {
				_ = sl.Nak(s.retryDelay(delivery))
				return
			}
			s.log.Warn().Err(err).Str("sop", it.SOPInstanceUID).Str("series", it.SeriesInstanceUID).Int("delivery", delivery).
				Int("max_deliveries", s.attempts()).Msg("ingest: slice consumer failed")
			if err := sl.Fail(context.WithoutCancel(ctx), err); err != nil {
				s.log.Error().Err(err).Str("sop", it.SOPInstanceUID).Msg("ingest: failed slice not handed back; it is redelivered after ack_wait")
			}
			s.held.release(msg)
		}
	})
}

func (s *Service) runCompletions(ctx context.Context, cc CompletionConsumer) error {
	return s.consume(ctx, s.doneName, "finaliser", s.doneSubj, func(ctx context.Context, msg jetstream.Msg) {
		var sc SeriesCompletion
		if err := json.Unmarshal(msg.Data(), &sc); err != nil {
			s.log.Error().Err(err).Msg("ingest: undecodable completion dropped")
			_ = msg.TermWithReason("undecodable")
			return
		}
		if md, err := msg.Metadata(); err == nil {
			sc.Delivery = int(md.NumDelivered)
		}
		sc.msg, sc.svc = msg, s
		s.held.hold(msg, "completion "+sc.SeriesInstanceUID)
		err := s.guard("completion consumer", func() error { return cc.ConsumeCompletion(ctx, &sc) })
		if err == nil {
			s.held.release(msg)
		}
		if err != nil {
			if ctx.Err() != nil && !errors.Is(err, ErrPanic) {
				_ = sc.Nak(s.retryDelay(sc.Delivery))
				return
			}
			s.log.Warn().Err(err).Str("series", sc.SeriesInstanceUID).Int("version", sc.Version).Int("delivery", sc.Delivery).
				Int("max_deliveries", s.attempts()).Msg("ingest: completion consumer failed")
			if err := sc.Fail(context.WithoutCancel(ctx), err); err != nil {
				s.log.Error().Err(err).Str("series", sc.SeriesInstanceUID).Msg("ingest: failed completion not handed back; it is redelivered after ack_wait")
			}
			s.held.release(msg)
		}
	})
}

// backoff is the redelivery delay after the n-th failed delivery.
func backoff(n int) time.Duration {
	d := time.Duration(n) * time.Second
	if d > time.Minute {
		d = time.Minute
	}
	return d
}

// itoa is strconv.Itoa, kept short for message IDs.
func itoa(i int) string { return strconv.Itoa(i) }
