package ingest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
)

// checkStoredSyntax consumes the queued slices and checks each one's Part-10
// view parses: the transfer syntax it names is
// that of the bytes stored.
func checkStoredSyntax(t *testing.T, svc *Service, want int) {
	t.Helper()
	rec := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go svc.Run(ctx, Consumers{Slices: rec})
	waitFor(t, 10*time.Second, fmt.Sprintf("%d slices", want), func() bool { return rec.ackedCount() == want })
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, sl := range rec.slices {
		p10, err := sl.OpenPart10(ctx)
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(p10)
		p10.Close()
		if err != nil {
			t.Fatal(err)
		}
		ds, err := dicom.Parse(bytes.NewReader(data), int64(len(data)), nil, dicom.SkipPixelData())
		if err != nil {
			t.Fatalf("%s: the stored bytes do not parse in the syntax they are labelled with (item says %s): %v", sl.SOPInstanceUID, sl.TransferSyntaxUID, err)
		}
		e, err := ds.FindElementByTag(tag.SeriesInstanceUID)
		if err != nil || dicom.MustGetStrings(e.Value)[0] != sl.SeriesInstanceUID {
			t.Fatalf("%s: the stored bytes read in their labelled syntax lose the series UID: %v", sl.SOPInstanceUID, err)
		}
		r, ts, err := svc.OpenInstance(ctx, sl.SOPInstanceUID)
		if err != nil {
			t.Fatal(err)
		}
		r.Close()
		if ts != sl.TransferSyntaxUID {
			t.Fatalf("%s: work item says %s, the stored bytes are %s", sl.SOPInstanceUID, sl.TransferSyntaxUID, ts)
		}
	}
}

// TestConcurrentCopiesKeepTheirSyntax: copies of one SOP Instance UID in
// different transfer syntaxes arriving at once store one object, and the work
// item names that object's syntax.
func TestConcurrentCopiesKeepTheirSyntax(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	svc, _ := newTestService(t, cfg)
	const trials = 5
	for trial := 0; trial < trials; trial++ {
		var wg sync.WaitGroup
		for c := 0; c < 4; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				in := inst{series: "1.11", sop: fmt.Sprintf("1.11.%d", trial), number: trial + 1, implicit: c%2 == 1, pixels: 64 << 10}
				if _, err := svc.Accept(context.Background(), &Incoming{
					Source: Source{Kind: SourceNetwork, CallingAE: "CT1", CalledAE: "NODE"}, TransferSyntaxUID: in.ts(),
					DataSet: bytes.NewReader(in.dataSet()),
				}); err != nil {
					t.Errorf("copy %d: %v", c, err)
				}
			}()
		}
		wg.Wait()
	}
	checkStoredSyntax(t, svc, trials)
}

// TestKeptObjectSyntax: an object stored by an attempt that never queued its
// work item (a crash in between) is kept; the next copy, in another syntax,
// queues the item with the kept object's syntax.
func TestKeptObjectSyntax(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	svc, _ := newTestService(t, cfg)
	first := inst{series: "1.12", sop: "1.12.1"}
	if _, err := svc.objects.Put(context.Background(), jetstream.ObjectMeta{
		Name:    first.sop,
		Headers: nats.Header{"Transfer-Syntax-UID": []string{first.ts()}},
	}, bytes.NewReader(first.dataSet())); err != nil {
		t.Fatal(err)
	}
	second := first
	second.implicit = true
	if r := accept(t, svc, second); r.Outcome != Stored {
		t.Fatalf("outcome %v", r.Outcome)
	}
	checkStoredSyntax(t, svc, 1)
}
