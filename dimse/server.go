package dimse

import (
	"compress/flate"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"anomalynode/internal/dcm"
)

// Server is a DICOM SCP for C-ECHO and C-STORE. Each association runs in one
// goroutine; a panic or protocol error aborts that association only.
type Server struct {
	h   StoreHandler
	log zerolog.Logger
	m   *metrics
	// metricsErr is a failed metric registration, returned by Serve: the
	// constructor has no error to return it with.
	metricsErr error

	policy atomic.Pointer[policy]
	nextID atomic.Uint64

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*ulConn]context.CancelFunc
	open      int // connections holding a slot
	closing   bool
	wg        sync.WaitGroup
}

// policy is a ServerConfig with defaults applied and lookups prepared; it is
// replaced whole by SetPolicy so an association sees one consistent policy.
type policy struct {
	cfg     ServerConfig
	sop     map[string]bool
	ts      []string
	callers map[string][]string // AE -> allowed hosts ("" = any)
}

func newPolicy(cfg ServerConfig) *policy {
	if cfg.Addr == "" {
		cfg.Addr = ":11112"
	}
	if cfg.AETitle == "" {
		cfg.AETitle = "ANOMALYNODE"
	}
	if cfg.MaxAssociations <= 0 {
		cfg.MaxAssociations = 32
	}
	if cfg.MaxPDU == 0 {
		cfg.MaxPDU = 1 << 20
	}
	if len(cfg.SOPClasses) == 0 {
		cfg.SOPClasses = DefaultSOPClasses
	}
	if len(cfg.TransferSyntaxes) == 0 {
		cfg.TransferSyntaxes = DefaultTransferSyntaxes
	}
	if cfg.ARTIMTimeout <= 0 {
		cfg.ARTIMTimeout = 30 * time.Second
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 5 * time.Minute
	}
	if cfg.DIMSETimeout <= 0 {
		cfg.DIMSETimeout = 2 * time.Minute
	}
	if cfg.ShutdownGrace <= 0 {
		cfg.ShutdownGrace = 10 * time.Second
	}
	p := &policy{cfg: cfg, sop: map[string]bool{}, ts: cfg.TransferSyntaxes}
	for _, s := range cfg.SOPClasses {
		p.sop[s] = true
	}
	if len(cfg.AllowedCallers) > 0 {
		p.callers = map[string][]string{}
		for _, c := range cfg.AllowedCallers {
			p.callers[c.AETitle] = append(p.callers[c.AETitle], c.Host)
		}
	}
	return p
}

// NewServer returns a server answering C-STORE with h. reg may be nil; a
// metric that cannot be registered there is Serve's error.
func NewServer(cfg ServerConfig, h StoreHandler, log zerolog.Logger, reg prometheus.Registerer) *Server {
	m, merr := newMetrics(reg)
	s := &Server{
		h:          h,
		log:        log.With().Str("component", "dimse").Logger(),
		m:          m,
		metricsErr: merr,
		listeners:  map[net.Listener]struct{}{},
		conns:      map[*ulConn]context.CancelFunc{},
	}
	s.policy.Store(newPolicy(cfg))
	return s
}

// SetPolicy replaces the acceptance policy (AE titles, callers, SOP classes,
// transfer syntaxes, limits, timers, TLS) for associations negotiated from now
// on; open associations keep the policy they were accepted under.
func (s *Server) SetPolicy(cfg ServerConfig) {
	s.policy.Store(newPolicy(cfg))
}

// Run listens on the configured address and serves until ctx is cancelled,
// then shuts down gracefully within ShutdownGrace.
func (s *Server) Run(ctx context.Context) error {
	return s.ListenAndServe(ctx, s.policy.Load().cfg.Addr)
}

// ListenAndServe listens on addr (TCP) and calls Serve.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("dimse: listen: %w", err)
	}
	return s.Serve(ctx, l)
}

