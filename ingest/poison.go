package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"anomalynode/internal/fault"
)

// DefaultPoisonAttempts is how many deliveries a work item that keeps failing
// gets (ingest.max_deliver when that is a number) before it is set aside: a
// deterministic fault fails every time, and the items behind it must not wait.
const DefaultPoisonAttempts = 5

// Stages whose work items can be set aside.
const (
	// StageSlice is the slice consumer (inference).
	StageSlice = "slice"
	// StageCompletion is the completion consumer (the finaliser).
	StageCompletion = "completion"
)

// ErrPanic marks a fault recovered from a panic at a stage boundary (the
// same value as fault.ErrPanic, which stages that do not import ingest wrap).
var ErrPanic = fault.ErrPanic

// DeadWork is a work item set aside after it kept failing (or could never
// succeed, as an instance that cannot be decoded): what the operator lists with
// 'anomalynode exports list'. Its series completed without it.
type DeadWork struct {
	// Seq is its sequence in the dead-work stream.
	Seq uint64 `json:"seq"`
	// Stage is StageSlice or StageCompletion.
	Stage string `json:"stage"`
	// SOPInstanceUID (slices only), SeriesInstanceUID and StudyInstanceUID
	// identify it.
	SOPInstanceUID    string `json:"sop_instance_uid,omitempty"`
	SeriesInstanceUID string `json:"series_instance_uid"`
	StudyInstanceUID  string `json:"study_instance_uid,omitempty"`
	// Model is the model it was routed to.
	Model string `json:"model,omitempty"`
	// Attempts is the delivery that set it aside.
	Attempts int `json:"attempts"`
	// Reason is the last failure.
	Reason string `json:"reason"`
	// DeadAt is when it was set aside.
	DeadAt time.Time `json:"dead_at"`
	// Item is the work item itself (what ReplayDeadWork queues again).
	Item json.RawMessage `json:"item,omitempty"`
}

// attempts is the delivery at which a failing item is set aside.
func (s *Service) attempts() int {
	if s.cfg.MaxDeliver > 0 {
		return s.cfg.MaxDeliver
	}
	return DefaultPoisonAttempts
}

// setAside records d in the dead-work stream and counts it; the caller then
// terminates the message.
func (s *Service) setAside(ctx context.Context, d DeadWork) error {
	d.DeadAt = s.now().UTC()
	data, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("ingest: encode dead work: %w", err)
	}
	if _, err := s.js.JetStream.Publish(ctx, s.deadSubj, data); err != nil {
		return fmt.Errorf("ingest: record dead work %s: %w", d.SeriesInstanceUID, err)
	}
	s.m.deadLettered.WithLabelValues(d.Stage).Inc()
	s.log.Error().Str("stage", d.Stage).Str("sop", d.SOPInstanceUID).Str("series", d.SeriesInstanceUID).
		Str("model", d.Model).Int("attempts", d.Attempts).Str("reason", d.Reason).
		Msg("ingest: work item set aside (dead-lettered); its series completes without it; list with 'anomalynode exports list'")
	return nil
}

// DeadLetter sets the slice aside for good with its reason (listed by
// 'anomalynode exports list', counted in
// anomalynode_ingest_work_dead_lettered_total); its series completes without
// it. Use it for a slice that can never succeed (it cannot be decoded). If
// it fails, the slice is no longer held: it is redelivered after ack_wait.
func (s *Slice) DeadLetter(ctx context.Context, reason string) error {
	defer s.svc.held.release(s.msg)
	if err := s.svc.setAside(ctx, DeadWork{
		Stage: StageSlice, SOPInstanceUID: s.SOPInstanceUID, SeriesInstanceUID: s.SeriesInstanceUID,
		StudyInstanceUID: s.StudyInstanceUID, Model: s.Decision.Model, Attempts: s.Delivery, Reason: reason,
		Item: s.msg.Data(),
	}); err != nil {
		return err
	}
	return s.Term(ctx, reason)
}

// Fail reports a failed attempt at the slice: it is redelivered after a
// backoff that grows with each delivery, and set aside with cause as its
// reason once it has had its bounded number of deliveries, so that one poison
// slice never holds up the node or its series.
func (s *Slice) Fail(ctx context.Context, cause error) error {
	if s.Delivery >= s.svc.attempts() {
		return s.DeadLetter(ctx, cause.Error())
	}
	return s.Nak(s.svc.retryDelay(s.Delivery))
}

// Fail reports a failed attempt at the completion: redelivered after a
// growing backoff, set aside once it has had its bounded number of deliveries
// (the series then has no outputs for this version). If it fails, the
// completion is no longer held: it is redelivered after ack_wait.
func (c *SeriesCompletion) Fail(ctx context.Context, cause error) error {
	defer c.svc.held.release(c.msg)
	if c.Delivery < c.svc.attempts() {
		return c.Nak(c.svc.retryDelay(c.Delivery))
	}
	if err := c.svc.setAside(ctx, DeadWork{
		Stage: StageCompletion, SeriesInstanceUID: c.SeriesInstanceUID, StudyInstanceUID: c.StudyInstanceUID,
		Model: c.Decision.Model, Attempts: c.Delivery, Reason: fmt.Sprintf("version %d: %v", c.Version, cause),
		Item: c.msg.Data(),
	}); err != nil {
		return err
	}
	if err := c.msg.TermWithReason(cause.Error()); err != nil {
		return fmt.Errorf("ingest: term completion %s: %w", c.SeriesInstanceUID, err)
	}
	return nil
}

