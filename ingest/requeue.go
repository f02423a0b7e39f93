package ingest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// An embedded node whose data sets go to segments and files (files.go) does
// not flush the work stream once per work item: the stream is made with
// asynchronous persistence, and the embedded server flushes it every
// workSyncInterval. The promise to the sender stays the same: it hears
// success only when the data set is on disk together with its work item
// (fileMeta.Work), so one device flush per instance is enough instead of
// two. What a power cut or a killed process may take is the work stream's
// last writes; at start, requeueRecent queues again every work item of the
// data sets stored in the last requeueWindow before the newest (the message
// ID, the SOP Instance UID, drops those still queued; one processed since is
// recognised as done by trackInstance).
const (
	workSyncInterval = time.Second
	requeueWindow    = 30 * workSyncInterval
)

// workPersistMode is the work stream's persistence: asynchronous when the
// node keeps every data set with its work item on disk (instance files,
// synced). A stream keeps the mode it was made with (JetStream cannot change
// it): one made synced by an earlier version stays synced (logged); one
// made asynchronous cannot serve a node that keeps the data sets in the
// instance stream, since nothing would queue its lost writes again. A
// client of a running node's embedded server (the exports command through
// nats.listen) keeps no data sets and takes the stream as it is.
func (s *Service) workPersistMode(ctx context.Context) (jetstream.PersistModeType, error) {
	want := jetstream.DefaultPersistMode
	if s.files != nil && s.files.sync {
		want = jetstream.AsyncPersistMode
	}
	st, err := s.js.JetStream.Stream(ctx, s.workName)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return want, nil
	}
	if err != nil {
		return 0, fmt.Errorf("ingest: stream %s: %w", s.workName, err)
	}
	have := st.CachedInfo().Config.PersistMode
	switch {
	case have == want:
	case have == jetstream.AsyncPersistMode && s.files == nil && s.cfg.InstanceStore == "stream":
		return 0, fmt.Errorf("ingest: stream %s was made for instance files (its writes are flushed in batches and queued again from the files after a crash); "+
			"with the instance stream it must be made anew: let the node finish its queue, stop it and remove the stream (nats stream rm %s), or set ingest.instance_store: files",
			s.workName, s.workName)
	case have == jetstream.DefaultPersistMode:
		s.log.Info().Str("stream", s.workName).Msg("ingest: the work stream was made by an earlier version and keeps a flush per work item (slower ingest); " +
			"it is made with batched flushes when made anew (let the node finish its queue, stop it and remove the stream)")
	}
	return have, nil
}

// requeueRecent queues again the work items kept with the data sets stored
// in the last requeueWindow before the newest one (see workSyncInterval).
func (s *Service) requeueRecent(ctx context.Context) error {
	start := s.now()
	recent, walkErr := s.files.recent(requeueWindow)
	if walkErr != nil {
		// The data sets it could read are queued; the rest stay on disk.
		s.log.Error().Err(walkErr).Msg("ingest: some instance files could not be listed at start; their work items, if lost, are not queued again")
	}
	queued, kept := 0, 0
	for _, m := range recent {
		if len(m.Work) == 0 {
			continue // stored when the work stream flushed every item
		}
		ack, err := s.js.JetStream.Publish(ctx, s.workSubj, m.Work, jetstream.WithMsgID(m.SOPInstanceUID))
		if err != nil {
			return fmt.Errorf("%w: queue again %s: %v", ErrUnavailable, m.SOPInstanceUID, err)
		}
		if ack.Duplicate {
			kept++
		} else {
			queued++
		}
	}
	ev := s.log.Debug()
	if queued > 0 {
		ev = s.log.Info()
	}
	ev.Int("checked", len(recent)).Int("queued_again", queued).Int("still_queued", kept).Dur("took", s.now().Sub(start)).
		Msgf("ingest: work items of the data sets stored in the last %v before the restart queued again where the queue had lost them", requeueWindow)
	return nil
}
