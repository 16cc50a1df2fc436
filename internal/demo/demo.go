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

// Users are the demo users and what they are for, in banner order. IdPGroups are the groups
// the development identity provider gives them (the demo policy maps them with idp_groups).
var Users = []struct {
	Name, Groups, Role string
	IdPGroups          []string
}{
	{"alice", "researchers", "requests access", []string{"ml-research"}},
	{"bob", "weights-owners", "approves as an owner", []string{"weights-owners"}},
	{"carol", "weights-owners, data-stewards", "approves as an owner", []string{"weights-owners", "data-stewards"}},
	{"dave", "security", "approves as security", []string{"security"}},
	{"erin", "admins, auditors", "administers and audits", []string{"rampart-admins", "rampart-auditors"}},
}