// Serve accepts associations on l until ctx is cancelled (then it shuts down
// gracefully within ShutdownGrace and returns nil) or Shutdown is called (then
// it returns ErrServerClosed). It closes l.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	if s.metricsErr != nil {
		_ = l.Close()
		return s.metricsErr
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		_ = l.Close()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	stopped := make(chan struct{})
	var shutdownErr error
	stop := context.AfterFunc(ctx, func() {
		defer close(stopped)
		sctx, cancel := context.WithTimeout(context.Background(), s.policy.Load().cfg.ShutdownGrace)
		defer cancel()
		shutdownErr = s.Shutdown(sctx)
	})
	defer stop()
	s.log.Info().Str("addr", l.Addr().String()).Msg("DICOM listener started")
	var backoff time.Duration
	for {
		conn, err := l.Accept()
		if err != nil {
			if s.isClosing() {
				if ctx.Err() != nil {
					<-stopped
					if shutdownErr != nil {
						return fmt.Errorf("dimse: shutdown: %w", shutdownErr)
					}
					return nil
				}
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("dimse: accept: %w", err)
		}
		backoff = 0
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			_ = conn.Close()
			continue
		}
		s.open++
		s.wg.Add(1)
		s.mu.Unlock()
		s.m.active.Inc()
		go s.serveConn(conn)
	}
}

// openConns counts connections holding a slot: every accepted connection
// does, from accept until it is closed (or aborted), so silent peers count too
// until ARTIM frees them.
func (s *Server) openConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// Shutdown stops accepting, lets open associations finish until ctx is done,
// then aborts those still open. It returns ctx's error when it had to abort.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for l := range s.listeners {
		_ = l.Close()
		delete(s.listeners, l)
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	n := len(s.conns)
	for u, cancel := range s.conns {
		cancel()
		go u.abort(abortSourceUser, abortReasonNone)
	}
	s.mu.Unlock()
	s.log.Warn().Int("associations", n).Msg("shutdown deadline reached, aborting open associations")
	<-done
	return ctx.Err()
}

// association is the server side of one association.
type association struct {
	s      *Server
	u      *ulConn
	pol    *policy
	info   AssociationInfo
	ctx    context.Context
	log    zerolog.Logger
	accept map[byte]PresentationContext // accepted contexts by ID
	// stored and failed count this association's C-STOREs, for its log line.
	stored, failed int
	// freeSlot gives back the association slot; called before the connection
	// is closed so a peer that sees the close can associate again at once.
	freeSlot func()
}

// newAssociation prepares the server side of a new connection.
func (s *Server) newAssociation(ctx context.Context, conn net.Conn) *association {
	pol := s.policy.Load()
	remote := conn.RemoteAddr()
	if pol.cfg.TLS != nil {
		// Wrapped before anyone else sees the connection; the handshake runs
		// at the start of run, under ARTIM.
		conn = tls.Server(conn, pol.cfg.TLS)
	}
	u := newULConn(conn, pol.cfg.MaxPDU, sta2AwaitAssocRQ)
	u.writeTimeout = pol.cfg.DIMSETimeout
	a := &association{s: s, u: u, pol: pol, ctx: ctx, freeSlot: func() {}}
	a.info.ID = s.nextID.Add(1)
	a.info.RemoteAddr = remote
	a.log = s.log.With().Uint64("assoc", a.info.ID).Str("remote", remote.String()).Logger()
	return a
}

func (s *Server) serveConn(conn net.Conn) {
	ctx, cancel := context.WithCancel(context.Background())
	a := s.newAssociation(ctx, conn)
	u := a.u
	s.mu.Lock()
	s.conns[u] = cancel
	s.mu.Unlock()
	var once sync.Once
	a.freeSlot = func() {
		once.Do(func() {
			s.mu.Lock()
			s.open--
			s.mu.Unlock()
			s.m.active.Dec()
		})
	}
	defer func() {
		cancel()
		a.freeSlot()
		_ = conn.Close()
		s.mu.Lock()
		delete(s.conns, u)
		s.mu.Unlock()
		s.wg.Done()
	}()
	defer func() {
		if r := recover(); r != nil {
			a.log.Error().Str("panic", fmt.Sprint(r)).Str("stack", string(debug.Stack())).Msg("association panicked; aborting it")
			s.m.associations.WithLabelValues("aborted").Inc()
			u.abort(abortSourceUser, abortReasonNone)
		}
	}()
	started := time.Now()
	outcome, err := a.run()
	s.m.associations.WithLabelValues(outcome).Inc()
	ev := a.log.Info()
	if err != nil {
		ev = a.log.Warn().Err(err)
	}
	ev.Str("outcome", outcome).Str("called_ae", a.info.CalledAE).
		Int("stored", a.stored).Int("failed", a.failed).Dur("duration", time.Since(started)).Msg("association ended")
}

