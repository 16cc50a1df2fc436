package egress

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/netip"
	"time"

	"rampart.dev/rampart/audit"
)

// OCSF Network Activity activities.
const (
	activityOpen   = 1
	activityClose  = 2
	activityRefuse = 5
)

func actorOf(subject string) string {
	if subject == "" {
		return "anonymous"
	}
	return subject
}

func endpoint(t Target, a netip.AddrPort) map[string]any {
	e := map[string]any{"port": t.Port}
	if t.IP.IsValid() {
		e["ip"] = t.IP.String()
	} else {
		e["hostname"] = t.Host
	}
	if a.IsValid() {
		e["ip"] = a.Addr().String()
	}
	return e
}

// logDecision writes the OCSF line for a decision and counts it.
func (g *Gateway) logDecision(r *http.Request, d Decision, failure error) {
	result := "denied"
	line := netActivity{ActivityID: activityRefuse, ActivityName: "Refuse", Disposition: "Blocked", DispositionID: 2, SeverityID: audit.SeverityLow, Severity: "Low"}
	switch {
	case d.Reported:
		result, line.ActivityID, line.ActivityName, line.Disposition, line.DispositionID = "reported", activityOpen, "Open", "Allowed", 1
	case d.Allowed && failure == nil:
		result, line.ActivityID, line.ActivityName, line.Disposition, line.DispositionID = "allowed", activityOpen, "Open", "Allowed", 1
		line.SeverityID, line.Severity = audit.SeverityInformational, "Informational"
	case d.Allowed:
		result, line.ActivityID, line.ActivityName = "failed", 4, "Fail"
	}
	g.m.decisions.WithLabelValues(result, d.Rule).Inc()
	line.Message = d.Reason
	if failure != nil {
		line.Message = failure.Error()
	}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		line.Src = &lineEndpoint{IP: ap.Addr().String(), Port: int(ap.Port())}
	}
	line.Dst = dstEndpoint(d.Target, d.Addr)
	line.Unmapped = lineDetails{Rule: d.Rule, RuleName: d.Name, Result: result, Method: r.Method, GrantID: d.GrantID}
	if d.GrantID != "" {
		line.Unmapped.GrantExpiresAt = d.GrantExpires.UTC().Format(time.RFC3339)
	}
	g.emit("egress."+result, d.Subject, line)
	if result == "denied" {
		g.denied(r.RemoteAddr, d, line.Message)
	}
}

// netActivity is an OCSF Network Activity (class 4001) record, encoded from a struct so that a
// decision costs a few microseconds, not a map walk.
type netActivity struct {
	ActivityID    int           `json:"activity_id"`
	ActivityName  string        `json:"activity_name"`
	Actor         lineActor     `json:"actor"`
	CategoryName  string        `json:"category_name"`
	CategoryUID   int           `json:"category_uid"`
	ClassName     string        `json:"class_name"`
	ClassUID      int           `json:"class_uid"`
	Disposition   string        `json:"disposition,omitempty"`
	DispositionID int           `json:"disposition_id,omitempty"`
	Dst           *lineEndpoint `json:"dst_endpoint,omitempty"`
	Message       string        `json:"message"`
	Metadata      lineMetadata  `json:"metadata"`
	Severity      string        `json:"severity"`
	SeverityID    int           `json:"severity_id"`
	Src           *lineEndpoint `json:"src_endpoint,omitempty"`
	Time          int64         `json:"time"`
	TimeDT        string        `json:"time_dt"`
	TypeUID       int           `json:"type_uid"`
	Unmapped      lineDetails   `json:"unmapped"`
}

type lineActor struct {
	User struct {
		Name string `json:"name"`
		Type string `json:"type"`
	} `json:"user"`
}

type lineEndpoint struct {
	Hostname string `json:"hostname,omitempty"`
	IP       string `json:"ip,omitempty"`
	Port     int    `json:"port,omitempty"`
}

type lineMetadata struct {
	EventCode string `json:"event_code"`
	LogName   string `json:"log_name"`
	Product   struct {
		Name       string `json:"name"`
		VendorName string `json:"vendor_name"`
	} `json:"product"`
	Version string `json:"version"`
}

type lineDetails struct {
	GrantExpiresAt string `json:"grant_expires_at,omitempty"`
	GrantID        string `json:"grant_id,omitempty"`
	Method         string `json:"method,omitempty"`
	Result         string `json:"result,omitempty"`
	Rule           string `json:"rule,omitempty"`
	RuleName       string `json:"rule_name,omitempty"`
}

func dstEndpoint(t Target, a netip.AddrPort) *lineEndpoint {
	e := &lineEndpoint{Port: t.Port}
	if t.IP.IsValid() {
		e.IP = t.IP.String()
	} else {
		e.Hostname = t.Host
	}
	if a.IsValid() {
		e.IP = a.Addr().String()
	}
	return e
}

// emit fills the common fields and queues the line for the decision log.
func (g *Gateway) emit(code, subject string, line netActivity) {
	now := g.cfg.Now()
	line.Actor.User.Name, line.Actor.User.Type = actorOf(subject), "User"
	line.CategoryName, line.CategoryUID = "Network Activity", 4
	line.ClassName, line.ClassUID = "Network Activity", audit.ClassNetworkActivity
	line.Metadata.EventCode, line.Metadata.LogName, line.Metadata.Version = code, "rampart-egress", audit.OCSFVersion
	line.Metadata.Product.Name, line.Metadata.Product.VendorName = "Rampart", "Rampart"
	line.Time, line.TimeDT = now.UnixMilli(), now.UTC().Format(time.RFC3339Nano)
	line.TypeUID = audit.ClassNetworkActivity*100 + line.ActivityID
	if line.Severity == "" {
		line.SeverityID, line.Severity = audit.SeverityInformational, "Informational"
	}
	b, err := json.Marshal(line)
	if err != nil {
		g.log.Error("encode decision", "err", err)
		return
	}
	g.queueLine(append(b, '\n'))
}

// queueLine hands a line to the writer goroutine; when the queue is full the caller waits, so
// no decision is ever dropped.
func (g *Gateway) queueLine(b []byte) {
	g.pending.Add(1)
	g.lines <- b
}

// writeLines writes queued lines, flushing whenever the queue is empty.
func (g *Gateway) writeLines() {
	w := bufio.NewWriterSize(g.dlog, 64<<10)
	for b := range g.lines {
		_, _ = w.Write(b)
		if len(g.lines) == 0 {
			_ = w.Flush()
		}
		g.pending.Done()
	}
}

// FlushDecisions waits until every queued decision line is written.
func (g *Gateway) FlushDecisions() { g.pending.Wait() }

// writeDecisionLine queues a full audit event (budget exhaustion, tunnel closed) as a line.
func (g *Gateway) writeDecisionLine(e audit.Event) {
	b, err := audit.EncodeLog(e)
	if err != nil {
		g.log.Error("encode decision", "err", err)
		return
	}
	g.queueLine(append(b, '\n'))
}
