package iac

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"sigs.k8s.io/yaml"

	"rampart.dev/rampart/kube/podsec"
)

// Limits on what Decode reads: a repository is written by people, and a pull request by anyone
// who may open one.
const (
	// MaxFileBytes bounds one manifest file.
	MaxFileBytes = 32 << 20
	// MaxDocumentBytes bounds one document of a file (the admission webhook's bound on an
	// object: the apiserver would refuse a larger one anyway).
	MaxDocumentBytes = podsec.MaxReviewBytes
	// MaxObjects bounds the objects of one check.
	MaxObjects = 200_000
)

// ErrDecode is what every decoding error wraps, for errors.Is; the concrete error is a
// *DecodeError that says where.
var ErrDecode = errors.New("iac: cannot decode")

// DecodeError is a document that cannot be read: where it is and what is wrong.
type DecodeError struct {
	Source Source
	Reason string
}

func (e *DecodeError) Error() string { return e.Source.String() + ": " + e.Reason }

// Unwrap makes errors.Is(err, ErrDecode) true.
func (e *DecodeError) Unwrap() error { return ErrDecode }

// Source is where an object was declared: a file and the line its document starts on, or for
// a kustomization the kustomization's directory (and the file kustomize says it came from, when
// its buildMetadata asks for originAnnotations).
type Source struct {
	File string `json:"file"`
	Line int    `json:"line,omitempty"`
}

func (s Source) String() string {
	if s.Line == 0 {
		return s.File
	}
	return fmt.Sprintf("%s:%d", s.File, s.Line)
}

// Object is one declared Kubernetes object: its identity and its JSON.
type Object struct {
	Source     Source `json:"source"`
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace,omitempty"`
	Name       string `json:"name"`
	// JSON is the object as the apiserver would receive it.
	JSON json.RawMessage `json:"-"`
}

// ID is "Kind namespace/name" ("Kind name" for an object with no namespace).
func (o Object) ID() string {
	if o.Namespace == "" {
		return o.Kind + " " + o.Name
	}
	return o.Kind + " " + o.Namespace + "/" + o.Name
}

// header is the part of every object Decode reads.
type header struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name         string `json:"name"`
		GenerateName string `json:"generateName"`
		Namespace    string `json:"namespace"`
	} `json:"metadata"`
	Items []json.RawMessage `json:"items"`
}

// Decode reads the objects of a manifest file: YAML documents separated by "---" lines, or JSON
// (a JSON value is a YAML document). A List (kind List, or any kind ending in "List" with items)
// is its items. A document with nothing but comments is skipped. YAML is read strictly
// (a key given twice is an error, as kubectl apply says), every object needs apiVersion, kind
// and metadata.name, and the limits above hold; errors are *DecodeError values naming the file
// and line.
func Decode(file string, data []byte) ([]Object, error) {
	if len(data) > MaxFileBytes {
		return nil, &DecodeError{Source: Source{File: file}, Reason: fmt.Sprintf("the file is %d bytes, more than the %d a manifest may be; split it", len(data), MaxFileBytes)}
	}
	var out []Object
	for _, d := range splitDocuments(data) {
		src := Source{File: file, Line: d.line}
		if len(d.text) > MaxDocumentBytes {
			return nil, &DecodeError{Source: src, Reason: fmt.Sprintf("the document is %d bytes, more than the %d an object may be", len(d.text), MaxDocumentBytes)}
		}
		if blank(d.text) {
			continue
		}
		js, err := yaml.YAMLToJSONStrict(d.text)
		if err != nil {
			return nil, &DecodeError{Source: src, Reason: "not valid YAML: " + strings.TrimPrefix(err.Error(), "error converting YAML to JSON: ")}
		}
		if len(js) > MaxDocumentBytes {
			// YAML anchors can make the JSON much larger than the document.
			return nil, &DecodeError{Source: src, Reason: fmt.Sprintf("the document expands to %d bytes of JSON, more than the %d an object may be (YAML aliases?)", len(js), MaxDocumentBytes)}
		}
		if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
			continue
		}
		objs, err := objects(src, js, 0)
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
		if len(out) > MaxObjects {
			return nil, &DecodeError{Source: src, Reason: fmt.Sprintf("more than %d objects", MaxObjects)}
		}
	}
	return out, nil
}