// run negotiates and serves the association and returns its outcome label.
func (a *association) run() (string, error) {
	u, pol := a.u, a.pol
	if tc, ok := u.conn.(*tls.Conn); ok {
		_ = tc.SetDeadline(time.Now().Add(pol.cfg.ARTIMTimeout))
		if err := tc.HandshakeContext(a.ctx); err != nil {
			a.freeSlot()
			return "failed", fmt.Errorf("dimse: TLS handshake: %w", err)
		}
		_ = tc.SetDeadline(time.Time{})
		a.info.PeerCertificates = tc.ConnectionState().PeerCertificates
	}
	u.readTimeout = pol.cfg.ARTIMTimeout
	// The state machine admits only A-ASSOCIATE-RQ in Sta2 (or an abort,
	// which readPDU passes on as such).
	typ, body, err := u.readPDU()
	if err != nil {
		return a.fail(err)
	}
	if typ == pduAbort {
		return "aborted", nil
	}
	rq, err := decodeAssociate(pduAssociateRQ, body)
	if err != nil {
		return a.fail(err)
	}
	a.info.CallingAE, a.info.CalledAE = rq.CallingAE, rq.CalledAE
	a.info.ImplementationClassUID, a.info.ImplementationVersion = rq.ImplClassUID, rq.ImplVersion
	a.info.MaxPDU = rq.MaxPDU
	a.log = a.log.With().Str("calling_ae", rq.CallingAE).Logger()
	if result, source, reason, why := a.check(rq); result != 0 {
		if err := u.write(evSendAssocRJ, encodeReject(result, source, reason)); err != nil {
			return "rejected", err
		}
		a.freeSlot()
		a.awaitClose()
		return "rejected", fmt.Errorf("%w: %s", ErrAssociationRejected, why)
	}
	ac := a.negotiate(rq)
	u.peerMax = rq.MaxPDU
	if err := u.write(evSendAssocAC, encodeAssociate(pduAssociateAC, ac)); err != nil {
		return "failed", err
	}
	a.log.Debug().Int("contexts", len(a.accept)).Msg("association accepted")
	a.s.m.associations.WithLabelValues("accepted").Inc()
	return a.serve()
}

// fail aborts after a protocol error, or just ends after a timeout or close.
func (a *association) fail(err error) (string, error) {
	a.freeSlot()
	a.u.st, _ = a.u.st.next(evSendAbort)
	var pe *pduError
	var ae *AbortError
	switch {
	case errors.As(err, &pe):
		a.u.abort(abortSourceProvider, pe.Reason)
		return "aborted", err
	case errors.As(err, &ae):
		return "aborted", nil
	case errors.Is(err, errTransportClosed):
		return "closed", nil
	case errors.Is(err, ErrTimeout):
		a.u.abort(abortSourceProvider, abortReasonNone)
		return "timeout", err
	}
	a.u.abort(abortSourceUser, abortReasonNone)
	return "failed", err
}

// awaitClose waits (ARTIM) for the peer to close after reject or release.
func (a *association) awaitClose() {
	_ = a.u.conn.SetReadDeadline(time.Now().Add(a.pol.cfg.ARTIMTimeout))
	_, _ = io.Copy(io.Discard, io.LimitReader(a.u.br, 1<<16))
}

