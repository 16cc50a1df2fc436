// Package blob defines Store, where the vault keeps its encrypted objects, with the rules every
// store follows (keys, atomic replacement, bounded memory), and implements it in a local
// directory (FS). Adapters to cloud storage live in their own packages (vault/blob/azure), so
// that importing this one links no cloud SDK; every store passes one conformance suite
// (blobtest). Stores see only ciphertext.
package blob

import (
	"context"
	"errors"
	"io"
	"time"
)

// ErrNotFound means there is no object under the key.
var ErrNotFound = errors.New("blob: not found")

// Info describes a stored object.
type Info struct {
	Key      string
	Size     int64
	Modified time.Time
}

// Store keeps objects under keys made of path segments ("objects/weights/frontier-7/3/data").
// Keys are 1..1024 bytes of [A-Za-z0-9._/-], with no empty, "." or ".." segments; a store
// refuses any other key with an error (never a path outside its root).
type Store interface {
	// Put streams r into the object at key with bounded memory, replacing any object there.
	// Readers never see a partial object: either the old one or the whole new one. It returns
	// the bytes written.
	Put(ctx context.Context, key string, r io.Reader) (int64, error)
	// Get streams the whole object.
	Get(ctx context.Context, key string) (io.ReadCloser, Info, error)
	// GetRange streams n bytes of the object from off (fewer if the object ends first).
	GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error)
	// Stat describes the object.
	Stat(ctx context.Context, key string) (Info, error)
	// Delete removes the object (ErrNotFound if there is none).
	Delete(ctx context.Context, key string) error
	// List returns the objects whose keys start with prefix, sorted by key.
	List(ctx context.Context, prefix string) ([]Info, error)
}
