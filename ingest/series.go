package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/nats-io/nats.go/jetstream"
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
}

// Open returns the stored bare data set (no preamble or file meta) in
// TransferSyntaxUID.
func (s *Slice) Open(ctx context.Context) (io.ReadCloser, error) {
	r, _, err := s.svc.OpenInstance(ctx, s.SOPInstanceUID)
	return r, err
}

// OpenPart10 returns the stored instance as a DICOM Part-10 stream (preamble
// and file meta prepended), ready for dicom.ParseUntilEOF.
func (s *Slice) OpenPart10(ctx context.Context) (io.ReadCloser, error) {
	r, err := s.Open(ctx)
	if err != nil {
		return nil, err
	}
	return part10Reader(r, s.SOPClassUID, s.SOPInstanceUID, s.TransferSyntaxUID), nil
}

// Ack records the slice as processed in its series and acknowledges the work
// item, waiting for the server to confirm. Call it only once the consumer's own
// results are durable.
func (s *Slice) Ack(ctx context.Context) error {
	if err := s.svc.markDone(ctx, s.SeriesInstanceUID, s.SOPInstanceUID); err != nil {
		return err
	}
	if err := s.msg.DoubleAck(ctx); err != nil {
		return fmt.Errorf("ingest: ack %s: %w", s.SOPInstanceUID, err)
	}
	s.svc.m.acked.Inc()
	return nil
}

// Nak asks for redelivery after delay.
func (s *Slice) Nak(delay time.Duration) error {
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
// completes without it.
func (s *Slice) Term(ctx context.Context, reason string) error {
	if err := s.svc.markDone(ctx, s.SeriesInstanceUID, s.SOPInstanceUID); err != nil {
		return err
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
	// ImpliedCount is the slice count implied by regular spacing between the
	// extreme ImagePositionPatient values (0 when unknown); more than
	// len(Instances) means the volume has gaps.
	ImpliedCount int `json:"implied_count,omitempty"`
	// Reason is "quiet" (series_timeout without new instances) or "expected"
	// (the expected count was reached).
	Reason string `json:"reason"`
	// Delivery is 1 on the first delivery, more on redeliveries.
	Delivery int `json:"-"`

	msg jetstream.Msg
}

// Ack acknowledges the completion (the finaliser's outputs are committed).
func (c *SeriesCompletion) Ack(ctx context.Context) error {
	if err := c.msg.DoubleAck(ctx); err != nil {
		return fmt.Errorf("ingest: ack completion %s: %w", c.SeriesInstanceUID, err)
	}
	return nil
}

// Nak asks for redelivery after delay.
func (c *SeriesCompletion) Nak(delay time.Duration) error {
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

// updateSeries applies f to the series record with optimistic concurrency
// (compare-and-set on the KV revision), retrying on conflicts.
func (s *Service) updateSeries(ctx context.Context, seriesUID string, f func(st *seriesState, exists bool) (changed bool)) (*seriesState, error) {
	key := uidKey("s", seriesUID)
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var st seriesState
		var rev uint64
		e, err := s.series.Get(ctx, key)
		exists := err == nil
		switch {
		case exists:
			if err := json.Unmarshal(e.Value(), &st); err != nil {
				return nil, fmt.Errorf("ingest: series %s record: %w", seriesUID, err)
			}
			rev = e.Revision()
		case errors.Is(err, jetstream.ErrKeyNotFound):
		default:
			return nil, fmt.Errorf("ingest: series %s: %w", seriesUID, err)
		}
		if !f(&st, exists) {
			return &st, nil
		}
		data, _ := json.Marshal(&st)
		if exists {
			_, err = s.series.Update(ctx, key, data, rev)
		} else {
			_, err = s.series.Create(ctx, key, data)
		}
		if err == nil {
			return &st, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) || attempt > 1000 {
			return nil, fmt.Errorf("ingest: series %s update: %w", seriesUID, err)
		}
	}
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

// runTracker watches the series records and completes series that went quiet
// or reached their expected count once all their slices were processed.
func (s *Service) runTracker(ctx context.Context) error {
	w, err := s.series.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("ingest: watch series: %w", err)
	}
	defer w.Stop()
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
	if now.Sub(st.LastSeen) >= timeout {
		return "quiet"
	}
	return ""
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
	var pos [][]float64
	for _, in := range snap.Instances {
		sc.Instances = append(sc.Instances, in.SOP)
		if len(in.Pos) == 3 && in.Frames == 1 {
			pos = append(pos, in.Pos)
		}
	}
	if len(pos) == len(snap.Instances) {
		sc.ImpliedCount = spacingCount(pos)
	}
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

// spacingCount is the number of slices implied by regular spacing between the
// extreme positions along the slice normal (0 when it cannot be told).
func spacingCount(positions [][]float64) int {
	if len(positions) < 3 {
		return 0
	}
	// Project on the direction between the first two distinct positions.
	var dir []float64
	for _, p := range positions[1:] {
		d := []float64{p[0] - positions[0][0], p[1] - positions[0][1], p[2] - positions[0][2]}
		if n := math.Sqrt(d[0]*d[0] + d[1]*d[1] + d[2]*d[2]); n > 1e-6 {
			dir = []float64{d[0] / n, d[1] / n, d[2] / n}
			break
		}
	}
	if dir == nil {
		return 0
	}
	proj := make([]float64, len(positions))
	lo, hi := math.Inf(1), math.Inf(-1)
	for i, p := range positions {
		proj[i] = (p[0]-positions[0][0])*dir[0] + (p[1]-positions[0][1])*dir[1] + (p[2]-positions[0][2])*dir[2]
		lo, hi = math.Min(lo, proj[i]), math.Max(hi, proj[i])
	}
	minGap := math.Inf(1)
	for i := range proj {
		for j := range proj {
			if d := math.Abs(proj[i] - proj[j]); i != j && d > 1e-3 && d < minGap {
				minGap = d
			}
		}
	}
	if math.IsInf(minGap, 1) {
		return 0
	}
	return int(math.Round((hi-lo)/minGap)) + 1
}
