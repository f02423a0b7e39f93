package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"anomalynode/configs"
)

// SliceConsumer is the stage that processes routed slices (inference). It is
// handed each slice as soon as it is durable. The slice carries its
// acknowledgement: the consumer calls Ack once its own results are committed
// (it may hold the slice, e.g. to batch, and Ack later, calling InProgress to
// extend the deadline), Nak to have it redelivered, or Term to give up on it.
// Returning an error naks the slice. A slice not acknowledged within
// ingest.ack_wait is redelivered (Delivery > 1), so consumers must be
// idempotent.
type SliceConsumer interface {
	ConsumeSlice(ctx context.Context, s *Slice) error
}

// SliceConsumerFunc adapts a function to SliceConsumer.
type SliceConsumerFunc func(ctx context.Context, s *Slice) error

// ConsumeSlice calls f.
func (f SliceConsumerFunc) ConsumeSlice(ctx context.Context, s *Slice) error { return f(ctx, s) }

// CompletionConsumer is the stage that finalises series (builds SEG/SC). A
// completion arrives once every slice of the series version was acknowledged
// by the SliceConsumer (or terminated) and the series went quiet or reached
// its expected count. The same rules of Ack/Nak/InProgress apply.
type CompletionConsumer interface {
	ConsumeCompletion(ctx context.Context, c *SeriesCompletion) error
}

// CompletionConsumerFunc adapts a function to CompletionConsumer.
type CompletionConsumerFunc func(ctx context.Context, c *SeriesCompletion) error

// ConsumeCompletion calls f.
func (f CompletionConsumerFunc) ConsumeCompletion(ctx context.Context, c *SeriesCompletion) error {
	return f(ctx, c)
}

// Slice is one routed, stored instance handed to the SliceConsumer, with its
// acknowledgement.
type Slice struct {
	// SOPInstanceUID, SOPClassUID, SeriesInstanceUID and StudyInstanceUID
	// identify the instance.
	SOPInstanceUID, SOPClassUID, SeriesInstanceUID, StudyInstanceUID string
	// TransferSyntaxUID of the stored data set.
	TransferSyntaxUID string
	// Size of the stored data set in bytes.
	Size int64
	// Decision is the routing decision (rule, model, destinations).
	Decision Decision
	// Source says where the instance came from.
	Source Source
	// Received is when the store started accepting it.
	Received time.Time
	// InstanceNumber (0 when absent), Frames (NumberOfFrames, 1 for
	// single-frame) and ImagePositionPatient (nil when absent) from the header.
	InstanceNumber       int
	Frames               int
	ImagePositionPatient []float64
	// SeriesVersion is the series version this slice belongs to (1 first;
	// bumped when a slice re-opens a completed series).
	SeriesVersion int
	// Delivery is 1 on the first delivery, more on redeliveries (a crash of
	// the node can lose the count, so a redelivery may also say 1).
	Delivery int
	// WorkSequence identifies the work item (its stream sequence): a
	// redelivery carries the same number.
	WorkSequence uint64

	svc *Service
	msg jetstream.Msg
	// kept: the consumer called Hold, so the heartbeat goes on after
	// ConsumeSlice returns.
	kept bool
}

// Open returns the stored bare data set (no preamble or file meta) in
// TransferSyntaxUID.
func (s *Slice) Open(ctx context.Context) (io.ReadCloser, error) {
	r, _, err := s.open(ctx)
	return r, err
}

// open returns the stored data set and the transfer syntax stored with its
// bytes, which wins over the work item's: the syntax travels with the bytes.
func (s *Slice) open(ctx context.Context) (io.ReadCloser, string, error) {
	r, ts, err := s.svc.OpenInstance(ctx, s.SOPInstanceUID)
	if err != nil {
		return nil, "", err
	}
	if ts == "" {
		ts = s.TransferSyntaxUID
	}
	return r, ts, nil
}

// OpenPart10 returns the stored instance as a DICOM Part-10 stream (preamble
// and file meta prepended, naming the transfer syntax stored with the bytes),
// ready for dicom.ParseUntilEOF.
func (s *Slice) OpenPart10(ctx context.Context) (io.ReadCloser, error) {
	r, ts, err := s.open(ctx)
	if err != nil {
		return nil, err
	}
	return part10Reader(r, s.SOPClassUID, s.SOPInstanceUID, ts), nil
}

