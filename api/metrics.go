package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/authz"
)

// Metrics are the server's Prometheus metrics, in a registry of their own.
type Metrics struct {
	reg       *prometheus.Registry
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	decisions *prometheus.CounterVec
}

// IndexStats is what /metrics reads from the decision engine (authz.Index).
type IndexStats interface {
	Stats() authz.Stats
	Health() error
}

// NewMetrics registers the server's metrics. Index and ledger may be nil.
func NewMetrics(ix IndexStats, l *audit.Ledger) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rampart_http_requests_total", Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "rampart_http_request_duration_seconds", Help: "HTTP request latency by route.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}, []string{"route"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rampart_decisions_total", Help: "Access decisions by result (allowed, denied, unavailable).",
		}, []string{"result"}),
	}
	m.reg.MustRegister(m.requests, m.latency, m.decisions, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if ix != nil {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "rampart_grants_active", Help: "Active grants held by the decision index.",
		}, func() float64 { return float64(ix.Stats().ActiveGrants) }))
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "rampart_decision_index_healthy", Help: "1 when the decision index is fresh, 0 when it fails closed.",
		}, func() float64 {
			if ix.Health() != nil {
				return 0
			}
			return 1
		}))
	}
	if l != nil {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "rampart_ledger_entries", Help: "Entries in the audit ledger known to this replica.",
		}, func() float64 { return float64(l.Size()) }))
	}
	return m
}

// Handler serves the metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Registry lets other components (the sweeper, the checkpointer) register their metrics.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

func (m *Metrics) decision(d authz.Decision) {
	switch {
	case d.Unavailable:
		m.decisions.WithLabelValues("unavailable").Inc()
	case d.Allowed:
		m.decisions.WithLabelValues("allowed").Inc()
	default:
		m.decisions.WithLabelValues("denied").Inc()
	}
}

func (m *Metrics) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: 200}
		defer func() { // deferred: aborted streams count too, with status "aborted"
			p := recover()
			route := r.Pattern
			if route == "" || route == "/" {
				route = "unmatched"
			}
			status := strconv.Itoa(sw.status)
			if p != nil {
				status = "aborted"
			}
			m.requests.WithLabelValues(route, status).Inc()
			m.latency.WithLabelValues(route).Observe(time.Since(start).Seconds())
			if p != nil {
				panic(p)
			}
		}()
		next.ServeHTTP(sw, r)
	})
}
