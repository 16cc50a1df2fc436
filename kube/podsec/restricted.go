package podsec

import (
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// This file holds the Pod Security Standards restricted profile, as
// k8s.io/pod-security-admission evaluates it at version 1.37. Each method
// says which upstream check it implements; where upstream reports a
// container only implicitly (it inherits a bad or missing pod-level value),
// we report the field whose change fixes it.

// privileged implements upstream "privileged".
func (e *evaluation) privileged() {
	e.containers(func(c container) {
		sc := c.c.SecurityContext
		if sc != nil && sc.Privileged != nil && *sc.Privileged {
			f := e.path(c) + ".securityContext.privileged"
			e.add(f, c.name()+" runs privileged ("+f+": true)", "remove "+f+" or set it to false")
		}
	})
}

// hostNamespaces implements upstream "hostNamespaces".
func (e *evaluation) hostNamespaces() {
	for _, ns := range [...]struct {
		field, what string
		set         bool
	}{
		{"hostNetwork", "network", e.spec.HostNetwork},
		{"hostPID", "PID", e.spec.HostPID},
		{"hostIPC", "IPC", e.spec.HostIPC},
	} {
		if ns.set {
			f := e.specField(ns.field)
			e.add(f, "the pod shares the host's "+ns.what+" namespace ("+f+": true)", "remove "+f+" or set it to false")
		}
	}
}

// restrictedVolumeSources are the volume types the restricted profile
// forbids, by field name.
var restrictedVolumeSources = [...]struct {
	field string
	set   func(*corev1.VolumeSource) bool
}{
	{"hostPath", func(v *corev1.VolumeSource) bool { return v.HostPath != nil }},
	{"gcePersistentDisk", func(v *corev1.VolumeSource) bool { return v.GCEPersistentDisk != nil }},
	{"awsElasticBlockStore", func(v *corev1.VolumeSource) bool { return v.AWSElasticBlockStore != nil }},
	{"gitRepo", func(v *corev1.VolumeSource) bool { return v.GitRepo != nil }},
	{"nfs", func(v *corev1.VolumeSource) bool { return v.NFS != nil }},
	{"iscsi", func(v *corev1.VolumeSource) bool { return v.ISCSI != nil }},
	{"glusterfs", func(v *corev1.VolumeSource) bool { return v.Glusterfs != nil }},
	{"rbd", func(v *corev1.VolumeSource) bool { return v.RBD != nil }},
	{"flexVolume", func(v *corev1.VolumeSource) bool { return v.FlexVolume != nil }},
	{"cinder", func(v *corev1.VolumeSource) bool { return v.Cinder != nil }},
	{"cephfs", func(v *corev1.VolumeSource) bool { return v.CephFS != nil }},
	{"flocker", func(v *corev1.VolumeSource) bool { return v.Flocker != nil }},
	{"fc", func(v *corev1.VolumeSource) bool { return v.FC != nil }},
	{"azureFile", func(v *corev1.VolumeSource) bool { return v.AzureFile != nil }},
	{"vsphereVolume", func(v *corev1.VolumeSource) bool { return v.VsphereVolume != nil }},
	{"quobyte", func(v *corev1.VolumeSource) bool { return v.Quobyte != nil }},
	{"azureDisk", func(v *corev1.VolumeSource) bool { return v.AzureDisk != nil }},
	{"photonPersistentDisk", func(v *corev1.VolumeSource) bool { return v.PhotonPersistentDisk != nil }},
	{"portworxVolume", func(v *corev1.VolumeSource) bool { return v.PortworxVolume != nil }},
	{"scaleIO", func(v *corev1.VolumeSource) bool { return v.ScaleIO != nil }},
	{"storageos", func(v *corev1.VolumeSource) bool { return v.StorageOS != nil }},
}

const allowedVolumeTypes = "configMap, csi, downwardAPI, emptyDir, ephemeral, image, persistentVolumeClaim, projected, secret"

func allowedVolumeSource(v *corev1.VolumeSource) bool {
	return v.ConfigMap != nil || v.CSI != nil || v.DownwardAPI != nil || v.EmptyDir != nil ||
		v.Ephemeral != nil || v.Image != nil || v.PersistentVolumeClaim != nil ||
		v.Projected != nil || v.Secret != nil
}

// volumeTypes implements upstream "restrictedVolumes" (which replaces
// "hostPathVolumes" at the restricted level). Unlike upstream, a volume that
// sets an allowed and a restricted source is refused for the restricted one.
func (e *evaluation) volumeTypes() {
	for i := range e.spec.Volumes {
		v := &e.spec.Volumes[i]
		vp := func() string { return e.w.SpecPath + ".volumes[" + strconv.Itoa(i) + "]" }
		found := false
		for _, r := range restrictedVolumeSources {
			if r.set(&v.VolumeSource) {
				found = true
				f := vp() + "." + r.field
				fix := "replace " + f + " with a volume source of an allowed type (" + allowedVolumeTypes + ")"
				if r.field == "hostPath" {
					fix = "remove " + f + "; use a persistentVolumeClaim or emptyDir instead"
				}
				e.add(f, "volume "+strconv.Quote(v.Name)+" is of restricted type "+r.field+" ("+f+")", fix)
			}
		}
		if !found && !allowedVolumeSource(&v.VolumeSource) {
			f := vp()
			e.add(f, "volume "+strconv.Quote(v.Name)+" ("+f+") names no volume type this Rampart knows",
				"give "+f+" one of the allowed types ("+allowedVolumeTypes+")")
		}
	}
}

// hostPorts implements upstream "hostPorts".
func (e *evaluation) hostPorts() {
	e.containers(func(c container) {
		for j, p := range c.c.Ports {
			if p.HostPort != 0 {
				f := e.path(c) + ".ports[" + strconv.Itoa(j) + "].hostPort"
				e.add(f, c.name()+" binds host port "+strconv.Itoa(int(p.HostPort))+" ("+f+")",
					"remove "+f+"; reach the container through a Service instead")
			}
		}
	})
}

// capabilities implements upstream "capabilities_restricted" (which
// replaces "capabilities_baseline"; its add rule is the stricter one).
// Upstream skips it for Windows pods.
func (e *evaluation) capabilities() {
	if e.windows() {
		return
	}
	e.containers(func(c container) {
		sc := c.c.SecurityContext
		if sc == nil || sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
			cp := e.path(c) + ".securityContext.capabilities"
			e.add(cp+".drop", c.name()+" does not drop ALL capabilities ("+cp+".drop must include \"ALL\")",
				"set "+cp+`.drop: ["ALL"]`)
		}
		if sc == nil || sc.Capabilities == nil {
			return
		}
		for k, cap := range sc.Capabilities.Add {
			if cap != "NET_BIND_SERVICE" {
				cp := e.path(c) + ".securityContext.capabilities"
				f := cp + ".add[" + strconv.Itoa(k) + "]"
				e.add(f, c.name()+" adds capability "+strconv.Quote(string(cap))+" ("+f+")",
					"remove "+strconv.Quote(string(cap))+" from "+cp+".add; only NET_BIND_SERVICE may be added")
			}
		}
	})
}

