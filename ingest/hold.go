package ingest

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Holding work: a node signals progress (an in-progress ack) every
// ack_wait/3 on every work item it holds, so ingest.ack_wait can be short
// (30 s): work a live node is on is never redelivered, and the work of a
// node that died is taken over by another node within ack_wait.

// maxHold bounds how long an item is kept alive by the heartbeat: beyond it
// the holder is presumed stuck (a hung device, a lost item) and the item is
// left to be redelivered. Generous, because slices may queue for a model.
func maxHold(ackWait time.Duration) time.Duration { return max(20*ackWait, 10*time.Minute) }

// holdings are the work items this process holds, by message.
type holdings struct {
	mu    sync.Mutex
	items map[jetstream.Msg]holding
}

type holding struct {
	since time.Time
	what  string
}

func (h *holdings) hold(msg jetstream.Msg, what string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.items == nil {
		h.items = map[jetstream.Msg]holding{}
	}
	if _, ok := h.items[msg]; !ok {
		h.items[msg] = holding{since: time.Now(), what: what}
	}
}

func (h *holdings) release(msg jetstream.Msg) {
	h.mu.Lock()
	delete(h.items, msg)
	h.mu.Unlock()
}

func (h *holdings) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.items)
}

// heartbeat signals progress on every held item every ackWait/3 until ctx
// is done; items held longer than maxHold are let go (and logged).
func (s *Service) heartbeat(ctx context.Context) error {
	t := time.NewTicker(s.cfg.AckWait / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		s.held.mu.Lock()
		var msgs []jetstream.Msg
		for msg, h := range s.held.items {
			if time.Since(h.since) > maxHold(s.cfg.AckWait) {
				delete(s.held.items, msg)
				s.log.Warn().Str("item", h.what).Dur("held", time.Since(h.since)).
					Msg("ingest: work item held too long without an answer; no longer kept alive, it is redelivered after ack_wait")
				continue
			}
			msgs = append(msgs, msg)
		}
		s.held.mu.Unlock()
		for _, msg := range msgs {
			// A failed signal is not fatal: the next tick tries again, and at
			// worst the item is redelivered and recognised as done.
			_ = msg.InProgress()
		}
	}
}

// Hold keeps the slice from being redelivered while this node works on it:
// progress is signalled every ack_wait/3 until Ack, Nak, Term (or Fail,
// DeadLetter). A consumer that returns from ConsumeSlice before acknowledging
// (it queues the slice, e.g. to batch) calls Hold; while ConsumeSlice runs
// the slice is held anyway.
func (s *Slice) Hold() {
	s.kept = true
	s.svc.held.hold(s.msg, "slice "+s.SOPInstanceUID)
}
