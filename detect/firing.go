package detect

import "time"

// Firing is what a rule's match produces (the contract of issue 17; the engine fills it). This
// copy lets the response build before the engine's branch is merged: at merge, keep the
// engine's definition and delete this file.
type Firing struct {
	Rule, Description, Severity string
	Mitre                       []string
	// Key is the group_by values joined, canonical.
	Key string
	// Subject is who a response acts on.
	Subject string
	// Evidence are ledger sequence numbers that matched (at most 100; Count says how many).
	Evidence []int64
	Count    int
	First    time.Time
	Last     time.Time
	// Learning is set while a baseline rule learns; a response never acts on it.
	Learning bool
	// Mode is the rule's response mode (off, dry-run, on) and Actions its actions.
	Mode    string
	Actions []string
}
