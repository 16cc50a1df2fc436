package egress

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/audit/refusals"
)

// What the gateway writes to the ledger, so that detection (package detect) sees egress in the
// same ordered stream as everything else:
//
//   - egress.transfer, one per tunnel or forwarded request when it ends (OCSF Network Activity,
//     activity Close) and one per TransferEvery while it stays open and carries bytes (activity
//     Traffic), with the bytes each way since the previous entry of that connection. Connections
//     of anonymous callers are summed into one entry per TransferEvery instead (invariant 11:
//     nobody unauthenticated writes to the ledger without bound).
//   - egress.denied, every refused connection, aggregated per caller through Config.Refused the
//     way other refusals are (audit/refusals): the first of a window in full, the rest counted.
//
// Entries are appended by one writer goroutine from a bounded queue. A tunnel's data path never
// touches it: its byte counts are atomics read by the revalidation loop and at the end of the
// connection. When the queue is full the caller (the end of a connection, the revalidation
// loop, a refusal) waits: nothing is dropped. Shutdown drains it.

// activityTraffic is OCSF Network Activity's Traffic: a report on an open connection.
const activityTraffic = 6

// DefaultTransferEvery is how often an open connection's bytes are written to the ledger.
const DefaultTransferEvery = time.Minute

// ledgerQueue is the capacity of the queue of entries waiting for the ledger.
const ledgerQueue = 1024

// ledgerJob is one write to the ledger: an entry (event) or a refusal to aggregate (refused).
type ledgerJob struct {
	event   *audit.Event
	refused func(ctx context.Context) error
}

// maxLedgerBatch bounds the entries appended in one transaction (Config.RecordAll).
const maxLedgerBatch = 256

// startLedger starts the writer goroutine. It appends what is queued in batches: one
// transaction for every entry waiting (Config.RecordAll), so that thousands of short tunnels a
// second cost tens of transactions, not thousands.
func (g *Gateway) startLedger() {
	g.ledger = make(chan ledgerJob, ledgerQueue)
	go func() {
		batch := make([]audit.Event, 0, maxLedgerBatch)
		for job := range g.ledger {
			n := 1
			g.runLedgerJob(job, &batch)
		drain:
			for len(batch) < maxLedgerBatch {
				select {
				case more := <-g.ledger:
					n++
					g.runLedgerJob(more, &batch)
				default:
					break drain
				}
			}
			g.writeBatch(batch)
			batch = batch[:0]
			g.ledgerPending.done(n)
		}
	}()
}

// runLedgerJob adds an entry to the batch, or records a refusal (after writing the batch so far,
// to keep the ledger in the order things happened).
func (g *Gateway) runLedgerJob(job ledgerJob, batch *[]audit.Event) {
	if job.event != nil {
		*batch = append(*batch, *job.event)
		return
	}
	g.writeBatch(*batch)
	*batch = (*batch)[:0]
	if err := job.refused(context.Background()); err != nil {
		g.log.Error("could not record a refused egress connection in the ledger", "err", err)
	}
}

func (g *Gateway) writeBatch(batch []audit.Event) {
	if len(batch) == 0 {
		return
	}
	ctx := context.Background()
	if g.cfg.RecordAll != nil {
		err := g.cfg.RecordAll(ctx, batch)
		if err == nil || g.cfg.Record == nil {
			if err != nil {
				g.log.Error("could not write egress entries to the ledger", "entries", len(batch), "err", err)
			}
			return
		}
		// One entry the ledger refuses must not take the others with it: one by one.
	}
	for _, e := range batch {
		if err := g.cfg.Record(ctx, e); err != nil {
			g.log.Error("could not write an egress entry to the ledger", "code", e.Code, "err", err)
		}
	}
}

// queueLedger hands a write to the writer goroutine, waiting while the queue is full.
func (g *Gateway) queueLedger(job ledgerJob) {
	g.ledgerPending.add()
	g.ledger <- job
}

// FlushLedger waits until every queued ledger entry is written (or failed and was logged).
func (g *Gateway) FlushLedger() { g.ledgerPending.wait() }

// pendingCount counts queued ledger jobs. Unlike a sync.WaitGroup it may be added to while
// another goroutine waits at zero: tunnels queue entries at any moment, FlushLedger runs
// concurrently with them, and WaitGroup forbids an Add from zero racing a Wait (the race detector
// reported it in TestTunnelTransfersInTheLedger).
type pendingCount struct {
	mu   sync.Mutex
	n    int
	zero *sync.Cond
}

func (p *pendingCount) add() {
	p.mu.Lock()
	p.n++
	p.mu.Unlock()
}

