package sqlstore

// migrations are applied in order, each in its own transaction, and recorded in
// schema_migrations. The SQL is the common subset of SQLite and PostgreSQL: times are Unix
// nanoseconds in BIGINT, text is TEXT, so one schema serves both.
var migrations = []string{
	// 1: the ledger, the workflow, tokens.
	`
CREATE TABLE ledger_head (
	id   INTEGER PRIMARY KEY CHECK (id = 1),
	size BIGINT NOT NULL
);
INSERT INTO ledger_head (id, size) VALUES (1, 0);

CREATE TABLE ledger (
	seq   BIGINT PRIMARY KEY,
	entry TEXT NOT NULL
);

CREATE TABLE checkpoints (
	size       BIGINT PRIMARY KEY,
	note       TEXT NOT NULL,
	created_at BIGINT NOT NULL
);

CREATE TABLE meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
);

CREATE TABLE requests (
	id          TEXT PRIMARY KEY,
	role        TEXT NOT NULL,
	requester   TEXT NOT NULL,
	beneficiary TEXT NOT NULL,
	reason      TEXT NOT NULL,
	duration_ns BIGINT NOT NULL,
	state       TEXT NOT NULL,
	policy      TEXT NOT NULL,
	created_at  BIGINT NOT NULL,
	expires_at  BIGINT NOT NULL,
	decided_at  BIGINT NOT NULL,
	grant_id    TEXT NOT NULL,
	renewal_of  TEXT NOT NULL,
	break_glass BOOLEAN NOT NULL,
	post_review TEXT NOT NULL,
	version     BIGINT NOT NULL
);
CREATE INDEX requests_state ON requests (state, created_at);
CREATE INDEX requests_requester ON requests (requester, created_at);
CREATE INDEX requests_beneficiary ON requests (beneficiary, created_at);
CREATE INDEX requests_post_review ON requests (post_review);

CREATE TABLE reviews (
	request_id  TEXT NOT NULL REFERENCES requests (id),
	approver    TEXT NOT NULL,
	decision    TEXT NOT NULL,
	duration_ns BIGINT NOT NULL,
	comment     TEXT NOT NULL,
	at          BIGINT NOT NULL,
	PRIMARY KEY (request_id, approver)
);

CREATE TABLE grants (
	id          TEXT PRIMARY KEY,
	request_id  TEXT NOT NULL,
	role        TEXT NOT NULL,
	subject     TEXT NOT NULL,
	starts_at   BIGINT NOT NULL,
	expires_at  BIGINT NOT NULL,
	state       TEXT NOT NULL,
	break_glass BOOLEAN NOT NULL,
	ended_at    BIGINT NOT NULL,
	ended_by    TEXT NOT NULL,
	end_reason  TEXT NOT NULL,
	version     BIGINT NOT NULL
);
CREATE INDEX grants_subject ON grants (subject);
CREATE INDEX grants_state ON grants (state, expires_at);
CREATE INDEX grants_version ON grants (version);
CREATE INDEX grants_request ON grants (request_id);

CREATE TABLE tokens (
	hash        TEXT PRIMARY KEY,
	id          TEXT NOT NULL UNIQUE,
	subject     TEXT NOT NULL,
	kind        TEXT NOT NULL,
	description TEXT NOT NULL,
	created_at  BIGINT NOT NULL,
	expires_at  BIGINT NOT NULL,
	revoked_at  BIGINT NOT NULL
);
CREATE INDEX tokens_subject ON tokens (subject);
`,
	// 2: page active grants in id order without sorting them all for every page (index load),
	// and follow the change feed in (version, id) order.
	`
CREATE INDEX grants_state_id ON grants (state, id);
CREATE INDEX grants_version_id ON grants (version, id);
DROP INDEX grants_version;
`,
	// 3: sessions from OIDC sign-ins, their tokens, users known to Rampart, the sign-in history
	// the risk engine learns from, second factors, and in-flight sign-in flows.
	`
CREATE TABLE sessions (
	id             TEXT PRIMARY KEY,
	subject        TEXT NOT NULL,
	method         TEXT NOT NULL,
	created_at     BIGINT NOT NULL,
	expires_at     BIGINT NOT NULL,
	last_seen_at   BIGINT NOT NULL,
	auth_time      BIGINT NOT NULL,
	mfa_at         BIGINT NOT NULL,
	amr            TEXT NOT NULL,
	ip             TEXT NOT NULL,
	fingerprint    TEXT NOT NULL,
	groups_json    TEXT NOT NULL,
	risk           TEXT NOT NULL,
	revoked_at     BIGINT NOT NULL,
	revoked_reason TEXT NOT NULL
);
CREATE INDEX sessions_subject ON sessions (subject);

CREATE TABLE session_tokens (
	hash       TEXT PRIMARY KEY,
	session_id TEXT NOT NULL,
	kind       TEXT NOT NULL,
	issued_at  BIGINT NOT NULL,
	expires_at BIGINT NOT NULL,
	used_at    BIGINT NOT NULL
);
CREATE INDEX session_tokens_session ON session_tokens (session_id);

CREATE TABLE users (
	subject     TEXT PRIMARY KEY,
	groups_json TEXT NOT NULL,
	disabled_at BIGINT NOT NULL,
	disabled_by TEXT NOT NULL,
	updated_at  BIGINT NOT NULL
);

CREATE TABLE signins (
	id          TEXT PRIMARY KEY,
	subject     TEXT NOT NULL,
	username    TEXT NOT NULL,
	at          BIGINT NOT NULL,
	ip          TEXT NOT NULL,
	fingerprint TEXT NOT NULL,
	country     TEXT NOT NULL,
	asn         BIGINT NOT NULL,
	lat         DOUBLE PRECISION NOT NULL,
	lon         DOUBLE PRECISION NOT NULL,
	has_geo     BOOLEAN NOT NULL,
	kind        TEXT NOT NULL,
	success     BOOLEAN NOT NULL,
	level       TEXT NOT NULL
);
CREATE INDEX signins_subject ON signins (subject, at);
CREATE INDEX signins_username ON signins (username, at);
CREATE INDEX signins_ip ON signins (ip, at);

CREATE TABLE mfa_factors (
	subject      TEXT PRIMARY KEY,
	secret_enc   TEXT NOT NULL,
	created_at   BIGINT NOT NULL,
	confirmed_at BIGINT NOT NULL
);

CREATE TABLE auth_flows (
	id         TEXT PRIMARY KEY,
	kind       TEXT NOT NULL,
	data       TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	expires_at BIGINT NOT NULL
);
`,
	// 4: sign-in history by source (the risk engine's spray check), the identity provider's
	// subject each Rampart user is bound to, and the last TOTP step used.
	`
ALTER TABLE signins ADD COLUMN source TEXT NOT NULL DEFAULT '';
CREATE INDEX signins_source ON signins (source, at);
ALTER TABLE users ADD COLUMN idp_subject TEXT NOT NULL DEFAULT '';
ALTER TABLE mfa_factors ADD COLUMN last_step BIGINT NOT NULL DEFAULT 0;
CREATE INDEX auth_flows_expires ON auth_flows (expires_at);
`,
	// 5: the weights vault's object versions (the ciphertext itself is in the blob store).
	`
CREATE TABLE vault_objects (
	name         TEXT NOT NULL,
	version      BIGINT NOT NULL,
	state        TEXT NOT NULL,
	size         BIGINT NOT NULL,
	sha256       TEXT NOT NULL,
	segment_size BIGINT NOT NULL,
	key_id       TEXT NOT NULL,
	manifest     TEXT NOT NULL,
	uploaded_by  TEXT NOT NULL,
	grant_id     TEXT NOT NULL,
	created_at   BIGINT NOT NULL,
	deleted_at   BIGINT NOT NULL,
	PRIMARY KEY (name, version)
);
`,
	// 6: leases: which replica runs the background jobs that one replica is enough for.
	`
CREATE TABLE leases (
	name       TEXT PRIMARY KEY,
	holder     TEXT NOT NULL,
	expires_at BIGINT NOT NULL
);
`,
	// 7 (identity): API tokens a person mints are bound to the session that minted it (revoked
	// with it, or allowed to outlive it by a step-up), say who issued them and why they were
	// revoked; sessions remember their last multi-factor authentication that counts for
	// approvals.
	`
ALTER TABLE tokens ADD COLUMN revoked_reason TEXT NOT NULL DEFAULT '';
ALTER TABLE tokens ADD COLUMN issued_by TEXT NOT NULL DEFAULT '';
ALTER TABLE tokens ADD COLUMN session_id TEXT NOT NULL DEFAULT '';
ALTER TABLE tokens ADD COLUMN session_bound BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE tokens ADD COLUMN step_up_at BIGINT NOT NULL DEFAULT 0;
CREATE INDEX tokens_session ON tokens (session_id);
ALTER TABLE sessions ADD COLUMN trusted_mfa_at BIGINT NOT NULL DEFAULT 0;
`,
	// 8 (identity): each review records the credential and the approver's own sign-in session
	// it came with.
	`
ALTER TABLE reviews ADD COLUMN credential_id TEXT NOT NULL DEFAULT '';
ALTER TABLE reviews ADD COLUMN session_id TEXT NOT NULL DEFAULT '';
`,
	// 9 (identity): how each second factor's enrolment was proved, enrolments waiting for their
	// first code beside the factor in use, administrators' one-time allowances to enrol, and the
	// last multi-factor authentication the identity provider reported in each session.
	`
ALTER TABLE mfa_factors ADD COLUMN enrolled_via TEXT NOT NULL DEFAULT '';
ALTER TABLE mfa_factors ADD COLUMN pending_secret_enc TEXT NOT NULL DEFAULT '';
ALTER TABLE mfa_factors ADD COLUMN pending_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE mfa_factors ADD COLUMN pending_via TEXT NOT NULL DEFAULT '';
ALTER TABLE mfa_factors ADD COLUMN pending_session TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN mfa_enrol_until BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN mfa_enrol_by TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN idp_mfa_at BIGINT NOT NULL DEFAULT 0;
`,
	// 10 (identity): when the identity provider last confirmed each person's groups (they expire
	// after sessions.groups_max_age unless reconfirmed), and the people and groups a directory
	// provisions over SCIM.
	`
ALTER TABLE users ADD COLUMN groups_at BIGINT NOT NULL DEFAULT 0;
UPDATE users SET groups_at = updated_at;
CREATE TABLE scim_users (
	id          TEXT PRIMARY KEY,
	user_name   TEXT NOT NULL UNIQUE,
	external_id TEXT NOT NULL,
	active      BOOLEAN NOT NULL,
	attrs       TEXT NOT NULL,
	created_at  BIGINT NOT NULL,
	modified_at BIGINT NOT NULL,
	version     BIGINT NOT NULL
);
CREATE TABLE scim_groups (
	id           TEXT PRIMARY KEY,
	display_name TEXT NOT NULL,
	external_id  TEXT NOT NULL,
	attrs        TEXT NOT NULL,
	created_at   BIGINT NOT NULL,
	modified_at  BIGINT NOT NULL,
	version      BIGINT NOT NULL
);
CREATE TABLE scim_members (
	group_id TEXT NOT NULL,
	user_id  TEXT NOT NULL,
	position BIGINT NOT NULL,
	PRIMARY KEY (group_id, user_id)
);
CREATE INDEX scim_members_user ON scim_members (user_id);
`,
	// 11: approval is for what was approved (invariant 9): the role definition a grant was
	// approved for (JSON) and its digest; the role digest each review was made under. Empty for
	// rows from before, which access.Service.LoadPolicy pins.
	`
ALTER TABLE grants ADD COLUMN role_digest TEXT NOT NULL DEFAULT '';
ALTER TABLE grants ADD COLUMN role_definition TEXT NOT NULL DEFAULT '';
ALTER TABLE reviews ADD COLUMN role_digest TEXT NOT NULL DEFAULT '';
`,
	// 12: attempts at one-time codes, per person and window, so nobody can guess one.
	`
CREATE TABLE mfa_attempts (
	subject      TEXT PRIMARY KEY,
	window_start BIGINT NOT NULL,
	attempts     BIGINT NOT NULL
);
`,
	// 13: where a vault version's blobs are since its last rekey ('' as uploaded), and the blob
	// directory of the ciphertext a rekey replaced, until its blobs are removed.
	`
ALTER TABLE vault_objects ADD COLUMN location TEXT NOT NULL DEFAULT '';
ALTER TABLE vault_objects ADD COLUMN leftover TEXT NOT NULL DEFAULT '';
`,
	// 14: who requested each grant (a workload's grant is used in a cluster only by what its
	// requester deploys), filled in from the requests for grants made before.
	`
ALTER TABLE grants ADD COLUMN requester TEXT NOT NULL DEFAULT '';
UPDATE grants SET requester = COALESCE((SELECT requests.requester FROM requests WHERE requests.id = grants.request_id), '');
`,
	// 15 (issue 14): change requests to protected Git refs, bound to (repository, ref, base,
	// merge tree), and their reviews; paths and commits are JSON as the requester filed them.
	`
CREATE TABLE changes (
	id          TEXT PRIMARY KEY,
	repository  TEXT NOT NULL,
	ref         TEXT NOT NULL,
	base        TEXT NOT NULL,
	source      TEXT NOT NULL,
	tree        TEXT NOT NULL,
	paths       TEXT NOT NULL,
	commits     TEXT NOT NULL,
	requester   TEXT NOT NULL,
	state       TEXT NOT NULL,
	created_at  BIGINT NOT NULL,
	decided_at  BIGINT NOT NULL,
	request_seq BIGINT NOT NULL,
	land_seq    BIGINT NOT NULL,
	landed_as   TEXT NOT NULL,
	version     BIGINT NOT NULL
);
CREATE INDEX changes_ref ON changes (repository, ref, state);
CREATE TABLE change_reviews (
	change_id     TEXT NOT NULL REFERENCES changes (id),
	approver      TEXT NOT NULL,
	decision      TEXT NOT NULL,
	comment       TEXT NOT NULL,
	at            BIGINT NOT NULL,
	mfa_at        BIGINT NOT NULL,
	session_id    TEXT NOT NULL,
	credential_id TEXT NOT NULL,
	seq           BIGINT NOT NULL,
	PRIMARY KEY (change_id, approver)
);
`,
	// 16 (issue 15): the notification outbox: one row per notification, written in the transaction
	// of the ledger entry (seq) that caused it; the delivery worker claims due rows by setting
	// claimed_until, so that of several replicas one sends each row at a time.
	`
CREATE TABLE notifications (
	id            TEXT PRIMARY KEY,
	seq           BIGINT NOT NULL,
	body          TEXT NOT NULL,
	state         TEXT NOT NULL,
	attempts      BIGINT NOT NULL,
	next_at       BIGINT NOT NULL,
	claimed_until BIGINT NOT NULL,
	last_error    TEXT NOT NULL,
	created_at    BIGINT NOT NULL
);
CREATE INDEX notifications_due ON notifications (state, next_at);
`,
	// 17 (issue 15): per-sink delivery state (delivered: the JSON list of the sinks that took the
	// notification, so a retry sends only to the others) and done_at (when it was sent or given
	// up on, for retention).
	`
ALTER TABLE notifications ADD COLUMN delivered TEXT NOT NULL DEFAULT '[]';
ALTER TABLE notifications ADD COLUMN done_at BIGINT NOT NULL DEFAULT 0;
UPDATE notifications SET done_at = created_at WHERE state <> 'pending';
CREATE INDEX notifications_done ON notifications (state, done_at);
`,
	// 18 (issue 15): one person's grants in a state, in id order (the console's home page, `grant
	// list`): without it the planner walks every active grant through grants_state_id.
	`
CREATE INDEX grants_subject_state_id ON grants (subject, state, id);
`,
	// 19 (issue 16): the secrets store: one row per version, its data key wrapped by the vault's
	// keyring and its value sealed (both base64; empty once deleted), and the leases of reads.
	`
CREATE TABLE secret_versions (
	name        TEXT NOT NULL,
	version     BIGINT NOT NULL,
	state       TEXT NOT NULL,
	size        BIGINT NOT NULL,
	key_id      TEXT NOT NULL,
	wrapped_dek TEXT NOT NULL,
	ciphertext  TEXT NOT NULL,
	created_by  TEXT NOT NULL,
	grant_id    TEXT NOT NULL,
	created_at  BIGINT NOT NULL,
	deleted_at  BIGINT NOT NULL,
	PRIMARY KEY (name, version)
);
CREATE TABLE secret_leases (
	id         TEXT PRIMARY KEY,
	name       TEXT NOT NULL,
	version    BIGINT NOT NULL,
	subject    TEXT NOT NULL,
	grant_id   TEXT NOT NULL,
	ttl        BIGINT NOT NULL,
	created_at BIGINT NOT NULL,
	expires_at BIGINT NOT NULL,
	revoked_at BIGINT NOT NULL
);
`, // 20 (issue 17): alerts (one row per rule and key from a first firing until resolved;
	// first_seq/last_seq are the ledger entries of its first and latest detect.alert) and the
	// automatic responses taken (one row per firing and action, the key of their idempotence;
	// counted rows are the hourly budget that replicas share).
	`
CREATE TABLE alerts (
	id          BIGINT PRIMARY KEY,
	rule        TEXT NOT NULL,
	key         TEXT NOT NULL,
	severity    TEXT NOT NULL,
	state       TEXT NOT NULL,
	first_seq   BIGINT NOT NULL,
	last_seq    BIGINT NOT NULL,
	count       BIGINT NOT NULL,
	created     BIGINT NOT NULL,
	updated     BIGINT NOT NULL,
	acked_by    TEXT NOT NULL,
	resolved_by TEXT NOT NULL,
	note        TEXT NOT NULL
);
CREATE INDEX alerts_rule_key ON alerts (rule, key, state);
CREATE INDEX alerts_state ON alerts (state, id);
CREATE TABLE detect_responses (
	id        TEXT PRIMARY KEY,
	rule      TEXT NOT NULL,
	subject   TEXT NOT NULL,
	action    TEXT NOT NULL,
	state     TEXT NOT NULL,
	guardrail TEXT NOT NULL,
	counted   BOOLEAN NOT NULL,
	at        BIGINT NOT NULL,
	seq       BIGINT NOT NULL,
	error     TEXT NOT NULL
);
CREATE INDEX detect_responses_counted ON detect_responses (counted, at);
`, // 21 (issue 17): the detection runner's cursor (the next ledger entry to evaluate) and its
	// engine snapshot (the state after entries below snapshot_seq; NULL: no state). A new store
	// and an upgraded one both start at the ledger's head: history is for backtests, not for
	// alerts (and automatic responses) on what happened before detection existed.
	`
CREATE TABLE detect_state (
	id           INTEGER PRIMARY KEY,
	cursor       BIGINT NOT NULL,
	snapshot     TEXT,
	snapshot_seq BIGINT NOT NULL,
	updated      BIGINT NOT NULL
);
INSERT INTO detect_state (id, cursor, snapshot, snapshot_seq, updated) SELECT 1, size, NULL, size, 0 FROM ledger_head WHERE id = 1;
`,
}