// ReadPart10 reads the whole stored instance as DICOM Part-10 bytes (see
// OpenPart10). A read that may have raced replication (not found, or a
// digest mismatch from a replica holding part of the object) is retried for
// DefaultReadRaceBudget (SetReadRaceBudget), so a slice is never failed for a replica's lag.
func (s *Slice) ReadPart10(ctx context.Context) ([]byte, error) {
	data, n, err := ReadRetrying(ctx, func(ctx context.Context) ([]byte, error) {
		rc, err := s.OpenPart10(ctx)
		if err != nil {
			return nil, err
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil {
			return nil, fmt.Errorf("ingest: read %s: %w", s.SOPInstanceUID, err)
		}
		return b, nil
	})
	if err == nil && n > 1 {
		s.svc.log.Info().Str("sop", s.SOPInstanceUID).Int("attempts", n).Msg("ingest: instance read after retries (a replica was catching up)")
	}
	return data, err
}

// Ack records the slice as processed in its series and acknowledges the work
// item, waiting for the server to confirm. Call it only once the consumer's own
// results are durable.
//
// Whatever Ack returns, the slice is no longer held (the heartbeat stops): a
// slice whose Ack failed is redelivered after ack_wait (sooner if the
// consumer hands it back with Nak or Fail) and processed again, or dropped
// as already done if the series record was written after all.
func (s *Slice) Ack(ctx context.Context) error {
	defer s.svc.held.release(s.msg)
	if err := s.svc.markDone(ctx, s.SeriesInstanceUID, s.SOPInstanceUID); err != nil {
		return fmt.Errorf("ingest: ack %s: %w", s.SOPInstanceUID, err)
	}
	actx, cancel := context.WithTimeout(ctx, s.svc.roundTrip)
	defer cancel()
	if err := s.msg.DoubleAck(actx); err != nil {
		return fmt.Errorf("ingest: ack %s: %w", s.SOPInstanceUID, err)
	}
	s.svc.m.acked.Inc()
	return nil
}

// Nak asks for redelivery after delay.
func (s *Slice) Nak(delay time.Duration) error {
	s.svc.held.release(s.msg)
	if err := s.msg.NakWithDelay(delay); err != nil {
		return fmt.Errorf("ingest: nak %s: %w", s.SOPInstanceUID, err)
	}
	return nil
}

// InProgress resets the redelivery deadline (ingest.ack_wait) of a slice still
// being worked on.
func (s *Slice) InProgress() error {
	if err := s.msg.InProgress(); err != nil {
		return fmt.Errorf("ingest: in progress %s: %w", s.SOPInstanceUID, err)
	}
	return nil
}

// Term gives up on the slice (it will never be redelivered); its series still
// completes without it. If Term fails, the slice is no longer held either: it
// is redelivered after ack_wait.
func (s *Slice) Term(ctx context.Context, reason string) error {
	defer s.svc.held.release(s.msg)
	if err := s.svc.markDone(ctx, s.SeriesInstanceUID, s.SOPInstanceUID); err != nil {
		return fmt.Errorf("ingest: term %s: %w", s.SOPInstanceUID, err)
	}
	if err := s.msg.TermWithReason(reason); err != nil {
		return fmt.Errorf("ingest: term %s: %w", s.SOPInstanceUID, err)
	}
	return nil
}

// SeriesCompletion says a series (version) is complete: every listed instance
// was processed by the SliceConsumer.
type SeriesCompletion struct {
	// SeriesInstanceUID and StudyInstanceUID identify the series.
	SeriesInstanceUID string `json:"series_instance_uid"`
	StudyInstanceUID  string `json:"study_instance_uid"`
	// Version is 1 for the first completion; a late slice re-opens the series
	// and its next completion has Version+1 (outputs must replace the old).
	Version int `json:"version"`
	// Decision is the routing decision of the series' first instance.
	Decision Decision `json:"decision"`
	// Instances are the SOP Instance UIDs in order of arrival.
	Instances []string `json:"instances"`
	// Frames is the total number of frames of the instances.
	Frames int `json:"frames"`
	// ImpliedCount is the number of slice positions implied by the smallest
	// spacing between the extreme ImagePositionPatient values (0 when unknown:
	// fewer than 3 instances, a multi-frame object, a missing position, or
	// positions not on one line); more than the distinct positions present
	// means the volume has gaps.
	ImpliedCount int `json:"implied_count,omitempty"`
	// Reason is "quiet" (series_timeout without new instances), "expected"
	// (the announced count was reached: ImagesInAcquisition or NumberOfFrames)
	// or "implied" (the instances form a complete, gap-free regular stack of
	// slices and the series was quiet for ingest.implied_settle).
	Reason string `json:"reason"`
	// Delivery is 1 on the first delivery, more on redeliveries.
	Delivery int `json:"-"`

	svc *Service
	msg jetstream.Msg
}

// Ack acknowledges the completion (the finaliser's outputs are committed).
func (c *SeriesCompletion) Ack(ctx context.Context) error {
	c.svc.held.release(c.msg)
	if err := c.msg.DoubleAck(ctx); err != nil {
		return fmt.Errorf("ingest: ack completion %s: %w", c.SeriesInstanceUID, err)
	}
	return nil
}

// Nak asks for redelivery after delay.
func (c *SeriesCompletion) Nak(delay time.Duration) error {
	c.svc.held.release(c.msg)
	if err := c.msg.NakWithDelay(delay); err != nil {
		return fmt.Errorf("ingest: nak completion %s: %w", c.SeriesInstanceUID, err)
	}
	return nil
}

// InProgress resets the redelivery deadline.
func (c *SeriesCompletion) InProgress() error {
	if err := c.msg.InProgress(); err != nil {
		return fmt.Errorf("ingest: in progress completion %s: %w", c.SeriesInstanceUID, err)
	}
	return nil
}

// seriesState is the JetStream KV record of one series.
type seriesState struct {
	SeriesUID string        `json:"series"`
	StudyUID  string        `json:"study"`
	Decision  Decision      `json:"decision"`
	Version   int           `json:"version"`
	Complete  bool          `json:"complete"`
	Reason    string        `json:"reason,omitempty"`
	Instances []instanceRef `json:"instances"`
	// Expected is the expected frame count (0: unknown).
	Expected int       `json:"expected,omitempty"`
	LastSeen time.Time `json:"last_seen"`
}

type instanceRef struct {
	SOP    string    `json:"sop"`
	Frames int       `json:"frames"`
	Done   bool      `json:"done,omitempty"`
	Pos    []float64 `json:"pos,omitempty"`
}

func (st *seriesState) frames() (total int, allDone bool) {
	allDone = true
	for _, in := range st.Instances {
		total += in.Frames
		if !in.Done {
			allDone = false
		}
	}
	return total, allDone
}

func (st *seriesState) index(sop string) int {
	for i, in := range st.Instances {
		if in.SOP == sop {
			return i
		}
	}
	return -1
}

// defaultRoundTrip bounds one request to the cluster made while answering a
// work item (a series record read or write, an acknowledgement). A request
// whose answer is lost - the NATS server it went through was shut down before
// replying - otherwise waits out its caller's whole deadline (the inference
// worker gives an Ack a minute) while the connection has long failed over.
// JetStream's own API timeout is 5 s as well.
const defaultRoundTrip = 5 * time.Second

// maxLostAnswers is how many series requests updateSeries retries after
// their answer did not come within the round trip, before it gives up:
// enough to ride out a server's failover, bounded so that a cluster that is
// down fails the caller (who hands the work item back) instead of blocking it.
const maxLostAnswers = 3

// lostAnswer reports whether err is a request of ours that timed out while
// its caller's ctx is still live: the answer was lost or late, and the
// request may or may not have been applied.
func lostAnswer(ctx context.Context, err error) bool {
	return ctx.Err() == nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout))
}

