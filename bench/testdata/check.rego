# Rampart's Check (authz.Index.Check) written in Rego, for the benchmark in rampart.dev/rampart/bench.
#
# allow is true iff the resource is in the catalogue and one of the subject's grants is in
# effect now (starts <= now < expires, Unix nanoseconds) and its role gives the action ("*":
# every action) on the resource. The data document is built by Dataset.OPAData:
#
#   resources: {name: true}
#   roles:     {role: {resource: [action, ...]}}
#   grants:    {subject: [{id, role, starts, expires}, ...]}
package rampart

default allow := false

allow if {
	data.resources[input.resource]
	some g in data.grants[input.subject]
	role_allows(data.roles[g.role][input.resource], input.action)
	now := time.now_ns()
	g.starts <= now
	now < g.expires
}

role_allows(actions, action) if action in actions

role_allows(actions, _) if "*" in actions
