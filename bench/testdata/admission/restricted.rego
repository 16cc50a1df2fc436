# The Pod Security Standards restricted profile (Kubernetes 1.37), as Rampart's kube/podsec
# implements it: every check of the upstream evaluator at the restricted level, including the
# baseline-level checks that level keeps.
package rampart.admission

# restricted.privileged
deny contains msg if {
	some c in containers
	c.securityContext.privileged == true
	msg := sprintf("[restricted.privileged] container %q runs privileged", [c.name])
}

# restricted.host-namespaces
deny contains msg if {
	some f in ["hostNetwork", "hostPID", "hostIPC"]
	spec[f] == true
	msg := sprintf("[restricted.host-namespaces] the pod sets %s: true", [f])
}

# restricted.volume-types: no restricted source, and a source of an allowed type.
restricted_volume_sources := {
	"hostPath", "gcePersistentDisk", "awsElasticBlockStore", "gitRepo", "nfs", "iscsi", "glusterfs",
	"rbd", "flexVolume", "cinder", "cephfs", "flocker", "fc", "azureFile", "vsphereVolume", "quobyte",
	"azureDisk", "photonPersistentDisk", "portworxVolume", "scaleIO", "storageos",
}

allowed_volume_sources := {
	"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "image", "persistentVolumeClaim",
	"projected", "secret",
}

deny contains msg if {
	some v in spec.volumes
	some f, x in v
	x != null
	restricted_volume_sources[f]
	msg := sprintf("[restricted.volume-types] volume %q is of restricted type %s", [v.name, f])
}

deny contains msg if {
	some v in spec.volumes
	not has_source(v)
	msg := sprintf("[restricted.volume-types] volume %q names no allowed volume type", [v.name])
}

has_source(v) if {
	some f, x in v
	x != null
	allowed_volume_sources[f]
}

has_source(v) if {
	some f, x in v
	x != null
	restricted_volume_sources[f]
}

# restricted.host-ports
deny contains msg if {
	some c in containers
	some p in c.ports
	p.hostPort != 0
	p.hostPort != null
	msg := sprintf("[restricted.host-ports] container %q binds host port %v", [c.name, p.hostPort])
}

# restricted.capabilities (skipped for Windows pods, as upstream does)
deny contains msg if {
	not windows
	some c in containers
	not drops_all(c)
	msg := sprintf("[restricted.capabilities] container %q does not drop ALL capabilities", [c.name])
}

drops_all(c) if "ALL" in c.securityContext.capabilities.drop

deny contains msg if {
	not windows
	some c in containers
	some cap in c.securityContext.capabilities.add
	cap != "NET_BIND_SERVICE"
	msg := sprintf("[restricted.capabilities] container %q adds capability %q", [c.name, cap])
}

# restricted.privilege-escalation (skipped for Windows pods): must be set, to false.
deny contains msg if {
	not windows
	some c in containers
	not c.securityContext.allowPrivilegeEscalation == false
	msg := sprintf("[restricted.privilege-escalation] container %q does not set allowPrivilegeEscalation: false", [c.name])
}

# restricted.run-as-non-root (relaxed in a user namespace): true on the pod or on every
# container, and false nowhere.
deny contains "[restricted.run-as-non-root] the pod sets runAsNonRoot: false" if {
	not user_namespace
	spec.securityContext.runAsNonRoot == false
}

deny contains msg if {
	not user_namespace
	some c in containers
	c.securityContext.runAsNonRoot == false
	msg := sprintf("[restricted.run-as-non-root] container %q sets runAsNonRoot: false", [c.name])
}

deny contains msg if {
	not user_namespace
	unset(spec, ["securityContext", "runAsNonRoot"])
	some c in containers
	unset(c, ["securityContext", "runAsNonRoot"])
	msg := sprintf("[restricted.run-as-non-root] neither container %q nor the pod sets runAsNonRoot: true", [c.name])
}

# restricted.run-as-user (relaxed in a user namespace)
deny contains "[restricted.run-as-user] the pod runs as root (runAsUser: 0)" if {
	not user_namespace
	spec.securityContext.runAsUser == 0
}

deny contains msg if {
	not user_namespace
	some c in containers
	c.securityContext.runAsUser == 0
	msg := sprintf("[restricted.run-as-user] container %q runs as root (runAsUser: 0)", [c.name])
}

# restricted.seccomp (skipped for Windows pods): RuntimeDefault or Localhost, on the pod or on
# every container.
good_profiles := {"RuntimeDefault", "Localhost"}

