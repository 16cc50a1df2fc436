package api

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// SetTransferIdle changes how long a weights transfer may stall, for tests.
func SetTransferIdle(d time.Duration) (restore func()) {
	old := transferIdle
	transferIdle = d
	return func() { transferIdle = old }
}

// ValidateAgainstSchema validates a JSON answer against a schema of api/openapi.json.
func ValidateAgainstSchema(t *testing.T, schema string, body []byte) []string {
	doc := oaLoad(t)
	s := oaDeref(t, doc, map[string]any{"$ref": "#/components/schemas/" + schema})
	dec := json.NewDecoder(bytes.NewReader(body))
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatal(err)
	}
	return oaValidate(doc, s, v, schema)
}
