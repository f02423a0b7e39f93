package stage

import (
	"context"
	"testing"

	"github.com/rs/zerolog"

	"anomalynode/configs"
	"anomalynode/inference"
	"anomalynode/ingest"
)

// TestResultStoreChunks: a scored 512 x 512 slice (about 1.5 MiB) is stored
// in chunks as large as the server takes (two of 1 MiB on the embedded
// server, not twelve of the client's default 128 KiB: each is a synced write
// on the disk the instances are flushed to) and reads back whole.
func TestResultStoreChunks(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	js, err := ingest.OpenJetStream(ctx, configs.NATS{}, dir, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer js.Close()
	s, err := OpenResultStore(ctx, js.JetStream, "TEST_RESULTS", 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	const n = 512 * 512
	rec := &inference.SliceRecord{SOPInstanceUID: "1.2.3", SeriesInstanceUID: "1.2", Rows: 512, Cols: 512,
		Scores: make([]float32, n), Mask: make([]uint8, n), Display: make([]uint8, n), Max: 0.5}
	for i := range rec.Scores {
		rec.Scores[i] = float32(i%977) / 977
		rec.Display[i] = uint8(i)
	}
	if err := s.Put(ctx, rec); err != nil {
		t.Fatal(err)
	}
	info, err := s.obj.GetInfo(ctx, recordKey(rec.SeriesInstanceUID, rec.SOPInstanceUID, 0))
	if err != nil {
		t.Fatal(err)
	}
	if want := (info.Size + (1<<20 - 1)) >> 20; info.Chunks != uint32(want) {
		t.Fatalf("%d bytes in %d chunks, want %d of 1 MiB", info.Size, info.Chunks, want)
	}
	got, err := s.Get(ctx, rec.SeriesInstanceUID, rec.SOPInstanceUID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Scores) != n || got.Scores[n-1] != rec.Scores[n-1] || got.Display[1234] != rec.Display[1234] || got.Max != rec.Max {
		t.Fatal("result read back differs from the one stored")
	}
}
