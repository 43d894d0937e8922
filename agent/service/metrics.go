package service

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/bpfattest/bpfattest/agent"
)

// newRegistry returns the metrics of one Server: the agent's own (read from
// agent.Metrics at each scrape), per-RPC counts and latencies (filled by
// the interceptors), build information, and the Go runtime and process
// collectors. One registry per Server: no package-level state.
func newRegistry(a *agent.Agent) (*prometheus.Registry, *rpcMetrics) {
	reg := prometheus.NewRegistry()
	rpc := newRPCMetrics()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newBuildInfo(),
		newAgentCollector(a),
		rpc.started, rpc.handled, rpc.seconds,
	)
	return reg, rpc
}

// newBuildInfo is bpfattest_build_info: 1, labelled with the module
// version, the VCS revision and the Go version the binary was built with.
func newBuildInfo() prometheus.Collector {
	version, revision := "(devel)", "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				revision = s.Value
			}
		}
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "bpfattest_build_info",
		Help:        "Build information of the agent; always 1.",
		ConstLabels: prometheus.Labels{"version": version, "revision": revision, "goversion": runtime.Version()},
	})
	g.Set(1)
	return g
}

// agentCollector exports agent.Metrics and the journal's state at scrape
// time. The metric names are those of the agent's earlier hand-written
// exposition, plus bpfattest_journal_writable.
type agentCollector struct {
	a *agent.Agent

	loads, findings, records, appendFailures, journalWritable        *prometheus.Desc
	quoteRequests, quotes, extend, load, quote, quoteBatch           *prometheus.Desc
	tpmCommands, tpmWait, tpmBusy, quoteShare, pipelineWait, counted *prometheus.Desc
	loadsInFlight                                                    *prometheus.Desc
}

func newAgentCollector(a *agent.Agent) *agentCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &agentCollector{
		a:              a,
		loads:          d("bpfattest_loads_total", "Load requests by outcome and signature verdict.", "outcome", "verdict"),
		findings:       d("bpfattest_observer_findings_total", "Observer findings: programs without a measured load (unmeasured; transient: came and went), programs that left the kernel, lost program events.", "kind"),
		records:        d("bpfattest_log_records", "Events in the current boot's event log (the next record number: each event of a batch record counts)."),
		appendFailures: d("bpfattest_log_append_failures_total", "Appends that failed (log write, fsync or PCR extend)."),
		journalWritable: d("bpfattest_journal_writable",
			"1 while the event log takes appends; 0 once it refuses them: the agent can no longer measure, and loads and quotes fail until it is restarted."),
		quoteRequests: d("bpfattest_quote_requests_total", "Quote requests."),
		quotes:        d("bpfattest_tpm_quotes_total", "TPM quotes made (each serves a batch of requests)."),
		extend:        d("bpfattest_extend_seconds", "Time to append one record: write, fsync, PCR extend."),
		load:          d("bpfattest_load_seconds", "Time of one load request, measurement to result."),
		quote:         d("bpfattest_quote_seconds", "Time of one batch: observer sweep and TPM quote."),
		quoteBatch:    d("bpfattest_quote_batch_size", "Requests served by one TPM quote."),
		tpmCommands: d("bpfattest_tpm_commands_total",
			"TPM turns by class of work (log: extends and PCR reads; quote; enrol: credential activation; clock: identity, readiness, start records); the classes take turns.", "class"),
		tpmWait: d("bpfattest_tpm_wait_seconds", "Time a TPM command waited for its class's turn.", "class"),
		pipelineWait: d("bpfattest_pipeline_wait_seconds",
			"Time work waited for the pipeline lock, which loads (in turns by requester), the quotes' sweep and the observer take one at a time.", "work"),
		tpmBusy: d("bpfattest_tpm_busy_seconds_total", "Time the TPM was held, by class of work (see bpfattest_tpm_commands_total).", "class"),
		quoteShare: d("bpfattest_quote_tpm_share",
			"The share of the TPM's time quotes may take (--quote-tpm-share): requests beyond it wait and share the next quote."),
		loadsInFlight: d("bpfattest_loads_in_flight",
			fmt.Sprintf("Loads admitted and not yet done (measurement queued; bpf() or the result record to come); at most %d, the next waits in its turn.", agent.MaxLoadsInFlight)),
		counted: d("bpfattest_load_requests_counted_total",
			"Load requests counted in a refusals record instead of records of their own: refused (past the requester's --refusal-log-rate) and throttled (turned away before they were measured).", "kind"),
	}
}

