package ingest

import (
	"context"
	"errors"

	"anomalynode/dimse"
)

var _ dimse.StoreHandler = (*Service)(nil)

// ServeStore implements dimse.StoreHandler: it answers success only once the
// instance is durable and queued (or recognised as a duplicate, or routed
// nowhere), A700 when the store is unavailable or the disk is below the
// free-space floor, and C000 for a data set it cannot parse.
func (s *Service) ServeStore(ctx context.Context, req *dimse.StoreRequest) (dimse.Status, error) {
	src := Source{Kind: SourceNetwork}
	if req.Assoc != nil {
		src.CallingAE, src.CalledAE = req.Assoc.CallingAE, req.Assoc.CalledAE
		if req.Assoc.RemoteAddr != nil {
			src.RemoteAddr = req.Assoc.RemoteAddr.String()
		}
	}
	res, err := s.Accept(ctx, &Incoming{
		Source: src, TransferSyntaxUID: req.TransferSyntaxUID,
		SOPClassUID: req.SOPClassUID, SOPInstanceUID: req.SOPInstanceUID, DataSet: req.DataSet,
	})
	if err == nil {
		s.log.Debug().Str("sop", res.SOPInstanceUID).Str("series", res.SeriesInstanceUID).Str("outcome", res.Outcome.String()).
			Str("rule", res.Decision.Rule).Str("calling_ae", src.CallingAE).Msg("ingest: c-store")
		return dimse.StatusSuccess, nil
	}
	return statusFor(ctx, err), err
}

// statusFor maps an Accept error to the C-STORE status the sender sees.
func statusFor(ctx context.Context, err error) dimse.Status {
	switch {
	case errors.Is(err, ErrUnavailable), ctx.Err() != nil, errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return dimse.StatusOutOfResources
	case errors.Is(err, ErrMalformed), errors.Is(err, ErrIncomplete), errors.Is(err, ErrHeaderTooLarge), errors.Is(err, ErrUnsupportedSyntax):
		return dimse.StatusCannotUnderstand
	default:
		return dimse.StatusProcessingFailure
	}
}