// objects reads one JSON document: an object, or a List of them (depth counts nested Lists,
// which kubectl does not accept either beyond one).
func objects(src Source, js []byte, depth int) ([]Object, error) {
	if t := bytes.TrimLeft(js, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return nil, &DecodeError{Source: src, Reason: "the document is not a Kubernetes object (a mapping with apiVersion, kind and metadata)"}
	}
	var h header
	if err := json.Unmarshal(js, &h); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return nil, &DecodeError{Source: src, Reason: fmt.Sprintf("%s: a %s cannot be a %s", te.Field, te.Value, te.Type)}
		}
		return nil, &DecodeError{Source: src, Reason: "not a Kubernetes object: " + strings.TrimPrefix(err.Error(), "json: ")}
	}
	switch {
	case h.APIVersion == "":
		return nil, &DecodeError{Source: src, Reason: "apiVersion is missing"}
	case h.Kind == "":
		return nil, &DecodeError{Source: src, Reason: "kind is missing"}
	}
	if strings.HasSuffix(h.Kind, "List") && h.Items != nil {
		if depth > 0 {
			return nil, &DecodeError{Source: src, Reason: "a " + h.Kind + " inside a List; flatten it"}
		}
		var out []Object
		for i, it := range h.Items {
			objs, err := objects(src, it, depth+1)
			if err != nil {
				var de *DecodeError
				if errors.As(err, &de) {
					de.Reason = fmt.Sprintf("items[%d]: %s", i, de.Reason)
				}
				return nil, err
			}
			out = append(out, objs...)
		}
		return out, nil
	}
	if h.Metadata.Name == "" {
		reason := "metadata.name is missing"
		if h.Metadata.GenerateName != "" {
			reason = "metadata.generateName is not enough: an object in Git needs a metadata.name, or every apply makes a new one"
		}
		return nil, &DecodeError{Source: src, Reason: h.Kind + ": " + reason}
	}
	return []Object{{Source: src, APIVersion: h.APIVersion, Kind: h.Kind, Namespace: h.Metadata.Namespace, Name: h.Metadata.Name, JSON: js}}, nil
}

// document is one YAML document of a stream and the line (from 1) it starts on.
type document struct {
	text []byte
	line int
}

// splitDocuments splits a YAML stream at its "---" lines (a line that is "---" alone or
// followed by a space or tab, as the YAML spec's document marker) and drops "..." end markers.
// The text of each document keeps its own lines, so YAML errors name lines within it; line is
// where it starts in the file.
func splitDocuments(data []byte) []document {
	var out []document
	start, startLine, line := 0, 1, 1
	for i := 0; i <= len(data); {
		end := bytes.IndexByte(data[i:], '\n')
		next := len(data) + 1
		if end >= 0 {
			next = i + end + 1
		} else {
			end = len(data) - i
		}
		l := bytes.TrimRight(data[i:i+end], "\r")
		if isMarker(l, "---") || isMarker(l, "...") {
			out = append(out, document{text: data[start:i], line: startLine})
			// What follows the marker on its line ("--- {a: 1}") belongs to the next document,
			// which then starts on this line; otherwise it starts on the next one.
			start, startLine = min(next, len(data)), line+1
			if !blank(l[3:]) {
				start, startLine = i+3, line
			}
		}
		i = next
		line++
	}
	if start < len(data) {
		out = append(out, document{text: data[start:], line: startLine})
	}
	return out
}

// isMarker reports whether line is marker alone or followed by whitespace (and a comment).
func isMarker(line []byte, marker string) bool {
	if !bytes.HasPrefix(line, []byte(marker)) {
		return false
	}
	rest := line[len(marker):]
	return len(rest) == 0 || rest[0] == ' ' || rest[0] == '\t'
}

// blank reports whether a document holds only whitespace and comments.
func blank(doc []byte) bool {
	for l := range bytes.Lines(doc) {
		t := bytes.TrimSpace(l)
		if len(t) > 0 && t[0] != '#' {
			return false
		}
	}
	return true
}
