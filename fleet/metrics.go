package fleet

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bpfattest/bpfattest/verifier"
)

// metrics are the service's Prometheus metrics (namespace
// bpfattest_fleet), registered on Config.Registerer.
type metrics struct {
	agents        *prometheus.GaugeVec
	verifications *prometheus.CounterVec
	latency       prometheus.Histogram
	lateness      prometheus.Histogram
	queueLag      prometheus.Gauge
	due           prometheus.Gauge
	backlog       prometheus.Gauge
	failedHooks   prometheus.Gauge
	deliveries    *prometheus.CounterVec
	lost          prometheus.Counter
	storeErrors   prometheus.Counter
	conns         prometheus.Gauge
	dials         prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns = "bpfattest_fleet"
	m := &metrics{
		agents: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "agents",
			Help: "Registered agents by the status of their latest verdict (none: not yet verified)."}, []string{"status"}),
		verifications: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "verifications_total",
			Help: "Verifications recorded by this node, by verdict status (rate: verifications per second)."}, []string{"status"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "verification_seconds",
			Help:    "Time from claiming an agent (or receiving its push) to its recorded verdict.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}),
		lateness: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "start_lateness_seconds",
			Help:    "How long after its due time a verification started.",
			Buckets: []float64{.1, .5, 1, 2, 5, 10, 30, 60, 120, 300}}),
		queueLag: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "queue_lag_seconds",
			Help: "How late the most overdue pull agent is (0 when none is overdue)."}),
		due: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "agents_due",
			Help: "Pull agents due (or overdue) now."}),
		backlog: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "webhook_backlog",
			Help: "Webhook deliveries waiting to be made."}),
		failedHooks: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "webhook_failed",
			Help: "Webhook deliveries given up after their last attempt (kept until pruned)."}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "webhook_attempts_total",
			Help: "Webhook delivery attempts by this node, by result (ok, retry, failed)."}, []string{"result"}),
		lost: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "leases_lost_total",
			Help: "Verifications discarded because the agent's lease or state version moved on."}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "store_errors_total",
			Help: "Verifications that could not be recorded."}),
		conns: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "agent_connections",
			Help: "Pooled connections to pull agents."}),
		dials: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "agent_dials",
			Help: "Connections to pull agents dialled since start (stays near the fleet size when connections are reused)."}),
	}
	for _, st := range []string{verifier.StatusCompliant, verifier.StatusNonCompliant, verifier.StatusUnverified, verifier.StatusUnreachable} {
		m.verifications.WithLabelValues(st)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.agents, m.verifications, m.latency, m.lateness, m.queueLag, m.due, m.backlog,
		m.failedHooks, m.deliveries, m.lost, m.storeErrors, m.conns, m.dials} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) observe(status string, d, late time.Duration) {
	m.verifications.WithLabelValues(status).Inc()
	m.latency.Observe(d.Seconds())
	m.lateness.Observe(max(late, 0).Seconds())
}