// privilegeEscalation implements upstream "allowPrivilegeEscalation",
// which upstream skips for Windows pods.
func (e *evaluation) privilegeEscalation() {
	if e.windows() {
		return
	}
	e.containers(func(c container) {
		sc := c.c.SecurityContext
		f := func() string { return e.path(c) + ".securityContext.allowPrivilegeEscalation" }
		switch {
		case sc == nil || sc.AllowPrivilegeEscalation == nil:
			f := f()
			e.add(f, c.name()+" does not set "+f+": false (it defaults to true)", "set "+f+": false")
		case *sc.AllowPrivilegeEscalation:
			f := f()
			e.add(f, c.name()+" allows privilege escalation ("+f+": true)", "set "+f+": false")
		}
	})
}

// setting is whether a pod or container sets a value, and whether the value
// is good.
type setting struct{ set, ok bool }

// inherited checks a value that containers inherit from the pod unless they
// set their own (runAsNonRoot, seccomp), at field (e.g.
// "securityContext.runAsNonRoot") under the pod spec and each container.
// A bad value is reported where it is set. Containers that set nothing,
// while the pod sets nothing either, are reported one by one, or once at
// the pod level when no container sets the value (one fix covers all). A
// bad pod-level value already covers the containers that inherit it.
//
// describe writes the message and fix; c is nil for the pod level, bad
// tells a bad value from a missing one.
func (e *evaluation) inherited(field string, pod setting, of func(*corev1.Container) setting,
	describe func(c *container, f string, bad bool) (msg, fix string),
) {
	report := func(c container, bad bool) {
		if c.c == nil {
			f := e.specField(field)
			msg, fix := describe(nil, f, bad)
			e.add(f, msg, fix)
			return
		}
		f := e.path(c) + "." + field
		msg, fix := describe(&c, f, bad)
		e.add(f, msg, fix)
	}
	if pod.set && !pod.ok {
		report(container{}, true)
	}
	total, set := 0, 0
	e.containers(func(c container) {
		total++
		if s := of(c.c); s.set {
			set++
			if !s.ok {
				report(c, true)
			}
		}
	})
	switch {
	case pod.set || set == total:
	case set == 0:
		report(container{}, false)
	default:
		e.containers(func(c container) {
			if !of(c.c).set {
				report(c, false)
			}
		})
	}
}

