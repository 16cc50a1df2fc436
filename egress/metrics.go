package egress

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the gateway's Prometheus metrics.
type Metrics struct {
	decisions *prometheus.CounterVec
	bytes     *prometheus.CounterVec
	tunnels   prometheus.Gauge
	budget    prometheus.Counter
}

// NewMetrics creates the metrics and registers them with reg (if not nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rampart_egress_decisions_total", Help: "Egress decisions by result (allowed, denied, reported, failed) and deciding rule.",
		}, []string{"result", "rule"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rampart_egress_bytes_total", Help: "Bytes through the egress gateway: out (client to destination) and in.",
		}, []string{"direction"}),
		tunnels: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rampart_egress_tunnels_open", Help: "Open CONNECT tunnels.",
		}),
		budget: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rampart_egress_budget_exhausted_total", Help: "Times a subject exhausted its exfiltration budget.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.decisions, m.bytes, m.tunnels, m.budget)
	}
	return m
}
