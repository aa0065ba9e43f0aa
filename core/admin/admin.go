// Package admin is Weir's admin HTTP server, on telemetry.metrics_address:
//
//	/metrics        Prometheus metrics (only there)
//	/healthz        200 "ok" while the process serves HTTP (liveness)
//	/readyz         200 "ready" when every stage started and the pipeline is
//	                not shutting down; 503 with the reason otherwise
//	/               status page: the running pipeline graph with live
//	                per-stage counters (plain HTML, refreshes itself)
//	/-/reload       POST, from a loopback address only: hot reload, as SIGHUP
//	/debug/pprof/   net/http/pprof, only with telemetry.pprof: true
//
// Every other path is 404.
package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/weir-flow/weir/core/pipeline"
)

// Options configure the server.
type Options struct {
	// Address is the TCP listen address, "host:port".
	Address string
	// Pprof serves /debug/pprof/.
	Pprof bool
	// Gatherer is what /metrics serves.
	Gatherer prometheus.Gatherer
	// Logger receives the server's errors. Default: discard.
	Logger *slog.Logger
	// Version is shown on the status page.
	Version string
}

// Status is what the status page shows; the running command publishes it
// with [Server.SetPipeline].
type Status struct {
	// Name is pipeline.name.
	Name string
	// Stats returns the running stages' counters, in pipeline order.
	Stats func() []pipeline.Snapshot
	// Ready returns nil when the pipeline is ready, else why not.
	Ready func() error
}

// Server is the admin HTTP server. Create it with [Listen].
type Server struct {
	opts    Options
	ln      net.Listener
	srv     *http.Server
	started time.Time
	status  atomic.Pointer[Status]
	// notReady overrides readiness (before the pipeline exists, while it
	// shuts down); nil defers to Status.Ready.
	notReady atomic.Pointer[string]
	reload   atomic.Pointer[func(context.Context) (string, error)]
	reloads  atomic.Uint64
}

// Listen binds the address; the server answers once Serve runs. Until
// SetPipeline, /readyz answers 503 "starting".
func Listen(opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", opts.Address)
	if err != nil {
		return nil, fmt.Errorf("telemetry.metrics_address: %w", err)
	}
	s := &Server{opts: opts, ln: ln, started: time.Now()}
	s.SetNotReady("starting: the pipeline is being built")
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{ErrorLog: slogPrinter{opts.Logger}}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("POST /-/reload", s.reloadHandler)
	mux.HandleFunc("GET /{$}", s.statusPage)
	if opts.Pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return s, nil
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve answers requests until Close; run it in its own goroutine.
func (s *Server) Serve() {
	if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		s.opts.Logger.Error("admin server", "err", err)
	}
}

// Close stops the server at once.
func (s *Server) Close() error { return s.srv.Close() }

// SetPipeline publishes the running pipeline and clears SetNotReady.
func (s *Server) SetPipeline(st *Status) {
	s.status.Store(st)
	s.notReady.Store(nil)
}

// SetNotReady makes /readyz answer 503 with reason until SetPipeline.
func (s *Server) SetNotReady(reason string) { s.notReady.Store(&reason) }

// SetReload sets what POST /-/reload calls; it returns a summary or why
// the reload was refused.
func (s *Server) SetReload(f func(context.Context) (string, error)) { s.reload.Store(&f) }

// ready returns nil or why the pipeline is not ready.
func (s *Server) ready() error {
	if r := s.notReady.Load(); r != nil {
		return errors.New(*r)
	}
	st := s.status.Load()
	if st == nil || st.Ready == nil {
		return errors.New("starting")
	}
	return st.Ready()
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := s.ready(); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "not ready:", err)
		return
	}
	fmt.Fprintln(w, "ready")
}

// reloadHandler runs a reload for a local client: the endpoint changes the
// running pipeline, so it is not offered to the network the metrics are
// scraped from.
func (s *Server) reloadHandler(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil || !ap.Addr().Unmap().IsLoopback() {
		http.Error(w, "reload is only accepted from a loopback address", http.StatusForbidden)
		return
	}
	f := s.reload.Load()
	if f == nil {
		http.Error(w, "not running yet", http.StatusServiceUnavailable)
		return
	}
	summary, err := (*f)(r.Context())
	if err != nil {
		http.Error(w, err.Error(), http.StatusUnprocessableEntity)
		return
	}
	s.reloads.Add(1)
	fmt.Fprintln(w, summary)
}

// slogPrinter adapts a slog.Logger to promhttp's logger.
type slogPrinter struct{ l *slog.Logger }

func (p slogPrinter) Println(v ...any) { p.l.Error(fmt.Sprint(v...)) }