// updateSeries applies f to the series record with optimistic concurrency
// (compare-and-set on the KV revision), retrying on conflicts. Each read and
// write is bounded by roundTrip; one whose answer is lost is retried (up to
// maxLostAnswers times) from a fresh read, which finds a write that was
// applied after all (f then sees its own change and changes nothing) or
// makes it again.
func (s *Service) updateSeries(ctx context.Context, seriesUID string, f func(st *seriesState, exists bool) (changed bool)) (*seriesState, error) {
	key := uidKey("s", seriesUID)
	lost := 0
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var st seriesState
		var rev uint64
		rctx, cancel := context.WithTimeout(ctx, s.roundTrip)
		e, err := s.series.Get(rctx, key)
		cancel()
		exists := err == nil
		switch {
		case exists:
			if err := json.Unmarshal(e.Value(), &st); err != nil {
				return nil, fmt.Errorf("ingest: series %s record: %w", seriesUID, err)
			}
			rev = e.Revision()
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case lostAnswer(ctx, err) && lost < maxLostAnswers:
			lost++
			s.logLostAnswer(seriesUID, "read")
			continue
		default:
			return nil, fmt.Errorf("ingest: series %s: %w", seriesUID, err)
		}
		if !f(&st, exists) {
			return &st, nil
		}
		data, _ := json.Marshal(&st)
		wctx, cancel := context.WithTimeout(ctx, s.roundTrip)
		if exists {
			_, err = s.series.Update(wctx, key, data, rev)
		} else {
			_, err = s.series.Create(wctx, key, data)
		}
		cancel()
		switch {
		case err == nil:
			return &st, nil
		case lostAnswer(ctx, err) && lost < maxLostAnswers:
			lost++
			s.logLostAnswer(seriesUID, "write")
		case (errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)) && attempt <= 1000:
		default:
			return nil, fmt.Errorf("ingest: series %s update: %w", seriesUID, err)
		}
	}
}

