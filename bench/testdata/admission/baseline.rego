# Rampart's research baseline (kube/podsec research.go): images only from allowed registries and
# pinned by digest, an explicit choice about the service-account token, and the sandbox runtime
# class for high-risk pods. Settings: data.rampart.config.
package rampart.admission

config := data.rampart.config

# images: every image the pod pulls, containers' and image volumes'.
images contains img if {
	some c in containers
	img := str(c, "image")
}

images contains img if {
	some v in spec.volumes
	is_object(v.image)
	img := str(v.image, "reference")
}

# parsed: each valid image reference, parsed once per review.
parsed := {img: ref | some img in images; ref := parse_image(img)}

# baseline.registry
deny contains msg if {
	count(config.allowed_registries) > 0
	some img in images
	not allowed_image(img)
	msg := sprintf("[baseline.registry] image %q is not a valid reference under an allowed registry (%s)", [img, concat(", ", config.allowed_registries)])
}

allowed_image(img) if {
	ref := parsed[img]
	some entry in config.allowed_registries
	under(ref, entry)
}

# baseline.digest
deny contains msg if {
	config.require_digest
	some img in images
	not pinned(img)
	msg := sprintf("[baseline.digest] image %q is not pinned by a sha256 digest", [img])
}

pinned(img) if startswith(parsed[img].digest, "sha256:")

# baseline.automount
deny contains "[baseline.automount] the pod does not set automountServiceAccountToken" if {
	unset(spec, "automountServiceAccountToken")
}

# baseline.runtime-class: a high-risk pod runs under the configured runtime class.
deny contains msg if {
	want := config.runtime_class
	not spec.runtimeClassName == want
	high_risk
	msg := sprintf("[baseline.runtime-class] the pod is high-risk and must run under runtimeClassName %q", [want])
}

high_risk if namespace in config.high_risk_namespaces

high_risk if {
	some k, v in config.high_risk_labels
	meta.labels[k] == v
}

# Image references, normalized as container runtimes do (distribution/reference
# ParseNormalizedNamed): "nginx" is docker.io/library/nginx. parse_image is undefined for an
# invalid reference.
parse_image(s) := {"domain": domain, "path": path, "digest": digest} if {
	s != ""
	not regex.match(`^[a-f0-9]{64}$`, s)
	[domain, rest] := split_domain(s)
	regex.match(`^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$`, domain)
	[name, digest] := cut(rest, "@")
	[path, tag] := cut(name, ":")
	count(path) <= 255
	regex.match(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$`, path)
	valid_tag(name, tag)
	valid_digest(rest, digest)
}

# cut splits s at the first sep, as Go's strings.Cut: [s, ""] when sep is absent.
cut(s, sep) := [substring(s, 0, i), substring(s, i + count(sep), -1)] if {
	i := indexof(s, sep)
	i >= 0
} else := [s, ""]

valid_tag(name, _) if not contains(name, ":")

valid_tag(name, tag) if {
	contains(name, ":")
	count(tag) <= 128
	regex.match(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`, tag)
}

valid_digest(rest, _) if not contains(rest, "@")

valid_digest(rest, digest) if {
	contains(rest, "@")
	[algorithm, hex] := cut(digest, ":")
	count(hex) == digest_length[algorithm]
	regex.match(`^[a-f0-9]+$`, hex)
}

digest_length := {"sha256": 64, "sha384": 96, "sha512": 128}

# split_domain splits off the registry host as the Docker reference library does.
split_domain(s) := ["docker.io", concat("", ["library/", s])] if {
	not contains(s, "/")
} else := [domain, hub_library(domain, rest)] if {
	[first, rest] := cut(s, "/")
	is_domain(first)
	domain := hub(first)
} else := ["docker.io", s]

is_domain(f) if f == "localhost"

is_domain(f) if contains(f, ".")

is_domain(f) if contains(f, ":")

is_domain(f) if f != lower(f)

hub(f) := "docker.io" if f == "index.docker.io" else := f

# "docker.io/nginx" is "docker.io/library/nginx".
hub_library(domain, rest) := concat("", ["library/", rest]) if {
	domain == "docker.io"
	not contains(rest, "/")
} else := rest

# under: the image's repository is the entry or below it, at whole path components; hosts
# compare case-insensitively.
under(ref, entry) if {
	[host, path] := cut(trim_right(entry, "/"), "/")
	host != ""
	lower(hub(lower(host))) == lower(ref.domain)
	under_path(ref.path, path)
}

under_path(_, "")

under_path(p, path) if {
	path != ""
	p == path
}

under_path(p, path) if {
	path != ""
	startswith(p, concat("", [path, "/"]))
}
