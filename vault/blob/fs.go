package blob

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"syscall"
)

// FS is a Store in a directory of the local file system.
//
// The object under key "a/b/c" is the file "a/b/c#" below the root: the "#" (not a key
// character) keeps object files and directories apart, so "a/b" and "a/b/c" can both be objects.
// Files are created 0600 and directories 0700. Put writes a temporary file ("#tmp-…", never a
// valid object name) in the object's directory, syncs it, renames it over the object and syncs the
// directory, so a reader sees the old object or the whole new one, and a crash leaves at most a
// temporary file (safe to remove when no Put is running). Open readers keep the version they
// opened.
//
// Every path is resolved through an os.Root, so no key, symbolic link or ".." can reach
// outside the root: a symbolic link inside the root that points out of it makes the operation
// fail. On a case-insensitive file system, keys that differ only in case name the same object.
type FS struct {
	root *os.Root
	dir  string
}

const (
	fsObjSuffix = "#"
	fsTmpPrefix = "#tmp-"
	// fsMaxSegment is the longest key segment FS stores: a file name holds 255 bytes on the
	// common file systems, and the object's file name adds fsObjSuffix.
	fsMaxSegment = 255 - len(fsObjSuffix)
	// fsCopyBuffer is the size of the buffer Put copies through: its whole memory use.
	fsCopyBuffer = 256 << 10
)

var fsBuffers = sync.Pool{New: func() any { b := make([]byte, fsCopyBuffer); return &b }}

// NewFS returns a store in dir, creating the directory (0700) if it does not exist.
// Close releases it.
func NewFS(dir string) (*FS, error) {
	if dir == "" {
		return nil, errors.New("blob: NewFS: no directory given")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("blob: create store directory: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("blob: open store directory: %w", err)
	}
	return &FS{root: root, dir: dir}, nil
}

// Dir is the store's root directory, as given to NewFS.
func (s *FS) Dir() string { return s.dir }

// Close releases the root directory. The store must not be used after.
func (s *FS) Close() error { return s.root.Close() }

// objectName is the object file of a valid key, relative to the root.
func (s *FS) objectName(key string) (string, error) {
	if err := CheckKey(key); err != nil {
		return "", err
	}
	for seg := range strings.SplitSeq(key, "/") {
		if len(seg) > fsMaxSegment {
			return "", keyError(key, fmt.Sprintf("has a %d-byte segment; the file-system store holds segments of at most %d bytes", len(seg), fsMaxSegment))
		}
	}
	return key + fsObjSuffix, nil
}

// Put implements Store.
func (s *FS) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	name, err := s.objectName(key)
	if err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	dir := path.Dir(name)
	f, tmp, err := s.createTemp(dir)
	if err != nil {
		return 0, fmt.Errorf("blob: put %s: %w", QuoteKey(key), err)
	}
	n, err := copyContext(ctx, f, r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = ctx.Err() // a cancelled Put must not replace the object, however far it got
	}
	if err == nil {
		err = s.root.Rename(tmp, name)
	}
	if err != nil {
		_ = s.root.Remove(tmp)
		return n, fmt.Errorf("blob: put %s: %w", QuoteKey(key), err)
	}
	if err := s.syncDir(dir); err != nil {
		return n, fmt.Errorf("blob: put %s: object replaced but its directory could not be synced: %w", QuoteKey(key), err)
	}
	return n, nil
}

// createTemp creates a new temporary file in dir (and dir, if needed). A concurrent Delete may
// remove dir, then empty, between the two steps; that is retried.
func (s *FS) createTemp(dir string) (*os.File, string, error) {
	var last error
	for range 5 {
		if dir != "." {
			if err := s.root.MkdirAll(dir, 0o700); err != nil {
				return nil, "", err
			}
		}
		var b [12]byte
		_, _ = rand.Read(b[:])
		tmp := path.Join(dir, fsTmpPrefix+hex.EncodeToString(b[:]))
		f, err := s.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil {
			return f, tmp, nil
		}
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, fs.ErrExist) {
			return nil, "", err
		}
		last = err
	}
	return nil, "", last
}

// copyContext copies r to w through one pooled buffer, stopping when ctx is done.
func copyContext(ctx context.Context, w io.Writer, r io.Reader) (int64, error) {
	bp := fsBuffers.Get().(*[]byte)
	defer fsBuffers.Put(bp)
	buf := *bp
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		nr, rerr := r.Read(buf)
		if nr > 0 {
			nw, werr := w.Write(buf[:nr])
			n += int64(nw)
			if werr != nil {
				return n, werr
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, fmt.Errorf("reading the object's data: %w", rerr)
		}
	}
}

