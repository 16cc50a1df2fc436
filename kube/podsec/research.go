package podsec

import (
	"strconv"
	"strings"
)

// This file holds Rampart's research baseline: where images come from, how
// they are pinned, the service-account token, and the sandbox runtime class.

// image is one image reference the pod pulls: a container's image or an
// image volume's reference (which the kubelet pulls the same way).
type image struct {
	ref string
	c   container // the container, or c.c == nil for an image volume
	vol int       // the volume's index, for an image volume
}

// images visits every image the pod pulls: containers, initContainers and
// ephemeralContainers, then image volumes.
func (e *evaluation) images(fn func(img image)) {
	e.containers(func(c container) { fn(image{ref: c.c.Image, c: c}) })
	for i := range e.spec.Volumes {
		if v := &e.spec.Volumes[i]; v.Image != nil {
			fn(image{ref: v.Image.Reference, vol: i})
		}
	}
}

// imageAt returns the image's field path and its holder for messages,
// `container "app"` or `image volume "models"`.
func (e *evaluation) imageAt(img image) (field, who string) {
	if img.c.c != nil {
		return e.path(img.c) + ".image", img.c.name()
	}
	return e.w.SpecPath + ".volumes[" + strconv.Itoa(img.vol) + "].image.reference",
		"image volume " + strconv.Quote(e.spec.Volumes[img.vol].Name)
}

// registry implements baseline.registry.
func (e *evaluation) registry() {
	allowed := e.cfg.AllowedRegistries
	if len(allowed) == 0 {
		return
	}
	e.images(func(img image) {
		ref, err := parseImage(img.ref)
		if err != nil {
			f, who := e.imageAt(img)
			e.add(f, who+" image "+strconv.Quote(img.ref)+" is not a valid image reference ("+f+"): "+err.Error(),
				"set "+f+" to an image under an allowed registry ("+strings.Join(allowed, ", ")+")")
			return
		}
		for _, a := range allowed {
			if ref.under(a) {
				return
			}
		}
		f, who := e.imageAt(img)
		e.add(f, who+" image "+strconv.Quote(img.ref)+" comes from "+ref.name()+", which is not under an allowed registry ("+f+")",
			"push the image to an allowed registry ("+strings.Join(allowed, ", ")+") and set "+f+" to that reference")
	})
}

// digest implements baseline.digest.
func (e *evaluation) digest() {
	if !e.cfg.RequireDigest {
		return
	}
	e.images(func(img image) {
		ref, err := parseImage(img.ref)
		if err != nil {
			f, who := e.imageAt(img)
			e.add(f, who+" image "+strconv.Quote(img.ref)+" is not a valid image reference ("+f+"): "+err.Error(),
				"set "+f+" to a reference pinned by digest: <registry>/<repository>@sha256:<64 hex digits>")
			return
		}
		if !strings.HasPrefix(ref.digest, "sha256:") {
			f, who := e.imageAt(img)
			e.add(f, who+" image "+strconv.Quote(img.ref)+" is not pinned by a sha256 digest ("+f+")",
				"set "+f+" to "+ref.name()+"@sha256:<64 hex digits> (the digest of the image you tested)")
		}
	})
}

// automount implements baseline.automount. Kubernetes mounts the token when
// the pod says nothing (unless the service account opts out, which this
// pure check cannot see), so silence is refused and the pod must choose.
func (e *evaluation) automount() {
	if e.spec.AutomountServiceAccountToken == nil {
		f := e.specField("automountServiceAccountToken")
		e.add(f, "the pod does not set "+f+", so Kubernetes mounts its service-account token by default",
			"set "+f+": false, or true if the pod must call the Kubernetes API")
	}
}

// runtimeClass implements baseline.runtime-class.
func (e *evaluation) runtimeClass() {
	var labels map[string]string
	if e.w.PodMeta != nil {
		labels = e.w.PodMeta.Labels
	}
	want := e.cfg.runtimeClass()
	rc := e.spec.RuntimeClassName
	if rc != nil && *rc == want {
		return // Whether high-risk or not, this is compliant.
	}
	high, why := e.cfg.HighRisk(e.namespace, labels)
	if !high {
		return
	}
	f := e.specField("runtimeClassName")
	switch {
	case rc == nil || *rc == "":
		e.add(f, "the pod is high-risk ("+why+") and sets no "+f+"; it must run under "+strconv.Quote(want),
			"set "+f+": "+want)
	default:
		e.add(f, "the pod is high-risk ("+why+") and runs under runtime class "+strconv.Quote(*rc)+" ("+f+"); it must run under "+strconv.Quote(want),
			"set "+f+": "+want)
	}
}