// logLostAnswer says that a series record request went unanswered and is
// retried: one line per lost answer, which an operator sees around a NATS
// server's restart and should not see otherwise.
func (s *Service) logLostAnswer(seriesUID, op string) {
	s.log.Warn().Str("series", seriesUID).Str("op", op).Dur("round_trip", s.roundTrip).
		Msg("ingest: series record request not answered in time (a NATS server failing over, or the cluster overloaded); reading the record again and retrying")
}

// trackInstance adds a dispatched instance to its series (idempotently: a
// redelivery changes nothing) and returns the series version it belongs to. A
// new instance in a completed series re-opens it as the next version.
//
// done is true when the instance was already processed: the work item is a
// redelivery whose acknowledgement a crash lost, or a second work item for the
// same instance (a re-send that raced a crash); either way it must not be
// processed again.
func (s *Service) trackInstance(ctx context.Context, it *workItem) (version int, done bool, err error) {
	now := s.now().UTC()
	st, err := s.updateSeries(ctx, it.SeriesInstanceUID, func(st *seriesState, exists bool) bool {
		if !exists {
			*st = seriesState{SeriesUID: it.SeriesInstanceUID, StudyUID: it.StudyInstanceUID, Decision: it.Decision, Version: 1}
		}
		done = false
		if i := st.index(it.SOPInstanceUID); i >= 0 {
			done = st.Instances[i].Done
			return false
		}
		if st.Complete {
			st.Complete, st.Reason = false, ""
			st.Version++
			s.m.reopened.Inc()
		}
		st.Instances = append(st.Instances, instanceRef{SOP: it.SOPInstanceUID, Frames: max(it.Frames, 1), Pos: it.Position})
		if exp := expectedFrames(it); exp > st.Expected {
			st.Expected = exp
		}
		st.LastSeen = now
		return true
	})
	if err != nil {
		return 0, false, err
	}
	return st.Version, done, nil
}

// expectedFrames is the series size an instance announces: ImagesInAcquisition
// slices, or the frames of a multi-frame object.
func expectedFrames(it *workItem) int {
	if it.Frames > 1 {
		return it.Frames
	}
	return it.ImagesInAcq
}