// runAsNonRoot implements upstream "runAsNonRoot", relaxed (as upstream
// does since 1.35) for pods in a user namespace.
func (e *evaluation) runAsNonRoot() {
	if e.userNamespace() {
		return
	}
	var pod setting
	if psc := e.spec.SecurityContext; psc != nil && psc.RunAsNonRoot != nil {
		pod = setting{true, *psc.RunAsNonRoot}
	}
	e.inherited("securityContext.runAsNonRoot", pod,
		func(c *corev1.Container) setting {
			if sc := c.SecurityContext; sc != nil && sc.RunAsNonRoot != nil {
				return setting{true, *sc.RunAsNonRoot}
			}
			return setting{}
		},
		func(c *container, f string, bad bool) (string, string) {
			switch {
			case c == nil && bad:
				return "the pod allows running as root (" + f + ": false)", "set " + f + ": true"
			case c == nil:
				return "neither the pod nor its containers set runAsNonRoot: true (" + f + ")", "set " + f + ": true"
			case bad:
				return c.name() + " allows running as root (" + f + ": false)", "set " + f + ": true"
			}
			pf := e.specField("securityContext.runAsNonRoot")
			return c.name() + " may run as root: neither " + f + " nor " + pf + " is true",
				"set " + f + ": true, or " + pf + ": true for the whole pod"
		})
}

// runAsUser implements upstream "runAsUser", relaxed for pods in a user
// namespace. Upstream refuses a pod-level 0 even when every container sets
// another UID, and so do we.
func (e *evaluation) runAsUser() {
	if e.userNamespace() {
		return
	}
	fix := func(f string) string { return "set " + f + " to a non-zero UID (e.g. 65532), or remove it" }
	if psc := e.spec.SecurityContext; psc != nil && psc.RunAsUser != nil && *psc.RunAsUser == 0 {
		f := e.specField("securityContext.runAsUser")
		e.add(f, "the pod runs as root ("+f+": 0)", fix(f))
	}
	e.containers(func(c container) {
		if sc := c.c.SecurityContext; sc != nil && sc.RunAsUser != nil && *sc.RunAsUser == 0 {
			f := e.path(c) + ".securityContext.runAsUser"
			e.add(f, c.name()+" runs as root ("+f+": 0)", fix(f))
		}
	})
}

func validSeccomp(t corev1.SeccompProfileType) bool {
	return t == corev1.SeccompProfileTypeRuntimeDefault || t == corev1.SeccompProfileTypeLocalhost
}

// seccomp implements upstream "seccompProfile_restricted" (which replaces
// "seccompProfile_baseline"), skipped for Windows pods as upstream does.
// At this version upstream reads only the fields, not the long-removed
// seccomp annotations.
func (e *evaluation) seccomp() {
	if e.windows() {
		return
	}
	var pod setting
	psc := e.spec.SecurityContext
	if psc != nil && psc.SeccompProfile != nil {
		pod = setting{true, validSeccomp(psc.SeccompProfile.Type)}
	}
	const good = "RuntimeDefault (or Localhost with a localhostProfile)"
	e.inherited("securityContext.seccompProfile.type", pod,
		func(c *corev1.Container) setting {
			if sc := c.SecurityContext; sc != nil && sc.SeccompProfile != nil {
				return setting{true, validSeccomp(sc.SeccompProfile.Type)}
			}
			return setting{}
		},
		func(c *container, f string, bad bool) (string, string) {
			switch {
			case c == nil && bad:
				return "the pod's seccomp profile type is " + strconv.Quote(string(psc.SeccompProfile.Type)) + " (" + f + ")", "set " + f + ": " + good
			case c == nil:
				return "no seccomp profile is set on the pod or its containers (" + f + ")", "set " + f + ": RuntimeDefault"
			case bad:
				return c.name() + " has seccomp profile type " + strconv.Quote(string(c.c.SecurityContext.SeccompProfile.Type)) + " (" + f + ")", "set " + f + ": " + good
			}
			pf := e.specField("securityContext.seccompProfile.type")
			return c.name() + " has no seccomp profile: neither " + f + " nor " + pf + " is set",
				"set " + f + ": RuntimeDefault, or " + pf + ": RuntimeDefault for the whole pod"
		})
}