deny contains msg if {
	not windows
	p := spec.securityContext.seccompProfile
	p != null
	t := str(p, "type")
	not good_profiles[t]
	msg := sprintf("[restricted.seccomp] the pod's seccomp profile type is %q", [t])
}

deny contains msg if {
	not windows
	some c in containers
	p := c.securityContext.seccompProfile
	p != null
	t := str(p, "type")
	not good_profiles[t]
	msg := sprintf("[restricted.seccomp] container %q has seccomp profile type %q", [c.name, t])
}

deny contains msg if {
	not windows
	unset(spec, ["securityContext", "seccompProfile"])
	some c in containers
	unset(c, ["securityContext", "seccompProfile"])
	msg := sprintf("[restricted.seccomp] neither container %q nor the pod sets a seccomp profile", [c.name])
}

# restricted.apparmor: the fields, and the deprecated per-container annotations.
deny contains msg if {
	p := spec.securityContext.appArmorProfile
	p != null
	t := str(p, "type")
	not good_profiles[t]
	msg := sprintf("[restricted.apparmor] the pod's AppArmor profile type is %q", [t])
}

deny contains msg if {
	some c in containers
	p := c.securityContext.appArmorProfile
	p != null
	t := str(p, "type")
	not good_profiles[t]
	msg := sprintf("[restricted.apparmor] container %q has AppArmor profile type %q", [c.name, t])
}

deny contains msg if {
	some k, v in meta.annotations
	startswith(k, "container.apparmor.security.beta.kubernetes.io/")
	not good_apparmor_annotation(v)
	msg := sprintf("[restricted.apparmor] annotation %s sets AppArmor profile %q", [k, v])
}

good_apparmor_annotation(v) if v == ""

good_apparmor_annotation(v) if v == "runtime/default"

good_apparmor_annotation(v) if startswith(v, "localhost/")

# restricted.selinux
selinux_types := {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}

selinux_options contains o if {
	o := spec.securityContext.seLinuxOptions
	is_object(o)
}

selinux_options contains o if {
	some c in containers
	o := c.securityContext.seLinuxOptions
	is_object(o)
}

deny contains msg if {
	some o in selinux_options
	t := str(o, "type")
	not selinux_types[t]
	msg := sprintf("[restricted.selinux] SELinux type %q", [t])
}

deny contains msg if {
	some o in selinux_options
	some f in ["user", "role"]
	str(o, f) != ""
	msg := sprintf("[restricted.selinux] SELinux %s %q", [f, o[f]])
}

# restricted.proc-mount
deny contains msg if {
	some c in containers
	c.securityContext.procMount != null
	c.securityContext.procMount != "Default"
	msg := sprintf("[restricted.proc-mount] container %q uses procMount %q", [c.name, c.securityContext.procMount])
}

# restricted.sysctls
safe_sysctls := {
	"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies",
	"net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start",
	"net.ipv4.ip_local_reserved_ports", "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout",
	"net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes", "net.ipv4.tcp_rmem",
	"net.ipv4.tcp_wmem", "net.ipv4.tcp_slow_start_after_idle", "net.ipv4.tcp_notsent_lowat",
}

deny contains msg if {
	some s in spec.securityContext.sysctls
	name := str(s, "name")
	not safe_sysctls[name]
	msg := sprintf("[restricted.sysctls] the pod sets sysctl %q", [name])
}

# restricted.host-probes: probes and lifecycle handlers must not name a host.
deny contains msg if {
	some c in containers
	some handler in ["livenessProbe", "readinessProbe", "startupProbe"]
	some action in ["httpGet", "tcpSocket"]
	host := c[handler][action].host
	host != ""
	host != null
	msg := sprintf("[restricted.host-probes] container %q %s targets host %q", [c.name, handler, host])
}

deny contains msg if {
	some c in containers
	some hook in ["postStart", "preStop"]
	some action in ["httpGet", "tcpSocket"]
	host := c.lifecycle[hook][action].host
	host != ""
	host != null
	msg := sprintf("[restricted.host-probes] container %q %s hook targets host %q", [c.name, hook, host])
}

# restricted.windows-host-process
deny contains "[restricted.windows-host-process] the pod runs as a Windows HostProcess" if {
	spec.securityContext.windowsOptions.hostProcess == true
}

deny contains msg if {
	some c in containers
	c.securityContext.windowsOptions.hostProcess == true
	msg := sprintf("[restricted.windows-host-process] container %q runs as a Windows HostProcess", [c.name])
}