func (s *FS) syncDir(dir string) error {
	d, err := s.root.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// open opens the object file of key for reading.
func (s *FS) open(ctx context.Context, op, key string) (*os.File, fs.FileInfo, error) {
	name, err := s.objectName(key)
	if err != nil {
		return nil, nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	f, err := s.root.Open(name)
	if err != nil {
		return nil, nil, s.pathError(op, key, err)
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file", name)
	}
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("blob: %s %s: %w", op, QuoteKey(key), err)
	}
	return f, fi, nil
}

// pathError maps a missing file (or a missing directory on its path) to ErrNotFound.
func (s *FS) pathError(op, key string, err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return fmt.Errorf("blob: %s %s: %w", op, QuoteKey(key), ErrNotFound)
	}
	return fmt.Errorf("blob: %s %s: %w", op, QuoteKey(key), err)
}

// Get implements Store. The reader is the open file: it keeps reading the version it opened
// even if the object is replaced or deleted meanwhile.
func (s *FS) Get(ctx context.Context, key string) (io.ReadCloser, Info, error) {
	f, fi, err := s.open(ctx, "get", key)
	if err != nil {
		return nil, Info{}, err
	}
	return f, Info{Key: key, Size: fi.Size(), Modified: fi.ModTime()}, nil
}

// GetRange implements Store. A range that starts at or past the end of the object is empty.
func (s *FS) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if err := CheckRange(key, off, n); err != nil {
		return nil, err
	}
	f, fi, err := s.open(ctx, "get range of", key)
	if err != nil {
		return nil, err
	}
	size := fi.Size()
	if off >= size || n == 0 {
		f.Close()
		return io.NopCloser(strings.NewReader("")), nil
	}
	n = min(n, size-off)
	return sectionReadCloser{io.NewSectionReader(f, off, n), f}, nil
}

type sectionReadCloser struct {
	*io.SectionReader
	io.Closer
}

// CheckRange returns nil if off and n may be passed to GetRange: neither is negative. Stores
// check it before they touch storage.
func CheckRange(key string, off, n int64) error {
	if off < 0 || n < 0 {
		return fmt.Errorf("blob: get range of %s: offset %d and length %d must not be negative", QuoteKey(key), off, n)
	}
	return nil
}

// Stat implements Store.
func (s *FS) Stat(ctx context.Context, key string) (Info, error) {
	f, fi, err := s.open(ctx, "stat", key)
	if err != nil {
		return Info{}, err
	}
	f.Close()
	return Info{Key: key, Size: fi.Size(), Modified: fi.ModTime()}, nil
}

// Delete implements Store. It also removes the directories the deletion left empty.
func (s *FS) Delete(ctx context.Context, key string) error {
	name, err := s.objectName(key)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	fi, err := s.root.Lstat(name)
	if err != nil {
		return s.pathError("delete", key, err)
	}
	if fi.IsDir() {
		return fmt.Errorf("blob: delete %s: %s is a directory, not an object", QuoteKey(key), name)
	}
	if err := s.root.Remove(name); err != nil {
		return s.pathError("delete", key, err)
	}
	dir := path.Dir(name)
	if err := s.syncDir(dir); err != nil {
		return fmt.Errorf("blob: delete %s: object removed but its directory could not be synced: %w", QuoteKey(key), err)
	}
	// Remove directories left empty, deepest first; Remove refuses a directory that is not
	// empty, which ends the climb. A concurrent Put that loses its directory retries.
	for d := dir; d != "."; d = path.Dir(d) {
		if fi, err := s.root.Lstat(d); err != nil || !fi.IsDir() {
			break
		}
		if s.root.Remove(d) != nil {
			break
		}
	}
	return nil
}

// List implements Store. It walks only the directory named by the prefix's complete segments,
// and skips anything that is not an object file (temporary files, symbolic links, foreign
// files).
func (s *FS) List(ctx context.Context, prefix string) ([]Info, error) {
	if err := CheckPrefix(prefix); err != nil {
		return nil, err
	}
	dir := "."
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		dir = prefix[:i]
	}
	var out []Info
	err := fs.WalkDir(s.root.FS(), dir, func(p string, d fs.DirEntry, err error) error {
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
				if p == dir {
					return fs.SkipAll // nothing under this prefix
				}
				return nil // removed while we walked
			}
			return err
		}
		if d.IsDir() {
			if p != dir && !strings.HasPrefix(p+"/", prefix) && !strings.HasPrefix(prefix, p+"/") {
				return fs.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || !strings.HasSuffix(p, fsObjSuffix) {
			return nil
		}
		key := strings.TrimSuffix(p, fsObjSuffix)
		if !strings.HasPrefix(key, prefix) || CheckKey(key) != nil {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		out = append(out, Info{Key: key, Size: fi.Size(), Modified: fi.ModTime()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("blob: list %s: %w", QuoteKey(prefix), err)
	}
	slices.SortFunc(out, func(a, b Info) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

var _ Store = (*FS)(nil)