func (p *pendingCount) done(k int) {
	p.mu.Lock()
	p.n -= k
	if p.n == 0 && p.zero != nil {
		p.zero.Broadcast()
	}
	p.mu.Unlock()
}

// wait returns once nothing is pending.
func (p *pendingCount) wait() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.zero == nil {
		p.zero = sync.NewCond(&p.mu)
	}
	for p.n > 0 {
		p.zero.Wait()
	}
}

// record queues e for the ledger, if the gateway has one.
func (g *Gateway) record(e audit.Event) {
	if g.cfg.Record == nil && g.cfg.RecordAll == nil {
		return
	}
	g.queueLedger(ledgerJob{event: &e})
}

// denied queues the refusal of a connection for the ledger, aggregated per caller
// (Config.Refused): a subject's refusals under the subject, an anonymous caller's under its
// client network.
func (g *Gateway) denied(clientAddr string, d Decision, message string) {
	if g.cfg.Refused == nil {
		return
	}
	source := "user " + d.Subject
	if d.Subject == "" {
		source = "anonymous from " + sourceNetwork(clientAddr)
	}
	e := audit.Event{Code: "egress.denied", Class: audit.ClassNetworkActivity, Activity: activityRefuse, ActivityName: "Refuse",
		Severity: audit.SeverityLow, Time: g.cfg.Now(), Actor: actorOf(d.Subject), Message: message, Failed: true,
		Details: map[string]any{"rule": d.Rule, "rule_name": d.Name, "destination": d.Target.String()},
		Extra:   map[string]any{"dst_endpoint": endpoint(d.Target, d.Addr), "disposition": "Blocked", "disposition_id": 2}}
	if d.Target.Host == "" && !d.Target.IP.IsValid() {
		delete(e.Extra, "dst_endpoint")
		delete(e.Details, "destination")
	}
	if ip := clientIP(clientAddr); ip != "" {
		e.Extra["src_endpoint"] = map[string]any{"ip": ip}
	}
	g.queueLedger(ledgerJob{refused: func(ctx context.Context) error {
		_, err := g.cfg.Refused(ctx, source, e)
		return err
	}})
}

// clientIP is the address part of a client's host:port, or "".
func clientIP(addr string) string {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return ""
	}
	return ap.Addr().Unmap().String()
}

// sourceNetwork is the network an anonymous client's refusals are counted under: its /24 (IPv4)
// or /64 (IPv6), so that one host cannot open a window per port or per address of its block.
func sourceNetwork(addr string) string {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return "unknown"
	}
	a := ap.Addr().Unmap()
	bits := 64
	if a.Is4() {
		bits = 24
	}
	p, _ := a.Prefix(bits)
	return p.String()
}

// transferMeter counts what one connection carried, for egress.transfer. The data path only
// adds to the atomics.
type transferMeter struct {
	id     string // the tunnel id in the ledger
	client string // the client's host:port
	opened time.Time
	out    atomic.Int64
	in     atomic.Int64

	mu              sync.Mutex // serializes reports
	sentOut, sentIn int64
	lastReport      time.Time
	ended           bool
}

func newTransferMeter(client string, now time.Time) *transferMeter {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &transferMeter{id: hex.EncodeToString(b[:]), client: client, opened: now, lastReport: now}
}

// report writes the bytes carried since the previous report: at the end of the connection
// (always), or while it is open when TransferEvery has passed and something moved.
func (g *Gateway) reportTransfer(f *flow, final bool, why string) {
	m := f.meter
	if m == nil {
		return
	}
	now := g.cfg.Now()
	m.mu.Lock()
	if m.ended || (!final && now.Sub(m.lastReport) < g.transferEvery()) {
		m.mu.Unlock()
		return
	}
	out, in := m.out.Load(), m.in.Load()
	dOut, dIn := out-m.sentOut, in-m.sentIn
	if !final && dOut == 0 && dIn == 0 {
		m.lastReport = now
		m.mu.Unlock()
		return
	}
	m.sentOut, m.sentIn, m.lastReport = out, in, now
	m.ended = final
	m.mu.Unlock()
	if f.d.Subject == "" {
		g.addAnonymous(f, dOut, dIn, final)
		return
	}
	act, actName := activityTraffic, "Traffic"
	msg := fmt.Sprintf("%s's %s to %s is open: %d bytes out and %d in since the last report", who(f.d.Subject), f.kind, f.d.Target, dOut, dIn)
	if final {
		act, actName = activityClose, "Close"
		msg = fmt.Sprintf("%s's %s to %s ended (%s): %d bytes out and %d in since the last report, %d and %d in all",
			who(f.d.Subject), f.kind, f.d.Target, why, dOut, dIn, out, in)
	}
	details := map[string]any{"tunnel_id": m.id, "connection": f.kind, "rule": f.d.Rule, "rule_name": f.d.Name,
		"destination": f.d.Target.String(), "bytes_out": dOut, "bytes_in": dIn, "total_bytes_out": out, "total_bytes_in": in,
		"opened_at": m.opened.UTC().Format(time.RFC3339Nano), "final": final}
	if f.d.GrantID != "" {
		details["grant_id"] = f.d.GrantID
	}
	if final {
		details["reason"] = why
	}
	e := audit.Event{Code: "egress.transfer", Class: audit.ClassNetworkActivity, Activity: act, ActivityName: actName,
		Time: now, Actor: actorOf(f.d.Subject), Message: msg, Details: details,
		Extra: map[string]any{"dst_endpoint": endpoint(f.d.Target, f.d.Addr), "traffic": map[string]any{"bytes_out": dOut, "bytes_in": dIn},
			"disposition": "Allowed", "disposition_id": 1}}
	if ip := clientIP(m.client); ip != "" {
		e.Extra["src_endpoint"] = map[string]any{"ip": ip}
	}
	g.record(e)
}

