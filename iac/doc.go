// Package iac checks infrastructure as code: the Kubernetes objects a repository declares, in
// plain YAML or JSON manifests or a kustomization (rendered by sigs.k8s.io/kustomize/api), before
// they reach a cluster, and, live, how a cluster has drifted from them.
//
// Check runs the admission webhook's own code on every declared object (kube/podsec's Pod
// Security restricted profile and research baseline, gVisor for high-risk pods, kube/admission's
// protected-data checks, kube/netpol's default-deny egress shape and what widens it, kube/rbac's
// drift), so that a manifest that passes in CI is one the webhook admits, plus what only Git can
// get wrong: a Secret with data in it, an image not pinned by digest. Exceptions are the
// webhook's too: active grants, asked of the decision engine (invariant 3: access to a protected
// ClusterRole comes only from a grant, never from a binding in Git). Without a decision engine
// to ask, nothing is granted: every reference to protected data fails and no exception waives a
// finding (invariant 6, fail closed).
//
// Manifests are untrusted input (anyone who may open a pull request writes them): Decode reads
// them strictly and within fixed bounds (invariant 7), Render builds a kustomization with
// plugins, exec functions and Helm off, loading restricted to the directory, and refuses
// remote bases, which kustomize would fetch at build time.
//
// Drift compares the declared objects with a live cluster by server-side apply in dry-run: what
// the apiserver would make of each declared object is compared with what it holds, so defaults
// and fields the server owns do not count as drift.
package iac