// seriesHas reports whether the series record lists the instance.
func (s *Service) seriesHas(ctx context.Context, seriesUID, sop string) (bool, error) {
	e, err := s.series.Get(ctx, uidKey("s", seriesUID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	var st seriesState
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return false, fmt.Errorf("ingest: series %s record: %w", seriesUID, err)
	}
	return st.index(sop) >= 0, nil
}

func (s *Service) markDone(ctx context.Context, seriesUID, sop string) error {
	_, err := s.updateSeries(ctx, seriesUID, func(st *seriesState, exists bool) bool {
		i := st.index(sop)
		if !exists || i < 0 || st.Instances[i].Done {
			return false
		}
		st.Instances[i].Done = true
		return true
	})
	return err
}

// runTracker watches the series records and completes series that went quiet,
// reached their expected count or settled as a complete regular stack, once
// all their slices were processed.
func (s *Service) runTracker(ctx context.Context) error {
	w, err := s.series.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("ingest: watch series: %w", err)
	}
	defer w.Stop()
	// Every reason is exported from the start (at 0), so dashboards and
	// alerts can refer to "implied" before the first such completion.
	for _, reason := range []string{"quiet", "expected", "implied"} {
		s.m.completed.WithLabelValues(reason)
	}
	open := map[string]*seriesState{}
	tick := time.NewTicker(s.tickEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("ingest: series watch closed")
			}
			if e == nil {
				continue
			}
			if e.Operation() != jetstream.KeyValuePut {
				delete(open, e.Key())
				continue
			}
			var st seriesState
			if err := json.Unmarshal(e.Value(), &st); err != nil || st.Complete {
				delete(open, e.Key())
				continue
			}
			open[e.Key()] = &st
		case <-tick.C:
			s.m.openSeries.Set(float64(len(open)))
			now := s.now()
			for key, st := range open {
				reason := s.completionReason(st, now)
				if reason == "" {
					continue
				}
				if err := s.complete(ctx, st, reason); err != nil {
					s.log.Warn().Err(err).Str("series", st.SeriesUID).Msg("ingest: series completion failed; will retry")
					continue
				}
				delete(open, key)
			}
		}
	}
}

// completionReason says why the series is complete now, or "" while it is
// not: every instance must have been processed, then the announced count
// ("expected"), the quiet timeout ("quiet") or, sooner than the timeout, a
// complete regular stack that has settled ("implied") decides.
func (s *Service) completionReason(st *seriesState, now time.Time) string {
	frames, allDone := st.frames()
	if !allDone || len(st.Instances) == 0 {
		return ""
	}
	if st.Expected > 0 && frames >= st.Expected {
		return "expected"
	}
	timeout := st.Decision.SeriesTimeout
	if timeout <= 0 {
		timeout = s.cfg.SeriesTimeout
	}
	quiet := now.Sub(st.LastSeen)
	if quiet >= timeout {
		return "quiet"
	}
	// An announced count that is not reached yet outranks what the positions
	// suggest: the sender told us more is coming.
	if st.Expected > 0 {
		return ""
	}
	if settle := s.impliedSettle(st.Decision, timeout); settle > 0 && quiet >= settle && stackOf(st.Instances).Why == "" {
		return "implied"
	}
	return ""
}

// impliedSettle is how long a series whose positions form a complete regular
// stack must be quiet before it completes as "implied" (0: never). A regular
// stack alone is no proof of completeness - a scanner that sends slices in
// spatial order has a gap-free stack after every slice - so the trigger only
// fires once the sender has paused longer than it does between the slices of
// one series. The series' routing rule may set its own; it is never longer
// than the series' timeout (quiet would win).
func (s *Service) impliedSettle(d Decision, timeout time.Duration) time.Duration {
	settle := configs.DefaultImpliedSettle
	switch {
	case d.ImpliedSettle != nil:
		settle = *d.ImpliedSettle
	case s.cfg.ImpliedSettle != nil:
		settle = *s.cfg.ImpliedSettle
	}
	return min(settle, timeout)
}

