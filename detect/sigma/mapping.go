package sigma

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	"rampart.dev/rampart/internal/strictyaml"
)

// kind is what an event field holds, which decides the CEL a match on it becomes.
type kind int

const (
	kindString kind = iota
	kindInt
	kindBool
	kindStrings // list(string): a match holds when one element matches
	kindDetail  // details.<key>: dyn, type-checked in CEL before use
)

// eventField is one field of the detection event (the contract's table), as the converter needs
// it.
type eventField struct {
	kind kind
	// lower marks a field whose values are always lowercase ASCII (Rampart's event codes), so a
	// case-insensitive match on it is an exact match on the lowercased value: cheap, and the
	// engine can index a rule by its code.
	lower bool
}

// eventFields are the fields of `event` a Sigma field can be mapped to. `time` is not one: Sigma
// has no way to compare timestamps that would mean the same thing here.
//
// Fields marked lower hold lowercase text by construction: event codes; subjects, resource and
// role names (the policy's name rules refuse uppercase: policy.ValidateSubject,
// ValidateResourceName, ValidateName); host names and addresses, which the egress gateway
// canonicalises. The message and details hold any text, and are matched case-insensitively
// with a regular expression.
var eventFields = map[string]eventField{
	"seq":         {kind: kindInt},
	"code":        {kind: kindString, lower: true},
	"class_uid":   {kind: kindInt},
	"activity_id": {kind: kindInt},
	"severity_id": {kind: kindInt},
	"failed":      {kind: kindBool},
	"actor":       {kind: kindString, lower: true},
	"user":        {kind: kindString, lower: true},
	"message":     {kind: kindString},
	"resources":   {kind: kindStrings, lower: true},
	"privileges":  {kind: kindStrings, lower: true},
	"src_ip":      {kind: kindString, lower: true},
	"dst_host":    {kind: kindString, lower: true},
	"dst_ip":      {kind: kindString, lower: true},
	"dst_port":    {kind: kindInt},
	"bytes_out":   {kind: kindInt},
	"bytes_in":    {kind: kindInt},
}

// detailKey is the form of a key under details (the ledger's unmapped fields are snake_case).
var detailKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

// defaultFields is the documented default mapping (docs/detection-sigma.md): every event field
// under its own name, plus the names Sigma rules and OCSF use for them.
var defaultFields = map[string]string{
	"EventCode": "code", "event_code": "code", "metadata.event_code": "code", "EventType": "code",
	"User": "actor", "SubjectUserName": "actor", "actor.user.name": "actor", "Actor": "actor",
	"TargetUserName": "user", "user.name": "user", "TargetUser": "user",
	"Message":  "message",
	"Resource": "resources", "resource": "resources", "resources.name": "resources", "ObjectName": "resources",
	"Privilege": "privileges", "privilege": "privileges",
	"SourceIp": "src_ip", "src_endpoint.ip": "src_ip", "ClientIP": "src_ip", "IpAddress": "src_ip",
	"DestinationHostname": "dst_host", "dst_endpoint.hostname": "dst_host",
	"DestinationIp": "dst_ip", "dst_endpoint.ip": "dst_ip",
	"DestinationPort": "dst_port", "dst_endpoint.port": "dst_port",
	"traffic.bytes_out": "bytes_out", "BytesOut": "bytes_out", "SentBytes": "bytes_out",
	"traffic.bytes_in": "bytes_in", "BytesIn": "bytes_in", "ReceivedBytes": "bytes_in",
	"Failed": "failed", "SeverityId": "severity_id", "ClassUid": "class_uid", "ActivityId": "activity_id",
	"metadata.sequence": "seq",
}

// defaultServices maps a Sigma logsource service to the event-code prefix it selects: one per
// family of Rampart's ledger codes (docs/ledger.md).
var defaultServices = []string{
	"request", "grant", "policy", "token", "session", "signin", "user", "mfa", "scim", "egress",
	"kube", "weights", "vault", "secret", "change", "notification", "ci", "pipeline", "iac",
	"detect", "alert",
}

// Mapping says how Sigma field names become event fields, and which logsources a rule may name.
// The zero value is not useful; start from DefaultMapping or ParseMapping.
type Mapping struct {
	// Fields maps a Sigma field name to an event field ("actor") or a details key
	// ("details.grant_id").
	Fields map[string]string
	// Keywords is the event field keyword searches (a list of bare values) look in.
	Keywords string
	// Products are the logsource products accepted (a rule naming another product was written for
	// logs Rampart does not have).
	Products []string
	// Services maps a logsource service to the event-code prefix it selects ("weights" →
	// "weights.").
	Services map[string]string
	// Categories maps a logsource category to an event-code prefix, like Services.
	Categories map[string]string
}

