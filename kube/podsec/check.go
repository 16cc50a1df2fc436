package podsec

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// DefaultRuntimeClass is the runtime class high-risk pods must use when
// Config.RuntimeClass is empty.
const DefaultRuntimeClass = "gvisor"

// Check ids. They are stable: exceptions, ledger entries and scan reports
// name them.
const (
	CheckPrivileged          = "restricted.privileged"
	CheckHostNamespaces      = "restricted.host-namespaces"
	CheckVolumeTypes         = "restricted.volume-types"
	CheckHostPorts           = "restricted.host-ports"
	CheckCapabilities        = "restricted.capabilities"
	CheckPrivilegeEscalation = "restricted.privilege-escalation"
	CheckRunAsNonRoot        = "restricted.run-as-non-root"
	CheckRunAsUser           = "restricted.run-as-user"
	CheckSeccomp             = "restricted.seccomp"
	CheckAppArmor            = "restricted.apparmor"
	CheckSELinux             = "restricted.selinux"
	CheckProcMount           = "restricted.proc-mount"
	CheckSysctls             = "restricted.sysctls"
	CheckHostProbes          = "restricted.host-probes"
	CheckWindowsHostProcess  = "restricted.windows-host-process"

	CheckRegistry     = "baseline.registry"
	CheckDigest       = "baseline.digest"
	CheckAutomount    = "baseline.automount"
	CheckRuntimeClass = "baseline.runtime-class"
)

// CheckInfo describes one check, for exception requests, scan reports
// (SARIF rules) and documentation.
type CheckInfo struct {
	ID string
	// Upstream is the k8s.io/pod-security-admission check id this check
	// implements, "" for Rampart's own checks.
	Upstream string
	Summary  string
}

// checks is the evaluation order, which is also the order of violations.
var checks = []struct {
	CheckInfo
	run func(*evaluation)
}{
	{CheckInfo{CheckPrivileged, "privileged", "containers must not run privileged"}, (*evaluation).privileged},
	{CheckInfo{CheckHostNamespaces, "hostNamespaces", "the pod must not share the host's network, PID or IPC namespace"}, (*evaluation).hostNamespaces},
	{CheckInfo{CheckVolumeTypes, "restrictedVolumes", "volumes only of types configMap, csi, downwardAPI, emptyDir, ephemeral, image, persistentVolumeClaim, projected, secret (no hostPath)"}, (*evaluation).volumeTypes},
	{CheckInfo{CheckHostPorts, "hostPorts", "containers must not bind host ports"}, (*evaluation).hostPorts},
	{CheckInfo{CheckCapabilities, "capabilities_restricted", `containers must drop ALL capabilities and add none but NET_BIND_SERVICE`}, (*evaluation).capabilities},
	{CheckInfo{CheckPrivilegeEscalation, "allowPrivilegeEscalation", "containers must set allowPrivilegeEscalation: false"}, (*evaluation).privilegeEscalation},
	{CheckInfo{CheckRunAsNonRoot, "runAsNonRoot", "containers must run with runAsNonRoot: true (set on the pod or on each container)"}, (*evaluation).runAsNonRoot},
	{CheckInfo{CheckRunAsUser, "runAsUser", "the pod and containers must not set runAsUser: 0"}, (*evaluation).runAsUser},
	{CheckInfo{CheckSeccomp, "seccompProfile_restricted", "a seccomp profile of type RuntimeDefault or Localhost must be set (on the pod or on each container)"}, (*evaluation).seccomp},
	{CheckInfo{CheckAppArmor, "appArmorProfile", "AppArmor profiles may only be RuntimeDefault or Localhost"}, (*evaluation).appArmor},
	{CheckInfo{CheckSELinux, "seLinuxOptions", "SELinux options may not set user or role, and type only to a container type"}, (*evaluation).seLinux},
	{CheckInfo{CheckProcMount, "procMount_restricted", "containers must use the Default /proc mount"}, (*evaluation).procMount},
	{CheckInfo{CheckSysctls, "sysctls", "only the safe, namespaced sysctls may be set"}, (*evaluation).sysctls},
	{CheckInfo{CheckHostProbes, "hostProbesAndHostLifecycle", "probes and lifecycle handlers must not name a host"}, (*evaluation).hostProbes},
	{CheckInfo{CheckWindowsHostProcess, "windowsHostProcess", "Windows pods must not run as HostProcess"}, (*evaluation).windowsHostProcess},
	{CheckInfo{CheckRegistry, "", "images only from the allowed registries"}, (*evaluation).registry},
	{CheckInfo{CheckDigest, "", "images pinned by sha256 digest"}, (*evaluation).digest},
	{CheckInfo{CheckAutomount, "", "the pod must say explicitly whether the service-account token is mounted"}, (*evaluation).automount},
	{CheckInfo{CheckRuntimeClass, "", "high-risk pods must run under the sandbox runtime class"}, (*evaluation).runtimeClass},
}