// complete publishes the completion (deduplicated by series and version, so a
// crash between the two steps cannot complete a version twice) and then marks
// the record complete if it did not change in between.
func (s *Service) complete(ctx context.Context, snap *seriesState, reason string) error {
	frames, _ := snap.frames()
	sc := SeriesCompletion{
		SeriesInstanceUID: snap.SeriesUID, StudyInstanceUID: snap.StudyUID, Version: snap.Version,
		Decision: snap.Decision, Frames: frames, Reason: reason,
	}
	for _, in := range snap.Instances {
		sc.Instances = append(sc.Instances, in.SOP)
	}
	sc.ImpliedCount = stackOf(snap.Instances).Implied
	published := false
	_, err := s.updateSeries(ctx, snap.SeriesUID, func(st *seriesState, exists bool) bool {
		if !exists || st.Complete || st.Version != snap.Version || len(st.Instances) != len(snap.Instances) || s.completionReason(st, s.now()) == "" {
			return false // changed since the snapshot: the next tick decides again
		}
		if !published {
			data, _ := json.Marshal(&sc)
			if _, err := s.js.JetStream.Publish(ctx, s.doneSubj, data, jetstream.WithMsgID(snap.SeriesUID+"@"+itoa(snap.Version))); err != nil {
				s.log.Warn().Err(err).Str("series", snap.SeriesUID).Msg("ingest: publish completion failed; will retry")
				return false
			}
			published = true
		}
		st.Complete, st.Reason = true, reason
		return true
	})
	if err != nil || !published {
		return err
	}
	s.m.completed.WithLabelValues(reason).Inc()
	s.log.Info().Str("series", sc.SeriesInstanceUID).Int("version", sc.Version).Int("instances", len(sc.Instances)).Str("reason", reason).Msg("ingest: series complete")
	return nil
}

// Tolerances of the stack geometry. Positions are DS strings that scanners
// round (often to 0.01 mm per coordinate, which moves a projection on an
// oblique stack by up to about 0.009 mm, a difference of two by twice that),
// and some tables drift slightly along a long volume. A missing slice doubles
// one gap (+100 %), so tolerances of a few percent still catch every gap while
// rounding never turns a complete volume into an irregular one (which would
// only delay it to series_timeout, but needlessly).
const (
	// stackAbsTol (mm) is the smallest tolerance: positions closer than this
	// are the same position, and a spacing may deviate this much.
	stackAbsTol = 0.02
	// stackRelTol is the tolerance as a fraction of the slice spacing.
	stackRelTol = 0.02
	// minImpliedSlices is the fewest distinct positions that can complete a
	// series by their implied count: with two, every pair is "regular".
	minImpliedSlices = 3
)

// stack is what the ImagePositionPatient values of a series' instances say
// about it as one stack of parallel slices.
type stack struct {
	// Positions is the number of distinct positions.
	Positions int
	// PerPosition is the number of instances at each position (several for
	// multi-echo or multi-phase series); 0 when it differs between positions.
	PerPosition int
	// Spacing is the slice spacing (mm): the mean when the positions are
	// evenly spaced, else the smallest distance between neighbours.
	Spacing float64
	// Implied is the number of positions implied by Spacing between the two
	// extremes (0 when it cannot be told); more than Positions means gaps.
	Implied int
	// Why says why the instances are not a complete, gap-free regular stack;
	// "" when they are.
	Why string
}