func allowedAppArmorType(t corev1.AppArmorProfileType) bool {
	return t == corev1.AppArmorProfileTypeRuntimeDefault || t == corev1.AppArmorProfileTypeLocalhost
}

func allowedAppArmorAnnotation(v string) bool {
	return v == "" || v == corev1.DeprecatedAppArmorBetaProfileRuntimeDefault ||
		strings.HasPrefix(v, corev1.DeprecatedAppArmorBetaProfileNamePrefix)
}

// appArmor implements upstream "appArmorProfile": the fields and the
// deprecated per-container annotations (any key with the prefix, as
// upstream reads them).
func (e *evaluation) appArmor() {
	fix := func(f string) string { return "set " + f + ": RuntimeDefault (or Localhost with a localhostProfile)" }
	if psc := e.spec.SecurityContext; psc != nil && psc.AppArmorProfile != nil && !allowedAppArmorType(psc.AppArmorProfile.Type) {
		f := e.specField("securityContext.appArmorProfile.type")
		e.add(f, "the pod's AppArmor profile type is "+strconv.Quote(string(psc.AppArmorProfile.Type))+" ("+f+")", fix(f))
	}
	e.containers(func(c container) {
		if sc := c.c.SecurityContext; sc != nil && sc.AppArmorProfile != nil && !allowedAppArmorType(sc.AppArmorProfile.Type) {
			f := e.path(c) + ".securityContext.appArmorProfile.type"
			e.add(f, c.name()+" has AppArmor profile type "+strconv.Quote(string(sc.AppArmorProfile.Type))+" ("+f+")", fix(f))
		}
	})
	if e.w.PodMeta == nil {
		return
	}
	var bad []string
	for k, v := range e.w.PodMeta.Annotations {
		if strings.HasPrefix(k, corev1.DeprecatedAppArmorBetaContainerAnnotationKeyPrefix) && !allowedAppArmorAnnotation(v) {
			bad = append(bad, k)
		}
	}
	slices.Sort(bad)
	for _, k := range bad {
		f := e.w.MetaPath + ".annotations[" + k + "]"
		e.add(f, "annotation "+f+" sets AppArmor profile "+strconv.Quote(e.w.PodMeta.Annotations[k]),
			"set "+f+` to "runtime/default" or "localhost/<profile>", or remove it and set `+e.specField("securityContext.appArmorProfile.type")+": RuntimeDefault")
	}
}

// seLinux implements upstream "seLinuxOptions" (1.31+ type list).
func (e *evaluation) seLinux() {
	check := func(o *corev1.SELinuxOptions, prefix, who string) {
		switch o.Type {
		case "", "container_t", "container_init_t", "container_kvm_t", "container_engine_t":
		default:
			f := prefix + ".type"
			e.add(f, who+" sets SELinux type "+strconv.Quote(o.Type)+" ("+f+")",
				"remove "+f+" or set it to container_t, container_init_t, container_kvm_t or container_engine_t")
		}
		if o.User != "" {
			f := prefix + ".user"
			e.add(f, who+" sets SELinux user "+strconv.Quote(o.User)+" ("+f+")", "remove "+f)
		}
		if o.Role != "" {
			f := prefix + ".role"
			e.add(f, who+" sets SELinux role "+strconv.Quote(o.Role)+" ("+f+")", "remove "+f)
		}
	}
	if psc := e.spec.SecurityContext; psc != nil && psc.SELinuxOptions != nil {
		check(psc.SELinuxOptions, e.specField("securityContext.seLinuxOptions"), "the pod")
	}
	e.containers(func(c container) {
		if sc := c.c.SecurityContext; sc != nil && sc.SELinuxOptions != nil {
			check(sc.SELinuxOptions, e.path(c)+".securityContext.seLinuxOptions", c.name())
		}
	})
}

// procMount implements upstream "procMount_restricted": unlike the
// baseline check it is not relaxed for pods in a user namespace.
func (e *evaluation) procMount() {
	e.containers(func(c container) {
		if sc := c.c.SecurityContext; sc != nil && sc.ProcMount != nil && *sc.ProcMount != corev1.DefaultProcMount {
			f := e.path(c) + ".securityContext.procMount"
			e.add(f, c.name()+" uses procMount "+strconv.Quote(string(*sc.ProcMount))+" ("+f+")",
				"remove "+f+" or set it to Default")
		}
	})
}

