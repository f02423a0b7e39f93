package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/suyashkumar/dicom/pkg/tag"
)

// The instance stream holds each received data set that fits in one message
// as exactly one message, subject <prefix>.instance.<hash of the SOP Instance
// UID>, with its transfer syntax and UIDs in the headers. One synced write per
// instance instead of the object store's two (chunk + meta record) and its two
// lookups (docs/ingest.md, "Where the time goes"). The stream keeps one
// message per subject and refuses a second one (discard new per subject), so
// "a stored object never changes under a queued work item" is enforced by the
// server in the same write, with no lookup before it. Data sets larger than
// one message (Enhanced multi-frame objects) still stream through the object
// store in chunks; OpenInstance reads either. The stream has the node's
// replica count, so in nats.url mode every node reads the bytes from the
// cluster like before. An embedded node keeps these data sets as files
// instead (files.go, ingest.instance_store); the stream is still read, for
// what an earlier version stored there.

// inlineSlack is what a message needs besides the data set (headers, subject)
// below the server's max payload.
const inlineSlack = 64 << 10

// openInstanceStream creates (or opens) the stream of single-message
// instances.
func (s *Service) openInstanceStream(ctx context.Context, retention time.Duration) error {
	st, err := s.js.JetStream.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: s.js.Name("INSTANCE_DATA"), Subjects: []string{s.instSubj + ".*"},
		Description: "received DICOM data sets, one message each, by SOP Instance UID",
		Storage:     jetstream.FileStorage, Replicas: s.js.Replicas, MaxAge: retention,
		// One message per instance; a second copy is refused by the server,
		// so the first stored bytes never change under their work item.
		MaxMsgsPerSubject: 1, Discard: jetstream.DiscardNew, DiscardNewPerSubject: true,
	})
	if err != nil {
		return fmt.Errorf("ingest: instance stream: %w", err)
	}
	s.inst = st
	return nil
}

// inlineLimit is the largest data set stored as one message.
func (s *Service) inlineLimit() int64 {
	lim := s.js.Conn.MaxPayload() - inlineSlack
	if lim < 0 {
		return 0
	}
	return lim
}

// instanceSubject is the subject of an instance's message.
func (s *Service) instanceSubject(sopInstanceUID string) string {
	return uidKey(s.instSubj+".", sopInstanceUID)
}

// bufPool recycles the buffers data sets are read into; buffers grown past
// pooledBufMax (multi-frame objects) are left to the collector.
var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

const pooledBufMax = 4 << 20

func putBuf(b *bytes.Buffer) {
	if b.Cap() <= pooledBufMax {
		b.Reset()
		bufPool.Put(b)
	}
}

// putInline stores one data set as one synced message (or file) and returns the stored
// bytes' transfer syntax and size: those of the copy already stored, when
// there is one (the server refused the second message).
func (s *Service) putInline(ctx context.Context, sop, ts, class, series string, data []byte) (storedTS string, size int64, err error) {
	if s.files != nil {
		return s.files.put(fileMeta{TransferSyntaxUID: ts, SOPClassUID: class, SOPInstanceUID: sop, SeriesInstanceUID: series}, data)
	}
	subj := s.instanceSubject(sop)
	msg := &nats.Msg{Subject: subj, Data: data, Header: nats.Header{
		"Transfer-Syntax-UID": []string{ts},
		"SOP-Class-UID":       []string{class},
		"SOP-Instance-UID":    []string{sop},
		"Series-Instance-UID": []string{series},
	}}
	_, perr := s.js.JetStream.PublishMsg(ctx, msg)
	if perr == nil {
		return ts, int64(len(data)), nil
	}
	// Refused: either a copy is there (discard new per subject) or the store
	// failed. Only a stored copy makes this a success.
	raw, err := s.inst.GetLastMsgForSubject(ctx, subj)
	if err == nil {
		return raw.Header.Get("Transfer-Syntax-UID"), int64(len(raw.Data)), nil
	}
	return "", 0, fmt.Errorf("%w: put %s: %v", ErrUnavailable, sop, perr)
}

// inlineStored says whether an instance is stored as one message, with
// which transfer syntax and size.
func (s *Service) inlineStored(ctx context.Context, sop string) (found bool, ts string, size int64, err error) {
	if s.files != nil {
		m, size, found, err := s.files.stored(sop)
		if found || err != nil {
			return found, m.TransferSyntaxUID, size, err
		}
	}
	raw, err := s.inst.GetLastMsgForSubject(ctx, s.instanceSubject(sop))
	switch {
	case err == nil:
		return true, raw.Header.Get("Transfer-Syntax-UID"), int64(len(raw.Data)), nil
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return false, "", 0, nil
	}
	return false, "", 0, err
}