func (g *Gateway) transferEvery() time.Duration {
	if g.cfg.Limits.TransferEvery > 0 {
		return g.cfg.Limits.TransferEvery
	}
	return DefaultTransferEvery
}

// reportOpen writes the periodic reports of open connections that are due.
func (g *Gateway) reportOpen() {
	g.mu.Lock()
	open := make([]*flow, 0, len(g.flows))
	for f := range g.flows {
		open = append(open, f)
	}
	g.mu.Unlock()
	for _, f := range open {
		g.reportTransfer(f, false, "")
	}
	g.flushAnonymous(false)
}

// anonymousTally sums anonymous connections between two reports.
type anonymousTally struct {
	since       time.Time
	connections int // ended
	out, in     int64
	dest        map[string]int64 // bytes out per destination, at most maxAnonymousDest kept
	moreDest    int
}

const maxAnonymousDest = 16

func (g *Gateway) addAnonymous(f *flow, out, in int64, final bool) {
	g.anonMu.Lock()
	defer g.anonMu.Unlock()
	t := &g.anon
	if t.dest == nil {
		t.dest = map[string]int64{}
		t.since = g.cfg.Now()
	}
	if final {
		t.connections++
	}
	t.out += out
	t.in += in
	dst := f.d.Target.String()
	if _, ok := t.dest[dst]; ok || len(t.dest) < maxAnonymousDest {
		t.dest[dst] += out
	} else {
		t.moreDest++
	}
}

// flushAnonymous writes the anonymous tally when TransferEvery has passed since it began (or
// now, when all is set: at shutdown).
func (g *Gateway) flushAnonymous(all bool) {
	g.anonMu.Lock()
	t := g.anon
	now := g.cfg.Now()
	if t.dest == nil || (!all && now.Sub(t.since) < g.transferEvery()) {
		g.anonMu.Unlock()
		return
	}
	g.anon = anonymousTally{}
	g.anonMu.Unlock()
	dests := make([]string, 0, len(t.dest))
	for d := range t.dest {
		dests = append(dests, d)
	}
	sort.Strings(dests)
	per := map[string]any{}
	for _, d := range dests {
		per[d] = t.dest[d]
	}
	details := map[string]any{"aggregated": map[string]any{"connections_ended": t.connections, "from": t.since.UTC().Format(time.RFC3339Nano),
		"until": now.UTC().Format(time.RFC3339Nano), "bytes_out_by_destination": per, "destinations_not_sampled": t.moreDest},
		"bytes_out": t.out, "bytes_in": t.in}
	g.record(audit.Event{Code: "egress.transfer", Class: audit.ClassNetworkActivity, Activity: activityTraffic, ActivityName: "Traffic",
		Time: now, Actor: actorOf(""), Details: details,
		Message: fmt.Sprintf("anonymous connections carried %d bytes out and %d in to %d destinations between %s and %s (summed: anonymous callers get one entry per report interval)",
			t.out, t.in, len(dests)+t.moreDest, t.since.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339)),
		Extra: map[string]any{"traffic": map[string]any{"bytes_out": t.out, "bytes_in": t.in}, "count": t.connections,
			"start_time": t.since.UnixMilli(), "end_time": now.UnixMilli()}})
}

// Refused is how a gateway records a refusal, aggregated per source (refusals.Recorder.Record).
type Refused func(ctx context.Context, source string, e audit.Event) (refusals.Outcome, error)
