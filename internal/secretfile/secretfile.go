// Package secretfile decides whether a file holding a secret key is private enough to use.
//
// The rule is PostgreSQL's for its server key: the file must not be readable by others; it may
// be readable by its group only when root owns it. That admits a key mounted into a container
// from a Kubernetes Secret — root-owned, group-readable by the pod's fsGroup, which is how a
// non-root process can read it at all — and refuses a group-readable key that a user left in a
// shared directory.
package secretfile

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// Check returns an error, naming what (e.g. "ledger signing key") and path, when the file at
// path is readable by others, or by its group without being root's.
func Check(path, what string) error {
	fi, err := os.Stat(path) // through symlinks: a Secret volume's files are links into ..data
	if err != nil {
		return err
	}
	return checkMode(fi, path, what)
}

func checkMode(fi fs.FileInfo, path, what string) error {
	perm := fi.Mode().Perm()
	switch {
	case perm&0o007 != 0:
		return fmt.Errorf("%s %s is readable by others (mode %v); chmod 600 it", what, path, perm)
	case perm&0o070 != 0 && !ownedByRoot(fi):
		return fmt.Errorf("%s %s is readable by its group (mode %v) and not owned by root; chmod 600 it (a group-readable key is accepted only when root owns it, as Kubernetes mounts a Secret for a pod's fsGroup)", what, path, perm)
	}
	return nil
}

func ownedByRoot(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Uid == 0
}