// check applies the acceptance policy; result 0 accepts.
func (a *association) check(rq *associate) (result, source, reason byte, why string) {
	cfg := a.pol.cfg
	switch {
	case rq.ProtocolVersion&1 == 0:
		return RejectPermanent, RejectSourceServiceProviderACSE, RejectReasonProtocolVersionUnsupported, "protocol version not supported"
	case rq.AppContext != ApplicationContextName:
		return RejectPermanent, RejectSourceServiceUser, RejectReasonAppContextNotSupported, fmt.Sprintf("application context %q", rq.AppContext)
	case cfg.CheckCalledAE && rq.CalledAE != cfg.AETitle:
		return RejectPermanent, RejectSourceServiceUser, RejectReasonCalledAENotRecognized, fmt.Sprintf("called AE %q is not ours", rq.CalledAE)
	case !a.callerAllowed(rq.CallingAE):
		return RejectPermanent, RejectSourceServiceUser, RejectReasonCallingAENotRecognized, fmt.Sprintf("calling AE %q not allowed", rq.CallingAE)
	case a.s.isClosing():
		return RejectTransient, RejectSourceServiceProviderPres, RejectReasonTemporaryCongestion, "shutting down"
	case a.s.openConns() > cfg.MaxAssociations:
		return RejectTransient, RejectSourceServiceProviderPres, RejectReasonLocalLimitExceeded, fmt.Sprintf("more than %d associations", cfg.MaxAssociations)
	}
	return 0, 0, 0, ""
}

func (a *association) callerAllowed(ae string) bool {
	if a.pol.callers == nil {
		return true
	}
	hosts, ok := a.pol.callers[ae]
	if !ok {
		return false
	}
	remote := a.info.RemoteAddr
	var rip net.IP
	if ta, ok := remote.(*net.TCPAddr); ok {
		rip = ta.IP
	} else if h, _, err := net.SplitHostPort(remote.String()); err == nil {
		rip = net.ParseIP(h)
	}
	for _, h := range hosts {
		if h == "" {
			return true
		}
		if ip := net.ParseIP(h); ip != nil {
			if rip != nil && ip.Equal(rip) {
				return true
			}
			continue
		}
		lctx, cancel := context.WithTimeout(a.ctx, 5*time.Second)
		addrs, err := net.DefaultResolver.LookupIPAddr(lctx, h)
		cancel()
		if err != nil {
			continue
		}
		for _, ad := range addrs {
			if rip != nil && ad.IP.Equal(rip) {
				return true
			}
		}
	}
	return false
}

// negotiate answers each proposed presentation context and the user
// information items.
func (a *association) negotiate(rq *associate) *associate {
	cfg := a.pol.cfg
	ac := &associate{
		ProtocolVersion: 1,
		CalledAE:        rq.CalledAE,
		CallingAE:       rq.CallingAE,
		AppContext:      ApplicationContextName,
		MaxPDU:          cfg.MaxPDU,
		ImplClassUID:    ImplementationClassUID,
		ImplVersion:     ImplementationVersionName,
	}
	a.accept = map[byte]PresentationContext{}
	var refused []string
	for _, pc := range rq.Contexts {
		res := PresentationContext{ID: pc.ID, AbstractSyntax: pc.AbstractSyntax}
		switch {
		case pc.ID%2 == 0:
			res.Result = ContextNoReason
		case !a.pol.sop[pc.AbstractSyntax]:
			res.Result = ContextAbstractSyntaxNotSupported
		default:
			res.Result = ContextTransferSyntaxesNotSupported
			for _, ours := range a.pol.ts { // our preference order
				if contains(pc.TransferSyntaxes, ours) {
					res.Result, res.TransferSyntax = ContextAccepted, ours
					break
				}
			}
		}
		if _, dup := a.accept[pc.ID]; dup {
			res.Result, res.TransferSyntax = ContextNoReason, ""
		}
		if res.Result == ContextAccepted {
			a.accept[pc.ID] = res
		} else {
			refused = append(refused, fmt.Sprintf("%d: %s [%s]: %s", pc.ID, pc.AbstractSyntax,
				strings.Join(pc.TransferSyntaxes, ", "), contextResultText(res.Result)))
		}
		ac.Contexts = append(ac.Contexts, res)
	}
	if len(refused) > 0 {
		// Once per association: the sender only sees a failed send, and the
		// operator needs the syntaxes to change dimse.sop_classes or
		// dimse.transfer_syntaxes (or the sender's settings).
		a.log.Warn().Strs("refused", refused).Int("accepted", len(a.accept)).
			Msg("presentation contexts refused (id: abstract syntax [proposed transfer syntaxes]: reason)")
	}
	if rq.HasAsync {
		// We perform operations one at a time: answer a window of 1/1.
		ac.HasAsync, ac.AsyncInvoked, ac.AsyncPerformed = true, 1, 1
	}
	for _, r := range rq.Roles {
		// The peer acting as SCU is what we serve; we never act as SCU on an
		// association we accepted, so the SCP role is declined.
		ac.Roles = append(ac.Roles, roleSelection{SOPClassUID: r.SOPClassUID, SCU: r.SCU, SCP: false})
	}
	return ac
}

