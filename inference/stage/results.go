package stage

import (
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"anomalynode/inference"
	"anomalynode/ingest"
)

// ResultStore keeps SliceRecords durably in a JetStream object store, keyed by
// series and SOP instance, so that a restart loses no scored slice and a late
// slice can re-finalise its series without re-scoring the others.
type ResultStore struct {
	obj jetstream.ObjectStore
	// chunk is the chunk size: a scored 512x512 slice (about 1.5 MiB) is two
	// chunks and a meta message, each a synced write, instead of thirteen.
	chunk uint32
}

// OpenResultStore creates (or opens) the object-store bucket named bucket.
// ttl bounds how long results are kept (0: forever).
func OpenResultStore(ctx context.Context, js jetstream.JetStream, bucket string, replicas int, ttl time.Duration) (*ResultStore, error) {
	if replicas < 1 {
		replicas = 1
	}
	obj, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      bucket,
		Description: "anomalynode scored slices awaiting series finalisation",
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		TTL:         ttl,
	})
	if err != nil {
		return nil, fmt.Errorf("stage: result store %s: %w", bucket, err)
	}
	return &ResultStore{obj: obj, chunk: ingest.ChunkSize(js.Conn().MaxPayload())}, nil
}

func recordKey(series, sop string, frame int) string {
	return fmt.Sprintf("%s/%s/%d", series, sop, frame)
}

// Put stores a record, replacing any earlier one for the same slice.
func (s *ResultStore) Put(ctx context.Context, r *inference.SliceRecord) error {
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(r); err != nil {
		return fmt.Errorf("stage: encode result: %w", err)
	}
	meta := jetstream.ObjectMeta{Name: recordKey(r.SeriesInstanceUID, r.SOPInstanceUID, r.Frame), Opts: &jetstream.ObjectMetaOptions{ChunkSize: s.chunk}}
	if _, err := s.obj.Put(ctx, meta, &buf); err != nil {
		return fmt.Errorf("stage: store result: %w", err)
	}
	return nil
}

// Get loads the record of one slice; inference.ErrNoRecord when there is none.
func (s *ResultStore) Get(ctx context.Context, series, sop string, frame int) (*inference.SliceRecord, error) {
	data, err := s.obj.GetBytes(ctx, recordKey(series, sop, frame))
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, fmt.Errorf("%w: %s frame %d", inference.ErrNoRecord, sop, frame)
	}
	if err != nil {
		return nil, fmt.Errorf("stage: load result: %w", err)
	}
	var r inference.SliceRecord
	if err := gob.NewDecoder(bytes.NewReader(data)).Decode(&r); err != nil {
		return nil, fmt.Errorf("stage: decode result %s: %w", sop, err)
	}
	return &r, nil
}