// stackOf checks whether the instances form a complete regular stack: every
// instance single-frame with a position, at least minImpliedSlices distinct
// positions on one line (perpendicular distance within tolerance; the line
// need not be an axis, so tilted and oblique stacks count), neighbouring
// positions all one spacing apart (so the distinct count equals the count
// implied between the extremes: no gap), and the same number of instances at
// every position (a multi-echo series half sent is not complete).
//
// Orientation is not compared: the series record keeps positions only. Two
// stacks of different orientation in one series almost never share a line,
// so they fail the line test.
func stackOf(ins []instanceRef) stack {
	if len(ins) < minImpliedSlices {
		return stack{Why: fmt.Sprintf("%d instances, fewer than %d", len(ins), minImpliedSlices)}
	}
	pts := make([][3]float64, len(ins))
	for i, in := range ins {
		if in.Frames != 1 {
			return stack{Why: "a multi-frame instance"}
		}
		if len(in.Pos) != 3 {
			return stack{Why: "an instance without ImagePositionPatient"}
		}
		for k, v := range in.Pos {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return stack{Why: "a non-finite ImagePositionPatient"}
			}
			pts[i][k] = v
		}
	}
	// The line runs between the two extremes: a is farthest from an
	// arbitrary point, b farthest from a (exact for collinear points, which
	// is all that must be right; other sets fail the distance test anyway).
	a := pts[farthest(pts, pts[0])]
	b := pts[farthest(pts, a)]
	d := sub(b, a)
	length := math.Sqrt(dot(d, d))
	if length <= stackAbsTol {
		return stack{Why: "every instance at one position"}
	}
	dir := [3]float64{d[0] / length, d[1] / length, d[2] / length}
	proj := make([]float64, len(pts))
	offLine := 0.0
	for i, p := range pts {
		v := sub(p, a)
		t := dot(v, dir)
		proj[i] = t
		perp := [3]float64{v[0] - t*dir[0], v[1] - t*dir[1], v[2] - t*dir[2]}
		offLine = math.Max(offLine, math.Sqrt(dot(perp, perp)))
	}
	sort.Float64s(proj)
	// Group equal positions (within the absolute tolerance of the first of
	// the group) and count the instances at each.
	var centres []float64
	var counts []int
	for _, t := range proj {
		if n := len(centres); n > 0 && t-centres[n-1] <= stackAbsTol {
			counts[n-1]++
			continue
		}
		centres = append(centres, t)
		counts = append(counts, 1)
	}
	st := stack{Positions: len(centres), PerPosition: counts[0]}
	for _, c := range counts {
		if c != st.PerPosition {
			st.PerPosition = 0
		}
	}
	minGap := math.Inf(1)
	for k := 1; k < len(centres); k++ {
		minGap = math.Min(minGap, centres[k]-centres[k-1])
	}
	span := centres[len(centres)-1] - centres[0]
	// The regularity test compares every gap with the mean spacing, not the
	// smallest gap: rounding shrinks the smallest gap and widens another, and
	// measured against the mean each is off by its own rounding only. A
	// missing slice makes one gap twice the spacing, and the mean at most
	// (n)/(n-1) of it, so that gap is always far outside the tolerance.
	mean := span / float64(len(centres)-1)
	tol := math.Max(stackAbsTol, stackRelTol*mean)
	// The line through the extremes carries their rounding too, so the
	// distance to it may be off by about twice a single rounding.
	if offLine > 2*tol {
		return stack{Positions: st.Positions, Why: fmt.Sprintf("positions not on one line (%.3g mm off)", offLine)}
	}
	regular := evenlySpaced(centres, mean, tol, false)
	st.Spacing, st.Implied = mean, st.Positions
	if !regular {
		st.Spacing, st.Implied = minGap, int(math.Round(span/minGap))+1
	}
	switch {
	case st.Positions < minImpliedSlices:
		st.Why = fmt.Sprintf("%d distinct positions, fewer than %d", st.Positions, minImpliedSlices)
	case !regular:
		if evenlySpaced(centres, minGap, math.Max(stackAbsTol, stackRelTol*minGap), true) {
			st.Why = fmt.Sprintf("gaps: %d of %d implied positions present", st.Positions, st.Implied)
		} else {
			st.Why = "irregular spacing"
		}
	case st.PerPosition == 0:
		st.Why = "unequal instance counts per position"
	}
	return st
}

// evenlySpaced reports whether every neighbouring distance is spacing (within
// tol), or, with multiples, any whole multiple of it (a grid with gaps).
func evenlySpaced(centres []float64, spacing, tol float64, multiples bool) bool {
	for k := 1; k < len(centres); k++ {
		g := centres[k] - centres[k-1]
		n := 1.0
		if multiples {
			n = math.Max(1, math.Round(g/spacing))
		}
		if math.Abs(g-n*spacing) > tol*n {
			return false
		}
	}
	return true
}

func farthest(pts [][3]float64, from [3]float64) int {
	best, bestD := 0, -1.0
	for i, p := range pts {
		v := sub(p, from)
		if d := dot(v, v); d > bestD {
			best, bestD = i, d
		}
	}
	return best
}

func sub(a, b [3]float64) [3]float64 { return [3]float64{a[0] - b[0], a[1] - b[1], a[2] - b[2]} }

func dot(a, b [3]float64) float64 { return a[0]*b[0] + a[1]*b[1] + a[2]*b[2] }