// openInline returns an instance stored as one message (found false when it
// is not stored that way).
func (s *Service) openInline(ctx context.Context, sop string) (rc io.ReadCloser, ts string, found bool, err error) {
	if s.files != nil {
		if rc, ts, found, err := s.files.open(sop); found || err != nil {
			return rc, ts, found, err
		}
	}
	raw, err := s.inst.GetLastMsgForSubject(ctx, s.instanceSubject(sop))
	switch {
	case err == nil:
		return io.NopCloser(bytes.NewReader(raw.Data)), raw.Header.Get("Transfer-Syntax-UID"), true, nil
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return nil, "", false, nil
	}
	return nil, "", false, err
}

// lookup is what Accept must know about an instance before storing it.
type lookup struct {
	// dup: the instance's series record lists it (dispatched before).
	dup bool
	// object: a copy of the instance in the object store, if any.
	object *jetstream.ObjectInfo
	err    error
}

// lookup reads the series record and the object store for sop.
func (s *Service) lookup(ctx context.Context, series, sop string) lookup {
	dup, err := s.seriesHas(ctx, series, sop)
	if err != nil {
		return lookup{err: fmt.Errorf("%w: series index: %v", ErrUnavailable, err)}
	}
	if dup {
		return lookup{dup: true}
	}
	info, err := s.objects.GetInfo(ctx, sop)
	switch {
	case err == nil && !info.Deleted:
		return lookup{object: info}
	case err == nil || errors.Is(err, jetstream.ErrObjectNotFound):
		return lookup{}
	}
	return lookup{err: fmt.Errorf("%w: stat %s: %v", ErrUnavailable, sop, err)}
}

// truncated refuses a data set whose pixel data value is shorter than
// declared (n bytes of the data set were read after the header prefix): the
// sender or the file was cut off.
func truncated(h *Header, n int64) error {
	if h.HasPixelData && h.PixelDataLength != tag.VLUndefinedLength && n < int64(h.PixelDataLength) {
		return fmt.Errorf("%w: pixel data truncated (%d of %d bytes)", ErrMalformed, n, h.PixelDataLength)
	}
	return nil
}

// putObject streams a data set too large for one message into the object
// store in chunks (Enhanced multi-frame objects of hundreds of MB), unless a
// copy is already stored as one message. It returns the stored size and the
// stored bytes' transfer syntax.
func (s *Service) putObject(ctx context.Context, res Result, h *Header, prefixLen int, ts string, r io.Reader, src *errReader) (*jetstream.ObjectInfo, string, error) {
	found, kts, size, err := s.inlineStored(ctx, res.SOPInstanceUID)
	if err != nil {
		return nil, "", fmt.Errorf("%w: stat %s: %v", ErrUnavailable, res.SOPInstanceUID, err)
	}
	if found {
		if _, err := io.Copy(io.Discard, r); err != nil {
			return nil, "", fmt.Errorf("%w: %v", ErrSourceRead, err)
		}
		return &jetstream.ObjectInfo{ObjectMeta: jetstream.ObjectMeta{Name: res.SOPInstanceUID}, Size: uint64(size)}, kts, nil
	}
	meta := jetstream.ObjectMeta{
		Name: res.SOPInstanceUID,
		// 1 MiB chunks: every record costs one synced write.
		Opts: &jetstream.ObjectMetaOptions{ChunkSize: ChunkSize(s.js.Conn.MaxPayload())},
		Headers: nats.Header{
			"Transfer-Syntax-UID": []string{ts},
			"SOP-Class-UID":       []string{h.Str(tag.SOPClassUID)},
			"Series-Instance-UID": []string{res.SeriesInstanceUID},
		},
	}
	info, err := s.objects.Put(ctx, meta, r)
	if err != nil {
		if src.err != nil {
			return nil, "", fmt.Errorf("%w: %v", ErrSourceRead, src.err)
		}
		return nil, "", fmt.Errorf("%w: put %s: %v", ErrUnavailable, res.SOPInstanceUID, err)
	}
	if err := truncated(h, int64(info.Size)-int64(prefixLen)); err != nil {
		// The object was never queued; remove it so a complete re-send
		// replaces it.
		_ = s.objects.Delete(ctx, res.SOPInstanceUID)
		return nil, "", err
	}
	return info, ts, nil
}
