package blob_test

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"rampart.dev/rampart/vault/blob"
	"rampart.dev/rampart/vault/blob/blobtest"
)

func newFS(t *testing.T) *blob.FS {
	t.Helper()
	s, err := blob.NewFS(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// walk describes every file, directory and link below dir, one line each.
func walk(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out = append(out, rel+" "+fi.Mode().String()+" "+strings.Repeat("#", int(min(fi.Size(), 64))))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestFS(t *testing.T) {
	blobtest.Run(t, blobtest.Harness{
		New: func(t *testing.T) blob.Store { return newFS(t) },
		Outside: func(t *testing.T, s blob.Store) []string {
			return walk(t, filepath.Dir(s.(*blob.FS).Dir()))
		},
	})
}

func TestFSModes(t *testing.T) {
	s := newFS(t)
	if _, err := s.Put(context.Background(), "a/b/c", strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]os.FileMode{".": 0o700 | fs.ModeDir, "a": 0o700 | fs.ModeDir, "a/b": 0o700 | fs.ModeDir, "a/b/c#": 0o600} {
		fi, err := os.Lstat(filepath.Join(s.Dir(), name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode(), want)
		}
	}
	// Deleting the last object of a directory removes the directories it leaves empty.
	if err := s.Delete(context.Background(), "a/b/c"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(s.Dir(), "a")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after deleting the only object, its directories remain (%v)", err)
	}
	if _, err := os.Lstat(s.Dir()); err != nil {
		t.Errorf("deleting the only object removed the root: %v", err)
	}
}

// Symbolic links inside the root that lead out of it are never followed: reads fail, writes
// fail and write nothing outside, listing skips them, deleting removes only the link.
func TestFSSymlinkEscape(t *testing.T) {
	s := newFS(t)
	ctx := context.Background()
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret#"), []byte("weights"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(s.Dir(), "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "secret#"), filepath.Join(s.Dir(), "file#")); err != nil {
		t.Fatal(err)
	}
	before := walk(t, outside)
	for _, key := range []string{"link/secret", "file"} {
		if rc, _, err := s.Get(ctx, key); err == nil {
			b, _ := io.ReadAll(rc)
			rc.Close()
			t.Errorf("Get(%s) followed a link out of the root and read %q", key, b)
		}
		if rc, err := s.GetRange(ctx, key, 0, 10); err == nil {
			rc.Close()
			t.Errorf("GetRange(%s) followed a link out of the root", key)
		}
		if _, err := s.Stat(ctx, key); err == nil {
			t.Errorf("Stat(%s) followed a link out of the root", key)
		}
	}
	for _, key := range []string{"link/new", "link/secret", "link/deeper/new", "file"} {
		if _, err := s.Put(ctx, key, strings.NewReader("planted")); err == nil && key != "file" {
			t.Errorf("Put(%s) wrote through a link out of the root", key)
		}
	}
	if l, err := s.List(ctx, ""); err != nil || len(l) != 1 || l[0].Key != "file" {
		// "file" was replaced by a regular file above: the rename replaces the link itself.
		t.Errorf("List = %v, %v; want only the object that replaced the link", l, err)
	}
	if _, err := s.List(ctx, "link/"); err == nil {
		t.Error("List(link/) walked a link out of the root")
	}
	if err := s.Delete(ctx, "link/secret"); err == nil {
		t.Error("Delete(link/secret) removed a file through a link out of the root")
	}
	if after := walk(t, outside); !slices.Equal(before, after) {
		t.Errorf("the directory outside the root changed:\nbefore %q\nafter  %q", before, after)
	}
	if b, err := os.ReadFile(filepath.Join(outside, "secret#")); err != nil || string(b) != "weights" {
		t.Errorf("the file outside the root: %q %v", b, err)
	}
}

// Temporary files of unfinished Puts are never listed, and a cancelled Put removes its own.
func TestFSTemporaryFiles(t *testing.T) {
	s := newFS(t)
	ctx, cancel := context.WithCancel(context.Background())
	r := io.MultiReader(strings.NewReader(strings.Repeat("x", 1<<20)), readerFunc(func([]byte) (int, error) {
		cancel()
		return 0, context.Canceled
	}))
	if _, err := s.Put(ctx, "d/obj", r); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Put: %v", err)
	}
	for _, line := range walk(t, s.Dir()) {
		if strings.Contains(line, "#tmp-") {
			t.Errorf("a cancelled Put left %s", line)
		}
	}
	// A crash's leftover is not an object.
	if err := os.WriteFile(filepath.Join(s.Dir(), "d", "#tmp-0123"), []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.Dir(), "d", "foreign"), []byte("not ours"), 0o600); err != nil {
		t.Fatal(err)
	}
	if l, err := s.List(context.Background(), ""); err != nil || len(l) != 0 {
		t.Fatalf("List shows %v (%v)", l, err)
	}
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// A key segment longer than a file name can be is refused before anything is written.
func TestFSLongSegment(t *testing.T) {
	s := newFS(t)
	key := "a/" + strings.Repeat("s", 255)
	if _, err := s.Put(context.Background(), key, strings.NewReader("x")); !errors.Is(err, blob.ErrInvalidKey) || !strings.Contains(err.Error(), "segment") {
		t.Fatalf("Put of a 255-byte segment: %v", err)
	}
	if got := walk(t, s.Dir()); len(got) != 1 {
		t.Fatalf("a refused key wrote %q", got)
	}
	if _, err := s.Put(context.Background(), "a/"+strings.Repeat("s", 254), strings.NewReader("x")); err != nil {
		t.Fatalf("a 254-byte segment: %v", err)
	}
}