func (c *agentCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.loads, c.findings, c.records, c.appendFailures, c.journalWritable,
		c.quoteRequests, c.quotes, c.extend, c.load, c.quote, c.quoteBatch, c.tpmCommands, c.tpmWait, c.tpmBusy, c.quoteShare, c.pipelineWait, c.counted, c.loadsInFlight} {
		ch <- d
	}
}

func (c *agentCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.a.Metrics().Snapshot()
	for _, l := range m.Loads {
		ch <- prometheus.MustNewConstMetric(c.loads, prometheus.CounterValue, float64(l.Count), l.Outcome, l.Verdict)
	}
	for _, k := range []string{"unmeasured", "transient", "unloaded", "events_lost"} {
		ch <- prometheus.MustNewConstMetric(c.findings, prometheus.CounterValue, float64(m.Findings[k]), k)
	}
	writable := 1.0
	if c.a.Writable() != nil {
		writable = 0
	}
	ch <- prometheus.MustNewConstMetric(c.records, prometheus.GaugeValue, float64(m.Records))
	ch <- prometheus.MustNewConstMetric(c.appendFailures, prometheus.CounterValue, float64(m.AppendFailures))
	ch <- prometheus.MustNewConstMetric(c.journalWritable, prometheus.GaugeValue, writable)
	ch <- prometheus.MustNewConstMetric(c.quoteRequests, prometheus.CounterValue, float64(m.QuoteRequests))
	ch <- prometheus.MustNewConstMetric(c.quotes, prometheus.CounterValue, float64(m.Quotes))
	ch <- prometheus.MustNewConstMetric(c.loadsInFlight, prometheus.GaugeValue, float64(m.LoadsInFlight))
	for _, h := range []struct {
		d *prometheus.Desc
		h agent.Histogram
	}{{c.extend, m.Extend}, {c.load, m.Load}, {c.quote, m.Quote}, {c.quoteBatch, m.QuoteBatch}} {
		ch <- constHistogram(h.d, h.h)
	}
	for _, t := range m.TPM {
		ch <- prometheus.MustNewConstMetric(c.tpmCommands, prometheus.CounterValue, float64(t.Commands), t.Class)
		ch <- constHistogram(c.tpmWait, t.Wait, t.Class)
		ch <- prometheus.MustNewConstMetric(c.tpmBusy, prometheus.CounterValue, t.Busy.Seconds(), t.Class)
	}
	for _, p := range m.Pipeline {
		ch <- constHistogram(c.pipelineWait, p.Wait, p.Work)
	}
	ch <- prometheus.MustNewConstMetric(c.quoteShare, prometheus.GaugeValue, c.a.QuoteTPMShare())
	for _, k := range []string{"refused", "throttled"} {
		ch <- prometheus.MustNewConstMetric(c.counted, prometheus.CounterValue, float64(m.Counted[k]), k)
	}
}

func constHistogram(d *prometheus.Desc, h agent.Histogram, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(h.Bounds))
	for i, b := range h.Bounds {
		buckets[b] = h.Counts[i]
	}
	return prometheus.MustNewConstHistogram(d, h.Count, h.Sum, buckets, labels...)
}

// rpcMetrics count and time every call of both gRPC services, with the
// names and labels of the grpc-ecosystem server metrics that dashboards
// already know.
type rpcMetrics struct {
	started *prometheus.CounterVec
	handled *prometheus.CounterVec
	seconds *prometheus.HistogramVec
}

func newRPCMetrics() *rpcMetrics {
	return &rpcMetrics{
		started: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_started_total",
			Help: "RPCs started on the server.",
		}, []string{"grpc_type", "grpc_service", "grpc_method"}),
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_handled_total",
			Help: "RPCs completed on the server, by status code.",
		}, []string{"grpc_type", "grpc_service", "grpc_method", "grpc_code"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "grpc_server_handling_seconds",
			Help:    "Time from an RPC's start to its status, on the server.",
			Buckets: []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
		}, []string{"grpc_type", "grpc_service", "grpc_method"}),
	}
}