// DefaultMapping returns the documented default mapping.
func DefaultMapping() Mapping {
	m := Mapping{
		Fields:     map[string]string{},
		Keywords:   "message",
		Products:   []string{"rampart"},
		Services:   map[string]string{},
		Categories: map[string]string{},
	}
	for name := range eventFields {
		m.Fields[name] = name
	}
	for k, v := range defaultFields {
		m.Fields[k] = v
	}
	for _, s := range defaultServices {
		m.Services[s] = s + "."
	}
	return m
}

// mappingFile is the YAML form of a mapping.
type mappingFile struct {
	// Replace drops the default mapping instead of adding to it.
	Replace    bool              `yaml:"replace"`
	Fields     map[string]string `yaml:"fields"`
	Keywords   string            `yaml:"keywords"`
	Products   []string          `yaml:"products"`
	Services   map[string]string `yaml:"services"`
	Categories map[string]string `yaml:"categories"`
}

// ParseMapping reads a mapping file (docs/detection-sigma.md): its entries are added to the
// default mapping, or replace it with `replace: true`. Errors name the file, line and field.
func ParseMapping(file string, data []byte) (Mapping, error) {
	docs, err := strictyaml.SplitDocuments(file, data)
	if err != nil {
		return Mapping{}, err
	}
	if len(docs) != 1 {
		return Mapping{}, &strictyaml.Error{File: file, Msg: fmt.Sprintf("a mapping file holds one YAML document; it has %d", len(docs))}
	}
	doc := &strictyaml.Document{File: file}
	var f mappingFile
	doc.Decode("", docs[0], &f)
	if err := doc.Errs.Err(); err != nil {
		return Mapping{}, err
	}
	m := DefaultMapping()
	if f.Replace {
		m = Mapping{Fields: map[string]string{}, Services: map[string]string{}, Categories: map[string]string{}}
	}
	for _, k := range sortedKeys(f.Fields) {
		v := f.Fields[k]
		if err := checkTarget(v); err != nil {
			doc.Errorf("fields."+k, "%v", err)
			continue
		}
		m.Fields[k] = v
	}
	if f.Keywords != "" {
		if ef, ok := eventFields[f.Keywords]; !ok || (ef.kind != kindString && ef.kind != kindStrings) {
			doc.Errorf("keywords", "keywords must name a text event field (message, actor, user, resources, …); %q is not one", f.Keywords)
		} else {
			m.Keywords = f.Keywords
		}
	}
	if f.Products != nil {
		m.Products = f.Products
	}
	for _, k := range sortedKeys(f.Services) {
		m.Services[k] = f.Services[k]
	}
	for _, k := range sortedKeys(f.Categories) {
		m.Categories[k] = f.Categories[k]
	}
	if err := doc.Errs.Err(); err != nil {
		return Mapping{}, err
	}
	return m, nil
}

// checkTarget checks the right-hand side of a field mapping.
func checkTarget(t string) error {
	if key, ok := strings.CutPrefix(t, "details."); ok {
		if !detailKey.MatchString(key) {
			return fmt.Errorf("%q: a details key is letters, digits and '_', starting with a letter or '_'", t)
		}
		return nil
	}
	if _, ok := eventFields[t]; !ok {
		return fmt.Errorf("%q is not an event field; use one of %s, or details.<key>", t, strings.Join(sortedKeys(eventFields), ", "))
	}
	return nil
}

// target resolves a Sigma field name: the event field it maps to and its properties. Fields named
// unmapped.<key> or details.<key> map to that details key unless the mapping says otherwise.
func (m Mapping) target(field string) (name string, f eventField, ok bool) {
	t, found := m.Fields[field]
	if !found {
		for _, prefix := range []string{"unmapped.", "details."} {
			if key, cut := strings.CutPrefix(field, prefix); cut && detailKey.MatchString(key) {
				t, found = "details."+key, true
			}
		}
	}
	if !found {
		return "", eventField{}, false
	}
	if strings.HasPrefix(t, "details.") {
		return t, eventField{kind: kindDetail}, true
	}
	f, ok = eventFields[t]
	return t, f, ok
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