// Checks lists every check in evaluation order.
func Checks() []CheckInfo {
	out := make([]CheckInfo, len(checks))
	for i, c := range checks {
		out[i] = c.CheckInfo
	}
	return out
}

// Config is the research baseline's configuration. The zero value is usable:
// any registry, no digest required, no high-risk pods, runtime class
// "gvisor".
type Config struct {
	// AllowedRegistries are image name prefixes: a registry host with an
	// optional port and repository path, e.g. "registry.internal.example/"
	// or "registry.internal.example/research". They match whole components
	// of the normalized image name. Empty means any registry.
	AllowedRegistries []string
	// RequireDigest requires every image to be pinned by @sha256:<64 hex>.
	RequireDigest bool
	// RuntimeClass is the runtime class high-risk pods must use;
	// DefaultRuntimeClass when empty.
	RuntimeClass string
	// HighRiskNamespaces are namespaces whose pods are all high-risk.
	HighRiskNamespaces []string
	// HighRiskLabels marks a pod high-risk when it carries any of these
	// label key=value pairs.
	HighRiskLabels map[string]string
}

func (c *Config) runtimeClass() string {
	if c.RuntimeClass == "" {
		return DefaultRuntimeClass
	}
	return c.RuntimeClass
}

// HighRisk reports whether a pod in namespace with podLabels is high-risk,
// and why, for messages.
func (c *Config) HighRisk(namespace string, podLabels map[string]string) (bool, string) {
	if slices.Contains(c.HighRiskNamespaces, namespace) {
		return true, "namespace " + strconv.Quote(namespace) + " is high-risk"
	}
	// Map iteration order is random; pick the smallest matching key so the
	// reason is deterministic.
	var key string
	found := false
	for k, v := range c.HighRiskLabels {
		if lv, ok := podLabels[k]; ok && lv == v && (!found || k < key) {
			key, found = k, true
		}
	}
	if found {
		return true, "pod label " + key + "=" + c.HighRiskLabels[key] + " marks it high-risk"
	}
	return false, ""
}

// Violation is one failed check on one field.
type Violation struct {
	// Check is the stable check id (see Checks), what an exception waives.
	Check string
	// Field is the path of the offending field in the submitted object,
	// e.g. "spec.template.spec.containers[1].securityContext.privileged".
	Field string
	// Message says what is wrong, for people.
	Message string
	// Fix says what to change.
	Fix string
}

// String renders the violation on one line: check, message, fix.
func (v Violation) String() string {
	return v.Check + ": " + v.Message + "; fix: " + v.Fix
}

// Check runs every check on w and returns the violations, in a fixed order
// (see the package doc). namespace is the namespace the pod runs in (the
// admission request's); when empty, w.Meta.Namespace is used. exempt, when
// not nil, waives a check by id (an approved, active exception); it is asked
// only about checks that failed, at most once each per call.
func Check(w Workload, namespace string, cfg Config, exempt func(check string) bool) []Violation {
	if w.Spec == nil {
		return nil
	}
	if namespace == "" && w.Meta != nil {
		namespace = w.Meta.Namespace
	}
	e := &evaluation{w: w, spec: w.Spec, cfg: cfg, namespace: namespace}
	for i := range checks {
		c := &checks[i]
		e.check = c.ID
		before := len(e.out)
		c.run(e)
		// exempt is asked only about checks that failed: a compliant pod costs no lookups,
		// and only exceptions that waived something are reported as used.
		if len(e.out) > before && exempt != nil && exempt(c.ID) {
			e.out = e.out[:before]
		}
	}
	return e.out
}

// evaluation is the state of one Check call.
type evaluation struct {
	w         Workload
	spec      *corev1.PodSpec
	cfg       Config
	namespace string
	check     string // id of the check running now
	out       []Violation
}