// guard runs f, turning a panic into an error wrapping ErrPanic (the stack
// goes to the log): a fault in one work item must not stop the node.
func (s *Service) guard(what string, f func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error().Str("stack", string(debug.Stack())).Msgf("ingest: %s panicked: %v", what, p)
			err = fmt.Errorf("ingest: %s: %w: %v", what, ErrPanic, p)
		}
	}()
	return f()
}

// ListDeadWork returns the work items set aside, oldest first. It reads the
// stream only, so it works from a second process on a shared or listening
// JetStream.
func ListDeadWork(ctx context.Context, js *JS) ([]DeadWork, error) {
	st, err := js.JetStream.Stream(ctx, js.Name("WORK_DEAD"))
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ingest: dead work stream: %w", err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("ingest: dead work stream: %w", err)
	}
	var out []DeadWork
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return out, fmt.Errorf("ingest: dead work %d: %w", seq, err)
		}
		var d DeadWork
		if err := json.Unmarshal(m.Data, &d); err != nil {
			return out, fmt.Errorf("ingest: dead work %d: %w", seq, err)
		}
		d.Seq = seq
		out = append(out, d)
	}
	return out, nil
}

// deadStream is the configuration of the dead-work stream: kept as long as
// the instances themselves (ingest.retention).
func deadStream(js *JS, retention time.Duration) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name: js.Name("WORK_DEAD"), Subjects: []string{js.Subject("work.dead")},
		Description: "work items set aside after failing their bounded deliveries",
		Storage:     jetstream.FileStorage, Replicas: js.Replicas, MaxAge: retention,
	}
}

// ReplayDeadWork queues work set aside again (all of it, or the given
// sequence numbers) once its cause is fixed (a device back, a model
// replaced), and removes it from the dead-work stream. A replayed slice
// re-opens its series, which then completes as its next version with the
// slice's outputs; a replayed completion is finalised again. It returns how
// many items were queued.
func (s *Service) ReplayDeadWork(ctx context.Context, seqs ...uint64) (int, error) {
	dead, err := ListDeadWork(ctx, s.js)
	if err != nil {
		return 0, err
	}
	want := map[uint64]bool{}
	for _, q := range seqs {
		want[q] = true
	}
	st, err := s.js.JetStream.Stream(ctx, s.js.Name("WORK_DEAD"))
	if err != nil {
		return 0, fmt.Errorf("ingest: dead work stream: %w", err)
	}
	var replayed []DeadWork
	// fail stops the replay: what was queued so far still leaves the
	// dead-work stream.
	fail := func(err error) (int, error) {
		return len(replayed), errors.Join(err, s.forgetReplayed(ctx, st, replayed))
	}
	for _, d := range dead {
		if len(want) > 0 && !want[d.Seq] {
			continue
		}
		if len(d.Item) == 0 {
			return fail(fmt.Errorf("ingest: dead work %d has no work item to replay", d.Seq))
		}
		subj := s.doneSubj
		if d.Stage == StageSlice {
			subj = s.workSubj
			if err := s.reopenInstance(ctx, d.SeriesInstanceUID, d.SOPInstanceUID); err != nil {
				return fail(err)
			}
		}
		// A new message ID: the original one may still be in the duplicate
		// window.
		id := fmt.Sprintf("replay-%d-%d", d.Seq, s.now().UnixNano())
		if _, err := s.js.JetStream.Publish(ctx, subj, d.Item, jetstream.WithMsgID(id)); err != nil {
			return fail(fmt.Errorf("ingest: replay %d: %w", d.Seq, err))
		}
		replayed = append(replayed, d)
	}
	return len(replayed), s.forgetReplayed(ctx, st, replayed)
}

// forgetReplayed removes replayed items from the dead-work stream. When the
// work stream flushes in batches (requeue.go), not before the batch holding
// the replayed slices is flushed: until then the dead entry is their only
// durable copy.
func (s *Service) forgetReplayed(ctx context.Context, st jetstream.Stream, replayed []DeadWork) error {
	if len(replayed) == 0 {
		return nil
	}
	if s.workAsync {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * workSyncInterval):
		}
	}
	for _, d := range replayed {
		if err := st.DeleteMsg(ctx, d.Seq); err != nil {
			return fmt.Errorf("ingest: replay %d: remove from dead work: %w", d.Seq, err)
		}
		s.log.Info().Uint64("seq", d.Seq).Str("stage", d.Stage).Str("sop", d.SOPInstanceUID).Str("series", d.SeriesInstanceUID).
			Msg("ingest: dead work replayed")
	}
	return nil
}

// reopenInstance marks an instance not processed in its series record (and
// re-opens a completed series as its next version), so that its replayed
// work item is processed instead of being dropped as already done.
func (s *Service) reopenInstance(ctx context.Context, seriesUID, sop string) error {
	_, err := s.updateSeries(ctx, seriesUID, func(st *seriesState, exists bool) bool {
		i := st.index(sop)
		if !exists || i < 0 {
			return false
		}
		st.Instances[i].Done = false
		if st.Complete {
			st.Complete, st.Reason = false, ""
			st.Version++
			s.m.reopened.Inc()
		}
		st.LastSeen = s.now().UTC()
		return true
	})
	if err != nil {
		return fmt.Errorf("ingest: replay %s: %w", sop, err)
	}
	return nil
}