func splitMethod(full string) (service, method string) {
	full = strings.TrimPrefix(full, "/")
	if i := strings.LastIndexByte(full, '/'); i >= 0 {
		return full[:i], full[i+1:]
	}
	return "unknown", full
}

func (r *rpcMetrics) observe(typ, fullMethod string, start time.Time, err error) {
	svc, m := splitMethod(fullMethod)
	r.handled.WithLabelValues(typ, svc, m, status.Code(err).String()).Inc()
	r.seconds.WithLabelValues(typ, svc, m).Observe(time.Since(start).Seconds())
}

// unary is the outermost unary interceptor: it sees the status the client
// gets.
func (r *rpcMetrics) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	svc, m := splitMethod(info.FullMethod)
	r.started.WithLabelValues("unary", svc, m).Inc()
	start := time.Now()
	resp, err := h(ctx, req)
	r.observe("unary", info.FullMethod, start, err)
	return resp, err
}

func (r *rpcMetrics) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	typ := "server_stream"
	switch {
	case info.IsClientStream && info.IsServerStream:
		typ = "bidi_stream"
	case info.IsClientStream:
		typ = "client_stream"
	}
	svc, m := splitMethod(info.FullMethod)
	r.started.WithLabelValues(typ, svc, m).Inc()
	start := time.Now()
	err := h(srv, ss)
	r.observe(typ, info.FullMethod, start, err)
	return err
}

// Handler returns the HTTP endpoints of the metrics listener:
//
//   - GET /metrics: the Prometheus text format (OpenMetrics when the scraper
//     asks for it);
//   - GET /healthz: 200 while the agent is not wedged (Agent.Alive), for a
//     liveness probe;
//   - GET /readyz: 200 while the agent can measure and quote (Agent.Ready:
//     the event log is writable and the TPM answers), 503 with the reason
//     otherwise, for a readiness probe.
//
// Each health check answers within probeTimeout.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{
		ErrorLog:            slogPrinter{s.logger},
		ErrorHandling:       promhttp.ContinueOnError,
		EnableOpenMetrics:   true,
		MaxRequestsInFlight: 4,
		Timeout:             scrapeTimeout,
	}))
	mux.HandleFunc("GET /healthz", s.check(s.agent.Alive))
	mux.HandleFunc("GET /readyz", s.check(s.agent.Ready))
	return mux
}

// HealthHandler serves /healthz and /readyz only (as Handler does), for a
// listener of its own: kubelet probes cannot present the client
// certificate a TLS metrics listener requires.
func (s *Server) HealthHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.check(s.agent.Alive))
	mux.HandleFunc("GET /readyz", s.check(s.agent.Ready))
	return mux
}

// probeTimeout bounds a health check: kubelet's default probe timeout is
// 1 s, systemd's watchdog interval is longer. scrapeTimeout bounds a
// scrape, Prometheus' default scrape timeout.
const (
	probeTimeout  = 1 * time.Second
	scrapeTimeout = 10 * time.Second
)

func (s *Server) check(fn func(context.Context) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), probeTimeout)
		defer cancel()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if err := fn(ctx); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ok: %v\n", err)
			return
		}
		fmt.Fprintln(w, "ok")
	}
}

// slogPrinter adapts a slog.Logger to promhttp's error log.
type slogPrinter struct{ l *slog.Logger }

func (p slogPrinter) Println(v ...any) { p.l.Error("metrics", "err", fmt.Sprint(v...)) }

// newRateLimitedCounter counts requests refused by a rate limit.
func newRateLimitedCounter() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bpfattest_rate_limited_total",
		Help: "Requests refused by a rate limit (RESOURCE_EXHAUSTED) before any work: activate (per client), enrol (all clients), identity (per client), load (per requester), load_total (all requesters).",
	}, []string{"limit"})
}

// budgetCollector exports the service's budgets: each limit, what is held
// now, and the requests turned away; the rate limits; the remote
// connections and the timeouts that close them.
type budgetCollector struct {
	s                                      *Server
	limit, inUse, refused, rate            *prometheus.Desc
	conns, connLimit, connsClosed, timeout *prometheus.Desc
}