// contextResultText names a presentation context result for the log.
func contextResultText(r byte) string {
	switch r {
	case ContextUserRejected:
		return "rejected by user"
	case ContextAbstractSyntaxNotSupported:
		return "abstract syntax (SOP class) not supported"
	case ContextTransferSyntaxesNotSupported:
		return "none of the transfer syntaxes supported"
	}
	return "no reason (an even or duplicate context ID)"
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// serve runs the DIMSE message loop of an established association.
func (a *association) serve() (string, error) {
	u, cfg := a.u, a.pol.cfg
	for {
		u.readTimeout = cfg.IdleTimeout
		ctxID, cmd, err := u.readCommand()
		if err != nil {
			var ev *pduEvent
			if errors.As(err, &ev) {
				switch ev.Type {
				case pduReleaseRQ:
					if err := u.write(evSendReleaseRP, encodeRelease(pduReleaseRP)); err != nil {
						return "failed", err
					}
					// The association is over: let the next one in while the
					// peer closes the transport.
					a.freeSlot()
					a.awaitClose()
					return "released", nil
				case pduAbort:
					return "aborted", nil
				}
				return a.fail(malformed(abortUnexpectedPDU, "unexpected PDU type %d", ev.Type))
			}
			if a.ctx.Err() != nil {
				return "aborted", fmt.Errorf("dimse: association aborted at shutdown")
			}
			return a.fail(err)
		}
		u.readTimeout = cfg.DIMSETimeout
		pc, ok := a.accept[ctxID]
		if !ok {
			return a.fail(malformed(abortUnexpectedPar, "command on presentation context %d, which was not accepted", ctxID))
		}
		if err := a.dispatch(pc, cmd); err != nil {
			if a.ctx.Err() != nil {
				return "aborted", fmt.Errorf("dimse: association aborted at shutdown")
			}
			return a.fail(err)
		}
	}
}

// dispatch answers one command.
func (a *association) dispatch(pc PresentationContext, cmd *command) error {
	switch cmd.Field {
	case cmdCEchoRQ:
		if cmd.hasDataSet() {
			if err := (&dataReader{u: a.u, ctxID: pc.ID}).drain(); err != nil {
				return err
			}
		}
		return a.respond(pc.ID, &command{Field: cmdCEchoRSP, MessageIDRespondedTo: cmd.MessageID,
			AffectedSOPClassUID: cmd.AffectedSOPClassUID, DataSetType: commandDataSetNone, Status: StatusSuccess})
	case cmdCStoreRQ:
		return a.store(pc, cmd)
	case cmdCCancelRQ:
		return nil // nothing of ours is cancellable: operations complete before the next is read
	default:
		if cmd.hasDataSet() {
			if err := (&dataReader{u: a.u, ctxID: pc.ID}).drain(); err != nil {
				return err
			}
		}
		if cmd.Field&0x8000 != 0 {
			return malformed(abortUnexpectedPar, "response command 0x%04X sent to an SCP", cmd.Field)
		}
		return a.respond(pc.ID, &command{Field: cmd.Field | 0x8000, MessageIDRespondedTo: cmd.MessageID,
			AffectedSOPClassUID: cmd.AffectedSOPClassUID, DataSetType: commandDataSetNone,
			Status: StatusUnrecognizedOperation, ErrorComment: "only C-ECHO and C-STORE are supported"})
	}
}

func (a *association) respond(ctxID byte, rsp *command) error {
	return a.u.sendMessage(ctxID, rsp.encode(), nil, 0)
}

// store runs the handler on one C-STORE and answers with its status.
func (a *association) store(pc PresentationContext, cmd *command) error {
	start := time.Now()
	dr := &dataReader{u: a.u, ctxID: pc.ID}
	status, comment := StatusSuccess, ""
	switch {
	case !cmd.hasDataSet():
		status, comment = StatusCannotUnderstand, "C-STORE without a data set"
	case cmd.AffectedSOPClassUID != pc.AbstractSyntax:
		status, comment = StatusSOPClassNotSupported, "SOP class differs from the presentation context's"
	case cmd.AffectedSOPInstanceUID == "":
		status, comment = StatusCannotUnderstand, "C-STORE without an affected SOP instance UID"
	default:
		var err error
		status, err = a.callHandler(pc, cmd, dr)
		if err != nil {
			comment = err.Error()
			if status.IsSuccess() {
				status = StatusProcessingFailure
			}
		}
	}
	if cmd.hasDataSet() {
		if err := dr.drain(); err != nil {
			return err
		}
	}
	a.s.m.storeBytes.Add(float64(dr.n))
	a.s.m.stores.WithLabelValues(statusClass(status)).Inc()
	a.s.m.storeSeconds.Observe(time.Since(start).Seconds())
	if status.IsFailure() {
		a.failed++
	} else {
		a.stored++
	}
	if !status.IsSuccess() {
		a.log.Warn().Str("sop_instance_uid", cmd.AffectedSOPInstanceUID).Stringer("status", status).Str("comment", comment).Msg("C-STORE not successful")
	}
	return a.respond(pc.ID, &command{
		Field: cmdCStoreRSP, MessageIDRespondedTo: cmd.MessageID,
		AffectedSOPClassUID: cmd.AffectedSOPClassUID, AffectedSOPInstanceUID: cmd.AffectedSOPInstanceUID,
		DataSetType: commandDataSetNone, Status: status, ErrorComment: sanitizeComment(comment),
	})
}

// callHandler runs the handler; a panic propagates (and aborts the association)
// after the handler's context is cancelled.
func (a *association) callHandler(pc PresentationContext, cmd *command, dr *dataReader) (Status, error) {
	var ds io.Reader = dr
	ts := pc.TransferSyntax
	if ts == dcm.DeflatedExplicitVRLittleEndian {
		fr := flate.NewReader(dr)
		defer fr.Close()
		ds, ts = fr, dcm.ExplicitVRLittleEndian
	}
	req := &StoreRequest{
		Assoc:                   &a.info,
		MessageID:               cmd.MessageID,
		SOPClassUID:             cmd.AffectedSOPClassUID,
		SOPInstanceUID:          cmd.AffectedSOPInstanceUID,
		TransferSyntaxUID:       ts,
		Priority:                cmd.Priority,
		MoveOriginatorAE:        cmd.MoveOriginatorAE,
		MoveOriginatorMessageID: cmd.MoveOriginatorMessageID,
		DataSet:                 ds,
	}
	hctx, cancel := context.WithTimeout(a.ctx, a.pol.cfg.DIMSETimeout)
	defer cancel()
	return a.s.h.ServeStore(hctx, req)
}

// sanitizeComment keeps an ErrorComment to LO's repertoire: no backslashes or
// control characters.
func sanitizeComment(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == '\\' || r > 0x7e {
			return ' '
		}
		return r
	}, s)
}
