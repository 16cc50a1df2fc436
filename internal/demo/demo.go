// Package demo holds the demonstration policy that `rampart dev` loads when no --policy is given.
// The files under policy/ are also the reference example of every policy kind.
package demo

import (
	"embed"
	"io/fs"
)

//go:embed policy
var files embed.FS

// Policy returns the demo policy files.
func Policy() fs.FS {
	sub, err := fs.Sub(files, "policy")
	if err != nil {
		panic(err) // the directory is embedded at build time
	}
	return sub
}

// Users are the demo users and what they are for, in banner order.
var Users = []struct{ Name, Groups, Role string }{
	{"alice", "researchers", "requests access"},
	{"bob", "weights-owners", "approves as an owner"},
	{"carol", "weights-owners, data-stewards", "approves as an owner"},
	{"dave", "security", "approves as security"},
	{"erin", "admins, auditors", "administers and audits"},
}