// safeSysctls is upstream's allowlist as of 1.37.
var safeSysctls = map[string]bool{
	"kernel.shm_rmid_forced":              true,
	"net.ipv4.ip_local_port_range":        true,
	"net.ipv4.tcp_syncookies":             true,
	"net.ipv4.ping_group_range":           true,
	"net.ipv4.ip_unprivileged_port_start": true,
	"net.ipv4.ip_local_reserved_ports":    true,
	"net.ipv4.tcp_keepalive_time":         true,
	"net.ipv4.tcp_fin_timeout":            true,
	"net.ipv4.tcp_keepalive_intvl":        true,
	"net.ipv4.tcp_keepalive_probes":       true,
	"net.ipv4.tcp_rmem":                   true,
	"net.ipv4.tcp_wmem":                   true,
	"net.ipv4.tcp_slow_start_after_idle":  true,
	"net.ipv4.tcp_notsent_lowat":          true,
}

// sysctls implements upstream "sysctls".
func (e *evaluation) sysctls() {
	psc := e.spec.SecurityContext
	if psc == nil {
		return
	}
	for i, s := range psc.Sysctls {
		if !safeSysctls[s.Name] {
			entry := e.specField("securityContext.sysctls[" + strconv.Itoa(i) + "]")
			f := entry + ".name"
			e.add(f, "the pod sets sysctl "+strconv.Quote(s.Name)+", which is not in the safe set ("+f+")",
				"remove "+entry+"; only kernel.shm_rmid_forced and the safe net.ipv4.* sysctls of the Pod Security Standards may be set")
		}
	}
}

// hostProbes implements upstream "hostProbesAndHostLifecycle".
func (e *evaluation) hostProbes() {
	e.containers(func(c container) {
		report := func(f, host, what string) {
			e.add(f, c.name()+" "+what+" targets host "+strconv.Quote(host)+" ("+f+")",
				"remove "+f+"; the handler then targets the pod's own IP")
		}
		probe := func(p *corev1.Probe, name string) {
			if p == nil {
				return
			}
			if p.HTTPGet != nil && p.HTTPGet.Host != "" {
				report(e.path(c)+"."+name+".httpGet.host", p.HTTPGet.Host, name)
			}
			if p.TCPSocket != nil && p.TCPSocket.Host != "" {
				report(e.path(c)+"."+name+".tcpSocket.host", p.TCPSocket.Host, name)
			}
		}
		handler := func(h *corev1.LifecycleHandler, name string) {
			if h == nil {
				return
			}
			if h.HTTPGet != nil && h.HTTPGet.Host != "" {
				report(e.path(c)+".lifecycle."+name+".httpGet.host", h.HTTPGet.Host, name+" hook")
			}
			if h.TCPSocket != nil && h.TCPSocket.Host != "" {
				report(e.path(c)+".lifecycle."+name+".tcpSocket.host", h.TCPSocket.Host, name+" hook")
			}
		}
		probe(c.c.LivenessProbe, "livenessProbe")
		probe(c.c.ReadinessProbe, "readinessProbe")
		probe(c.c.StartupProbe, "startupProbe")
		if l := c.c.Lifecycle; l != nil {
			handler(l.PostStart, "postStart")
			handler(l.PreStop, "preStop")
		}
	})
}

// windowsHostProcess implements upstream "windowsHostProcess".
func (e *evaluation) windowsHostProcess() {
	hp := func(o *corev1.WindowsSecurityContextOptions) bool {
		return o != nil && o.HostProcess != nil && *o.HostProcess
	}
	if psc := e.spec.SecurityContext; psc != nil && hp(psc.WindowsOptions) {
		f := e.specField("securityContext.windowsOptions.hostProcess")
		e.add(f, "the pod runs as a Windows HostProcess ("+f+": true)", "remove "+f+" or set it to false")
	}
	e.containers(func(c container) {
		if sc := c.c.SecurityContext; sc != nil && hp(sc.WindowsOptions) {
			f := e.path(c) + ".securityContext.windowsOptions.hostProcess"
			e.add(f, c.name()+" runs as a Windows HostProcess ("+f+": true)", "remove "+f+" or set it to false")
		}
	})
}