func newBudgetCollector(s *Server) *budgetCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &budgetCollector{
		s:         s,
		limit:     d("bpfattest_budget_limit", "A budget's limit (calls, streams or bytes), per peer or in total.", "resource", "scope"),
		inUse:     d("bpfattest_budget_in_use", "What all peers hold of a budget now.", "resource"),
		refused:   d("bpfattest_budget_refused_total", "Requests turned away (RESOURCE_EXHAUSTED) at a budget's limit, before any work.", "resource"),
		rate:      d("bpfattest_rate_limit_per_second", "A rate limit's sustained rate (requests, or bytes for events_bytes); negative: no limit.", "limit"),
		conns:     d("bpfattest_remote_conns", "Open remote connections, by whether their TLS and HTTP/2 handshake is done.", "state"),
		connLimit: d("bpfattest_remote_conns_limit", "Open remote connections allowed, per host and in total.", "scope"),
		connsClosed: d("bpfattest_remote_conns_closed_total",
			"Remote connections the agent closed: per_host (past the host's limit), evicted (a connection still in its handshake made room for a new one), full (every open connection had completed its handshake), stalled (the peer took nothing the agent sent for the stall timeout).", "reason"),
		timeout: d("bpfattest_timeout_seconds", "The service's timeouts: handshake, idle, stall (remote), load_receive (local).", "kind"),
	}
}

func (c *budgetCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.limit, c.inUse, c.refused, c.rate, c.conns, c.connLimit, c.connsClosed, c.timeout} {
		ch <- d
	}
}

func (c *budgetCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	for _, p := range []*pool{s.remoteCalls, s.eventsStreams, s.quoteCalls, s.quoteBytes, s.localCalls, s.loadBytes, s.localConns} {
		ch <- prometheus.MustNewConstMetric(c.limit, prometheus.GaugeValue, float64(p.total), p.name, "total")
		ch <- prometheus.MustNewConstMetric(c.limit, prometheus.GaugeValue, float64(p.perPeer), p.name, "peer")
		ch <- prometheus.MustNewConstMetric(c.inUse, prometheus.GaugeValue, float64(p.inUse()), p.name)
		ch <- prometheus.MustNewConstMetric(c.refused, prometheus.CounterValue, float64(p.refused.Load()), p.name)
	}
	o := s.opts
	for limit, r := range map[string]float64{"activate": o.ActivateRate, "identity": o.IdentityRate, "enrol": o.EnrolRate, "load": o.LoadRate, "load_total": o.LoadRateTotal,
		"events_bytes": o.EventsRate, "events_bytes_total": o.EventsRateTotal} {
		ch <- prometheus.MustNewConstMetric(c.rate, prometheus.GaugeValue, r, limit)
	}
	handshaking, established := s.conns.counts()
	ch <- prometheus.MustNewConstMetric(c.conns, prometheus.GaugeValue, float64(handshaking), "handshake")
	ch <- prometheus.MustNewConstMetric(c.conns, prometheus.GaugeValue, float64(established), "established")
	ch <- prometheus.MustNewConstMetric(c.connLimit, prometheus.GaugeValue, float64(o.MaxConnsPerHost), "host")
	ch <- prometheus.MustNewConstMetric(c.connLimit, prometheus.GaugeValue, float64(o.MaxRemoteConns), "total")
	for reason, n := range map[string]uint64{"per_host": s.conns.closedPerHost.Load(), "evicted": s.conns.evicted.Load(),
		"full": s.conns.refusedFull.Load(), "stalled": s.conns.stalled.Load()} {
		ch <- prometheus.MustNewConstMetric(c.connsClosed, prometheus.CounterValue, float64(n), reason)
	}
	for kind, d := range map[string]time.Duration{"handshake": o.HandshakeTimeout, "idle": o.RemoteIdleTimeout, "stall": o.StallTimeout, "load_receive": o.LoadReceiveTimeout,
		"refusal_delay": max(o.RefusalDelay, 0)} {
		ch <- prometheus.MustNewConstMetric(c.timeout, prometheus.GaugeValue, d.Seconds(), kind)
	}
}