func (e *evaluation) add(field, message, fix string) {
	if e.out == nil {
		e.out = make([]Violation, 0, 4)
	}
	e.out = append(e.out, Violation{Check: e.check, Field: field, Message: message, Fix: fix})
}

// specField is the path of a pod spec field.
func (e *evaluation) specField(f string) string { return e.w.SpecPath + "." + f }

// container is one container of any of the three lists, with what is needed
// to name it.
type container struct {
	c    *corev1.Container
	list string // "initContainers", "containers" or "ephemeralContainers"
	i    int
}

// path is the container's field path, e.g. "spec.containers[2]".
func (e *evaluation) path(c container) string {
	return e.w.SpecPath + "." + c.list + "[" + strconv.Itoa(c.i) + "]"
}

// name describes the container for messages: `container "app"`.
func (c container) name() string {
	kind := "container"
	switch c.list {
	case "initContainers":
		kind = "init container"
	case "ephemeralContainers":
		kind = "ephemeral container"
	}
	return kind + " " + strconv.Quote(c.c.Name)
}

// containers visits initContainers, containers and ephemeralContainers, in
// that order (the order upstream visits them, and the order they run).
func (e *evaluation) containers(fn func(c container)) {
	s := e.spec
	for i := range s.InitContainers {
		fn(container{&s.InitContainers[i], "initContainers", i})
	}
	for i := range s.Containers {
		fn(container{&s.Containers[i], "containers", i})
	}
	for i := range s.EphemeralContainers {
		fn(container{(*corev1.Container)(&s.EphemeralContainers[i].EphemeralContainerCommon), "ephemeralContainers", i})
	}
}

func (e *evaluation) windows() bool {
	return e.spec.OS != nil && e.spec.OS.Name == corev1.Windows
}

// userNamespace reports whether the pod runs in its own user namespace
// (hostUsers: false), where upstream relaxes runAsNonRoot and runAsUser:
// root in the pod is not root on the node.
func (e *evaluation) userNamespace() bool {
	return e.spec.HostUsers != nil && !*e.spec.HostUsers
}

// Validate reports the first problem in c, naming the field, for
// configuration loading and `rampart policy validate`. Check works on any
// Config, but an entry Validate refuses would match nothing, which is
// rarely what the author meant.
func (c *Config) Validate() error {
	for i, a := range c.AllowedRegistries {
		host, path, hasPath := strings.Cut(strings.TrimRight(a, "/"), "/")
		field := fmt.Sprintf("allowedRegistries[%d]", i)
		switch {
		case host == "":
			return fmt.Errorf("%s: %q: want a registry host with an optional repository path, e.g. \"registry.internal.example/research\"", field, a)
		case !validDomain(host):
			return fmt.Errorf("%s: %q: %q is not a valid registry host[:port]", field, a, host)
		case host != "localhost" && !strings.ContainsAny(host, ".:"):
			return fmt.Errorf("%s: %q: %q is not a registry host (it has no '.' or port); for Docker Hub write \"docker.io/%s\"", field, a, host, strings.TrimRight(a, "/"))
		case hasPath && !validPath(path):
			return fmt.Errorf("%s: %q: %q is not a valid repository path (lowercase letters, digits, . _ - separators, / between components)", field, a, path)
		}
	}
	if c.RuntimeClass != "" {
		if errs := validation.IsDNS1123Subdomain(c.RuntimeClass); len(errs) > 0 {
			return fmt.Errorf("runtimeClass: %q: %s", c.RuntimeClass, strings.Join(errs, "; "))
		}
	}
	for i, ns := range c.HighRiskNamespaces {
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			return fmt.Errorf("highRiskNamespaces[%d]: %q: %s", i, ns, strings.Join(errs, "; "))
		}
	}
	keys := make([]string, 0, len(c.HighRiskLabels))
	for k := range c.HighRiskLabels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			return fmt.Errorf("highRiskLabels: key %q: %s", k, strings.Join(errs, "; "))
		}
		if errs := validation.IsValidLabelValue(c.HighRiskLabels[k]); len(errs) > 0 {
			return fmt.Errorf("highRiskLabels[%s]: value %q: %s", k, c.HighRiskLabels[k], strings.Join(errs, "; "))
		}
	}
	return nil
}
