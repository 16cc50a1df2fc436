package podsec

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// The decoders read JSON with github.com/go-json-experiment/json, the proposed encoding/json/v2
// (the standard library holds the same code behind GOEXPERIMENT=jsonv2). Unlike
// encoding/json, it validates as it decodes, in one pass over the input, and it refuses
// duplicate names and invalid UTF-8 by default; with strict it also refuses unknown members.
// Names are matched case-sensitively, as the apiserver matches them. Kubernetes types whose
// own UnmarshalJSON methods read a leaf value (Quantity, Time, IntOrString, RawExtension) are
// decoded by those methods, as sigs.k8s.io/json decodes them.
//
// That is stricter than the apiserver's own decoder (sigs.k8s.io/json) in two ways, both on
// the safe side: invalid UTF-8 is refused rather than replaced with U+FFFD, and a duplicate
// name is refused even inside values kept as raw JSON (managedFields[].fieldsV1,
// request.options). The apiserver never sends either.
var strict = jsonv2.JoinOptions(
	jsonv2.RejectUnknownMembers(true),
	jsonv2.MatchCaseInsensitiveNames(false),
	jsontext.AllowDuplicateNames(false),
	jsontext.AllowInvalidUTF8(false),
)

// newWorkloadObject returns an empty object of a workload kind and the kind's only supported
// apiVersion, or nil for another kind.
func newWorkloadObject(kind string) (runtime.Object, string) {
	var obj runtime.Object
	switch kind {
	case "Pod":
		obj = &corev1.Pod{}
	case "Deployment":
		obj = &appsv1.Deployment{}
	case "StatefulSet":
		obj = &appsv1.StatefulSet{}
	case "DaemonSet":
		obj = &appsv1.DaemonSet{}
	case "ReplicaSet":
		obj = &appsv1.ReplicaSet{}
	case "Job":
		obj = &batchv1.Job{}
	case "CronJob":
		obj = &batchv1.CronJob{}
	case "ReplicationController":
		obj = &corev1.ReplicationController{}
	default:
		return nil, ""
	}
	return obj, workloadKinds[kind]
}

// DecodeObject decodes raw, the JSON of an object that is not a workload (a
// PersistentVolumeClaim, a VolumeSnapshot), into v as strictly as WorkloadOf decodes
// workloads: unknown, duplicate and miscased fields and invalid UTF-8 are errors. what names
// the object in errors, which are *DecodeError values wrapping ErrMalformed or ErrTooLarge.
// The caller checks the object's apiVersion and kind.
func DecodeObject(what string, raw []byte, v any) error {
	if len(raw) > MaxReviewBytes {
		return &DecodeError{What: what, Reason: fmt.Sprintf("object is %d bytes, more than the %d allowed", len(raw), MaxReviewBytes), Err: ErrTooLarge}
	}
	if err := jsonObject(raw); err != nil {
		return &DecodeError{What: what, Reason: err.Error(), Err: ErrMalformed}
	}
	return decodeStrict(what, raw, v)
}

// decodeStrict decodes raw into v with the strict options; what names the input in the error.
func decodeStrict(what string, raw []byte, v any) error {
	if err := jsonv2.Unmarshal(raw, v, strict); err != nil {
		return decodeError(what, err)
	}
	return nil
}

// decodeError turns a decoding error into a *DecodeError that names the field by its path
// ("spec.containers[0].securityContext.privilegd") and says what is wrong in words.
func decodeError(what string, err error) *DecodeError {
	de := &DecodeError{What: what, Reason: err.Error(), Err: ErrMalformed}
	var se *jsonv2.SemanticError
	var syn *jsontext.SyntacticError
	switch {
	case errors.As(err, &se):
		de.Field = fieldPath(se.JSONPointer)
		switch {
		case errors.Is(se.Err, jsonv2.ErrUnknownName):
			de.Reason = "unknown field (a field this build of Rampart does not know, or a misspelling: names are case-sensitive)"
		case se.GoType != nil && se.JSONKind != 0:
			de.Reason = fmt.Sprintf("a JSON %s cannot be a %s", kindName(se.JSONKind), goTypeName(se.GoType))
			if se.Err != nil {
				de.Reason += " (" + se.Err.Error() + ")"
			}
		case se.Err != nil:
			de.Reason = se.Err.Error()
		}
	case errors.As(err, &syn):
		de.Field = fieldPath(syn.JSONPointer)
		if errors.Is(syn.Err, jsontext.ErrDuplicateName) {
			de.Reason = "duplicate field (each field may appear once)"
		} else {
			de.Reason = fmt.Sprintf("invalid JSON at byte %d: %v", syn.ByteOffset, syn.Err)
			de.Field = "" // the path of a syntax error is where the parser was, not a field to fix
		}
	}
	return de
}

// kindName names a JSON kind in words.
func kindName(k jsontext.Kind) string {
	switch k {
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "bool"
	}
	return k.String() // null, string, number
}

// goTypeName names a Go type as its package and name ("v1.Container", "bool", "[]string").
func goTypeName(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.String()
}

// fieldPath renders a JSON pointer as a field path: object members joined by dots, array
// indices in brackets, and members that are not plain names (label keys, managedFields'
// "f:spec") quoted in brackets, so that "metadata.labels[\"app.kubernetes.io/name\"]" is not
// read as nested fields.
func fieldPath(p jsontext.Pointer) string {
	var b strings.Builder
	for tok := range p.Tokens() {
		switch {
		case isIndex(tok):
			b.WriteString("[" + tok + "]")
		case isPlainName(tok):
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(tok)
		default:
			b.WriteString("[" + strconv.Quote(tok) + "]")
		}
	}
	return b.String()
}

func isIndex(s string) bool {
	if s == "" || (len(s) > 1 && s[0] == '0') {
		return false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func isPlainName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
