package output

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/rs/zerolog"

	"anomalynode/dimse"
	"anomalynode/internal/dcm"
)

// CStore delivers objects by C-STORE to a DICOM AE, one association per
// object. An object counts as delivered only when the SCP answers the
// C-STORE for that instance with a success or warning status.
type CStore struct {
	// Addr is HOST:PORT of the SCP.
	Addr string
	// Config holds AE titles, TLS and timeouts; its presentation contexts are
	// chosen per object.
	Config dimse.ClientConfig
	// Log receives warning statuses (delivered, but worth knowing).
	Log zerolog.Logger
}

// Send stores obj and releases the association.
func (c *CStore) Send(ctx context.Context, obj *Object) error {
	ds, err := obj.DataSet()
	if err != nil {
		return err
	}
	cfg := c.Config
	cfg.Contexts = dimse.ContextsFor([][2]string{{obj.SOPClassUID, obj.TransferSyntaxUID}})
	cl, err := dimse.Dial(ctx, c.Addr, cfg)
	if err != nil {
		return fmt.Errorf("output: c-store to %s: %w", c.Addr, err)
	}
	st, err := cl.Store(ctx, dimse.StoreItem{
		SOPClassUID: obj.SOPClassUID, SOPInstanceUID: obj.SOPInstanceUID,
		TransferSyntaxUID: obj.TransferSyntaxUID, DataSet: ds,
	})
	if err != nil {
		var se *dimse.StatusError
		if errors.As(err, &se) {
			_ = cl.Release(ctx)
		} else {
			_ = cl.Abort()
		}
		return fmt.Errorf("output: c-store %s to %s: %w", obj.SOPInstanceUID, c.Addr, err)
	}
	// The response is in: a failed release does not undo the delivery.
	_ = cl.Release(ctx)
	switch {
	case st.IsSuccess():
		return nil
	case st.IsWarning():
		c.Log.Warn().Str("sop_instance_uid", obj.SOPInstanceUID).Str("status", st.String()).Msg("export: stored with a warning status")
		return nil
	default:
		return fmt.Errorf("output: c-store %s to %s: %w", obj.SOPInstanceUID, c.Addr, &dimse.StatusError{Status: st})
	}
}

// Folder delivers objects as Part 10 files under Dir/<study>/<series>/<sop>.dcm,
// written to a temporary name, synced and renamed, so a reader never sees a
// partial file.
type Folder struct {
	Dir string
}

// Send writes obj.
func (f *Folder) Send(ctx context.Context, obj *Object) error {
	dir := filepath.Join(f.Dir, dcm.FileName(obj.StudyInstanceUID), dcm.FileName(obj.SeriesInstanceUID))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("output: folder: %w", err)
	}
	final := filepath.Join(dir, dcm.FileName(obj.SOPInstanceUID)+".dcm")
	tmp, err := os.CreateTemp(dir, ".partial-*")
	if err != nil {
		return fmt.Errorf("output: folder: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(obj.Part10); err != nil {
		tmp.Close()
		return fmt.Errorf("output: folder: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("output: folder: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("output: folder: %w", err)
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return fmt.Errorf("output: folder: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// Multi delivers to several senders in turn (a destination with both an AE
// and a folder); it is delivered when all of them have it.
type Multi []Sender

// Send calls every sender; the first error stops it (a retry repeats them all,
// which is safe because every sender replaces an object with the same UID).
func (m Multi) Send(ctx context.Context, obj *Object) error {
	for _, s := range m {
		if err := s.Send(ctx, obj); err != nil {
			return err
		}
	}
	return nil
}
