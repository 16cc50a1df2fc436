// Package blobtest is the conformance suite every blob.Store passes (the local directory and
// Azure Blob Storage through Azurite): round trips around the block size, ranged reads at the
// edges, listing by prefix in key order, hostile keys refused with nothing written anywhere,
// replacement that readers see whole or not at all, cancelled and failed uploads that leave no
// object, and uploads and downloads far larger than the memory they may use.
//
// The bounded-memory test streams -blobtest.memsize bytes (128MiB by default; try 1GiB or 10GiB
// for a soak) and fails if the heap grows by more than -blobtest.memlimit (64MiB).
package blobtest

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"rampart.dev/rampart/vault/blob"
)

var (
	memSize  = sizeFlag("blobtest.memsize", 128<<20, "bytes the bounded-memory test streams through Put and Get (suffixes KiB, MiB, GiB)")
	memLimit = sizeFlag("blobtest.memlimit", 64<<20, "how much the heap may grow while the bounded-memory test streams (suffixes KiB, MiB, GiB)")
)

// Harness tells the suite how to get stores of one kind.
type Harness struct {
	// New returns a new, empty store, released when the test ends.
	New func(t *testing.T) blob.Store
	// BlockSize is the size in which the store's Put splits objects, or 0 if it does not; the
	// round trips try sizes around it, and the cancellation tests cancel after more than one
	// block. (0 means 1 MiB for those sizes.)
	BlockSize int64
	// Outside describes everything a key could reach around the store (for a directory, every
	// file below its parent; for a container, every blob of every container in the account),
	// one line per thing. The suite checks that refused keys change none of it.
	Outside func(t *testing.T, s blob.Store) []string
}

// Run runs the whole suite.
func Run(t *testing.T, h Harness) {
	if h.BlockSize == 0 {
		h.BlockSize = 1 << 20
	}
	t.Run("RoundTrip", func(t *testing.T) { testRoundTrip(t, h) })
	t.Run("GetRange", func(t *testing.T) { testGetRange(t, h) })
	t.Run("StatDeleteList", func(t *testing.T) { testStatDeleteList(t, h) })
	t.Run("Keys", func(t *testing.T) { testKeys(t, h) })
	t.Run("HostileKeys", func(t *testing.T) { testHostileKeys(t, h) })
	t.Run("AtomicReplace", func(t *testing.T) { testAtomicReplace(t, h) })
	t.Run("ConcurrentPuts", func(t *testing.T) { testConcurrentPuts(t, h) })
	t.Run("CancelledPut", func(t *testing.T) { testCancelledPut(t, h) })
	t.Run("FailedReader", func(t *testing.T) { testFailedReader(t, h) })
	t.Run("BoundedMemory", func(t *testing.T) { testBoundedMemory(t, h) })
}

// Generate returns size pseudo-random bytes determined by seed (AES-CTR keystream), made as
// they are read: a source for objects larger than memory, in tests and benchmarks.
func Generate(seed uint64, size int64) io.Reader {
	var key [16]byte
	binary.BigEndian.PutUint64(key[:], seed)
	c, err := aes.NewCipher(key[:])
	if err != nil {
		panic(err)
	}
	return &generator{stream: cipher.NewCTR(c, make([]byte, aes.BlockSize)), left: size}
}

type generator struct {
	stream cipher.Stream
	left   int64
}

func (g *generator) Read(p []byte) (int, error) {
	if g.left == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > g.left {
		p = p[:g.left]
	}
	clear(p)
	g.stream.XORKeyStream(p, p)
	g.left -= int64(len(p))
	return len(p), nil
}

func content(seed uint64, size int64) []byte {
	b, err := io.ReadAll(Generate(seed, size))
	if err != nil {
		panic(err)
	}
	return b
}

// onlyReader hides every method but Read, so a store cannot lean on Seek, Len or WriteTo.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

// shortReader returns at most max bytes per Read, varying, to exercise partial reads.
type shortReader struct {
	r   io.Reader
	max int
	n   int
}

func (s *shortReader) Read(p []byte) (int, error) {
	s.n++
	if k := 1 + (s.n*7919)%s.max; len(p) > k {
		p = p[:k]
	}
	return s.r.Read(p)
}

func put(t *testing.T, s blob.Store, key string, data []byte) {
	t.Helper()
	n, err := s.Put(context.Background(), key, onlyReader{bytes.NewReader(data)})
	if err != nil {
		t.Fatalf("put %s (%d bytes): %v", key, len(data), err)
	}
	if n != int64(len(data)) {
		t.Fatalf("put %s: wrote %d bytes, want %d", key, n, len(data))
	}
}

func get(t *testing.T, s blob.Store, key string) ([]byte, blob.Info) {
	t.Helper()
	rc, info, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return b, info
}

func getRange(t *testing.T, s blob.Store, key string, off, n int64) []byte {
	t.Helper()
	rc, err := s.GetRange(context.Background(), key, off, n)
	if err != nil {
		t.Fatalf("get range %s [%d,+%d): %v", key, off, n, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read range %s [%d,+%d): %v", key, off, n, err)
	}
	return b
}

func keys(infos []blob.Info) []string {
	out := make([]string, len(infos))
	for i, in := range infos {
		out[i] = in.Key
	}
	return out
}

func checkRecent(t *testing.T, what string, mod time.Time) {
	t.Helper()
	if d := time.Since(mod); mod.IsZero() || d > time.Hour || d < -time.Hour {
		t.Errorf("%s: modified %v, not about now", what, mod)
	}
}

func testRoundTrip(t *testing.T, h Harness) {
	s := h.New(t)
	b := h.BlockSize
	sizes := []int64{0, 1, 1000, b - 1, b, b + 1, 2*b + b/2 + 123}
	for i, size := range sizes {
		key := fmt.Sprintf("rt/%d/%d", i, size)
		data := content(uint64(i), size)
		put(t, s, key, data)
		got, info := get(t, s, key)
		if !bytes.Equal(got, data) {
			t.Fatalf("%s: read %d bytes that differ from the %d written", key, len(got), len(data))
		}
		if info.Key != key || info.Size != size {
			t.Fatalf("%s: Get info %+v, want key %q size %d", key, info, key, size)
		}
		checkRecent(t, key, info.Modified)
		if st, err := s.Stat(context.Background(), key); err != nil || st.Size != size || st.Key != key {
			t.Fatalf("%s: Stat %+v %v", key, st, err)
		}
	}
	// Short, uneven reads from the source across block boundaries.
	data := content(99, 2*b+7)
	n, err := s.Put(context.Background(), "rt/short-reads", &shortReader{r: bytes.NewReader(data), max: 65537})
	if err != nil || n != int64(len(data)) {
		t.Fatalf("put with short reads: %d %v", n, err)
	}
	if got, _ := get(t, s, "rt/short-reads"); !bytes.Equal(got, data) {
		t.Fatal("an object written with short source reads came back different")
	}
	// Replacing with a smaller object leaves nothing of the larger one.
	put(t, s, "rt/short-reads", []byte("small"))
	if got, info := get(t, s, "rt/short-reads"); string(got) != "small" || info.Size != 5 {
		t.Fatalf("after replacing with a smaller object: %q (size %d)", got, info.Size)
	}
}

func testGetRange(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := context.Background()
	size := h.BlockSize + 1000 // a range can cross the first block boundary
	data := content(3, size)
	put(t, s, "r/obj", data)
	put(t, s, "r/empty", nil)
	b := h.BlockSize
	cases := []struct{ off, n int64 }{
		{0, 0}, {0, 1}, {0, size}, {0, 2 * size}, {1, 10}, {size / 2, 100},
		{b - 10, 20}, // across the block boundary
		{size - 1, 10}, {size - 1, 1}, {size, 10}, {size + 5, 10}, {size * 3, 1},
		{10, math.MaxInt64}, {0, math.MaxInt64}, {math.MaxInt64 - 1, math.MaxInt64},
	}
	for _, c := range cases {
		got := getRange(t, s, "r/obj", c.off, c.n)
		lo := min(c.off, size)
		hi := size
		if c.n < size-lo {
			hi = lo + c.n
		}
		if !bytes.Equal(got, data[lo:hi]) {
			t.Errorf("GetRange(%d, %d): %d bytes, want bytes [%d,%d) of the object", c.off, c.n, len(got), lo, hi)
		}
	}
	for _, c := range []struct{ off, n int64 }{{0, 10}, {0, 0}, {5, 1}} {
		if got := getRange(t, s, "r/empty", c.off, c.n); len(got) != 0 {
			t.Errorf("GetRange(%d, %d) of an empty object: %d bytes", c.off, c.n, len(got))
		}
	}
	for _, c := range []struct{ off, n int64 }{{-1, 10}, {0, -1}, {math.MinInt64, 1}} {
		if rc, err := s.GetRange(ctx, "r/obj", c.off, c.n); err == nil {
			rc.Close()
			t.Errorf("GetRange(%d, %d) was accepted", c.off, c.n)
		}
	}
	for _, n := range []int64{0, 10} {
		if _, err := s.GetRange(ctx, "r/missing", 0, n); !errors.Is(err, blob.ErrNotFound) {
			t.Errorf("GetRange(missing, 0, %d): %v, want ErrNotFound", n, err)
		}
	}
}

func testStatDeleteList(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := context.Background()
	if l, err := s.List(ctx, ""); err != nil || len(l) != 0 {
		t.Fatalf("a new store lists %v (%v)", keys(l), err)
	}
	if _, err := s.Stat(ctx, "x"); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("Stat of a missing object: %v", err)
	}
	if _, _, err := s.Get(ctx, "x"); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("Get of a missing object: %v", err)
	}
	if err := s.Delete(ctx, "x"); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("Delete of a missing object: %v", err)
	}
	// Written out of order; "a" is both an object and a prefix of others.
	all := []string{"b/x", "a/b/c", "ab", "a", "a-b", "a/b", "a.b", "a/c", "A", "a/b/c/d", "b/x.y", "_", "0"}
	for i, k := range all {
		put(t, s, k, bytes.Repeat([]byte{byte(i)}, i))
	}
	sorted := slices.Clone(all)
	slices.Sort(sorted)
	for _, c := range []struct {
		prefix string
		want   []string
	}{
		{"", sorted},
		{"a", []string{"a", "a-b", "a.b", "a/b", "a/b/c", "a/b/c/d", "a/c", "ab"}},
		{"a/", []string{"a/b", "a/b/c", "a/b/c/d", "a/c"}},
		{"a/b", []string{"a/b", "a/b/c", "a/b/c/d"}},
		{"a/b/", []string{"a/b/c", "a/b/c/d"}},
		{"a/b/c/d", []string{"a/b/c/d"}},
		{"b/x.", []string{"b/x.y"}},
		{"b/", []string{"b/x", "b/x.y"}},
		{"c", nil},
		{"zz/top/", nil},
		{"a/b/c/d/", nil},
		{"..", nil},
	} {
		l, err := s.List(ctx, c.prefix)
		if err != nil {
			t.Fatalf("List(%q): %v", c.prefix, err)
		}
		if got := keys(l); !slices.Equal(got, c.want) {
			t.Errorf("List(%q) = %q, want %q", c.prefix, got, c.want)
		}
		for _, in := range l {
			if want := int64(slices.Index(all, in.Key)); in.Size != want {
				t.Errorf("List(%q): %s has size %d, want %d", c.prefix, in.Key, in.Size, want)
			}
			checkRecent(t, "List "+in.Key, in.Modified)
		}
	}
	// Delete one object: the others, including those it prefixes or that prefix it, stay.
	for _, k := range []string{"a/b", "a/b/c/d", "a"} {
		if err := s.Delete(ctx, k); err != nil {
			t.Fatalf("Delete(%s): %v", k, err)
		}
		if _, err := s.Stat(ctx, k); !errors.Is(err, blob.ErrNotFound) {
			t.Fatalf("Stat after Delete(%s): %v", k, err)
		}
		if _, err := s.GetRange(ctx, k, 0, 1); !errors.Is(err, blob.ErrNotFound) {
			t.Fatalf("GetRange after Delete(%s): %v", k, err)
		}
		if err := s.Delete(ctx, k); !errors.Is(err, blob.ErrNotFound) {
			t.Fatalf("second Delete(%s): %v", k, err)
		}
		sorted = slices.DeleteFunc(sorted, func(x string) bool { return x == k })
	}
	if l, _ := s.List(ctx, ""); !slices.Equal(keys(l), sorted) {
		t.Fatalf("after deletes List = %q, want %q", keys(l), sorted)
	}
	if got, _ := get(t, s, "a/b/c"); len(got) != slices.Index(all, "a/b/c") {
		t.Fatal("deleting a/b and a/b/c/d damaged a/b/c")
	}
	// A deleted key can be written again.
	put(t, s, "a/b/c/d", []byte("again"))
	if got, _ := get(t, s, "a/b/c/d"); string(got) != "again" {
		t.Fatalf("rewritten after delete: %q", got)
	}
}

// testKeys: the unusual but valid keys work, at the length limit too.
func testKeys(t *testing.T, h Harness) {
	s := h.New(t)
	long := strings.Repeat(strings.Repeat("k", 200)+"/", 5) // 1005 bytes
	long += strings.Repeat("z", blob.MaxKeyLen-len(long))
	valid := []string{"..a", "a..", ".a", "a.", "-", "_", "...", "A-Z_a-z.0-9", "x/..y/.z/-", long}
	for i, k := range valid {
		data := []byte(strconv.Itoa(i))
		put(t, s, k, data)
		if got, _ := get(t, s, k); !bytes.Equal(got, data) {
			t.Fatalf("key %.40q: read %q", k, got)
		}
	}
	l, err := s.List(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(valid)
	slices.Sort(want)
	if !slices.Equal(keys(l), want) {
		t.Fatalf("List = %.200q, want %.200q", keys(l), want)
	}
}

// HostileKeys are refused by every store with ErrInvalidKey: they escape the namespace, are
// ambiguous, or hold characters outside the key alphabet.
var HostileKeys = []string{
	"", "/", ".", "..", "../x", "../../etc/passwd", "/abs", "/etc/passwd", "a/", "a//b", "a/./b",
	"a/../b", "a/..", "./a", "x/../../y", `a\b`, `..\x`, "a\x00b", "a\nb", "a\rb", "a\tb",
	"a\x7fb", "a b", "a?b", "a#b", "a%2e%2e/b", "%2e%2e", "a:b", "é", "a~", "a*b",
	strings.Repeat("a", blob.MaxKeyLen+1),
	strings.Repeat("a/", blob.MaxKeyLen/2) + "b",
}

// HostilePrefixes are refused by List.
var HostilePrefixes = []string{"/", "../", "./", "a//", "a/./", "a/../", "../x", "/abs", `a\`, "a\x00", "a b", "%2e%2e/",
	strings.Repeat("a", blob.MaxKeyLen+1)}

func testHostileKeys(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := context.Background()
	put(t, s, "inside", []byte("kept"))
	var before []string
	if h.Outside != nil {
		before = h.Outside(t, s)
	}
	for _, k := range HostileKeys {
		check := func(op string, err error) {
			t.Helper()
			if !errors.Is(err, blob.ErrInvalidKey) {
				t.Errorf("%s(%.60q): %v, want ErrInvalidKey", op, k, err)
			}
		}
		_, err := s.Put(ctx, k, strings.NewReader("evil"))
		check("Put", err)
		rc, _, err := s.Get(ctx, k)
		check("Get", err)
		if rc != nil {
			rc.Close()
		}
		rc, err = s.GetRange(ctx, k, 0, 4)
		check("GetRange", err)
		if rc != nil {
			rc.Close()
		}
		_, err = s.Stat(ctx, k)
		check("Stat", err)
		check("Delete", s.Delete(ctx, k))
	}
	for _, p := range HostilePrefixes {
		if l, err := s.List(ctx, p); !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("List(%.60q) = %q, %v; want ErrInvalidKey", p, keys(l), err)
		}
	}
	if l, err := s.List(ctx, ""); err != nil || !slices.Equal(keys(l), []string{"inside"}) {
		t.Errorf("after the hostile keys the store lists %q (%v), want only \"inside\"", keys(l), err)
	}
	if h.Outside != nil {
		if after := h.Outside(t, s); !slices.Equal(before, after) {
			t.Errorf("hostile keys changed what is around the store:\nbefore %q\nafter  %q", before, after)
		}
	}
}

// testAtomicReplace: while one writer replaces an object again and again, readers only ever
// see one whole version (its bytes, and a size that matches them).
func testAtomicReplace(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := context.Background()
	versions := [][]byte{content(10, 2*h.BlockSize+h.BlockSize/2), content(11, h.BlockSize+h.BlockSize/3)}
	put(t, s, "obj", versions[0])
	whole := func(b []byte) bool { return bytes.Equal(b, versions[0]) || bytes.Equal(b, versions[1]) }

	var done atomic.Bool
	var reads, failures atomic.Int64
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for !done.Load() {
				rc, info, err := s.Get(ctx, "obj")
				if err != nil {
					t.Errorf("Get during replacement: %v", err)
					return
				}
				b, err := io.ReadAll(rc)
				rc.Close()
				if err != nil {
					// A store may fail a read whose version was replaced under it; it must not
					// return a mixture.
					failures.Add(1)
					continue
				}
				reads.Add(1)
				if !whole(b) || info.Size != int64(len(b)) {
					t.Errorf("a reader saw %d bytes (Info.Size %d) that are neither version whole", len(b), info.Size)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for !done.Load() {
			in, err := s.Stat(ctx, "obj")
			if err != nil {
				t.Errorf("Stat during replacement: %v", err)
				return
			}
			if in.Size != int64(len(versions[0])) && in.Size != int64(len(versions[1])) {
				t.Errorf("Stat during replacement saw size %d, neither version's", in.Size)
				return
			}
		}
	})
	for i := range 8 {
		put(t, s, "obj", versions[(i+1)%2])
	}
	done.Store(true)
	wg.Wait()
	t.Logf("%d whole reads, %d reads failed cleanly, during 8 replacements", reads.Load(), failures.Load())
	if reads.Load() == 0 {
		t.Fatal("no read completed during the replacements: the test proved nothing")
	}
	if got, _ := get(t, s, "obj"); !bytes.Equal(got, versions[0]) {
		t.Fatal("after the last replacement the object is not the last version written")
	}
	if l, _ := s.List(ctx, ""); !slices.Equal(keys(l), []string{"obj"}) {
		t.Fatalf("replacement left %q", keys(l))
	}
}

// testConcurrentPuts: writers racing on one key never produce a mixture; at the end the object
// is one writer's whole version.
func testConcurrentPuts(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := context.Background()
	var versions [][]byte
	for i := range 3 {
		versions = append(versions, content(uint64(20+i), h.BlockSize+int64(i)*h.BlockSize/2+int64(i)))
	}
	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	for _, v := range versions {
		wg.Go(func() {
			for range 3 {
				if _, err := s.Put(ctx, "raced", onlyReader{bytes.NewReader(v)}); err != nil {
					// Allowed (a store may refuse a Put that overlapped another), but only as
					// an error: the object must stay whole.
					failed.Add(1)
					continue
				}
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	t.Logf("%d puts succeeded, %d failed", ok.Load(), failed.Load())
	if ok.Load() == 0 {
		t.Fatal("no concurrent Put succeeded")
	}
	got, info := get(t, s, "raced")
	if !slices.ContainsFunc(versions, func(v []byte) bool { return bytes.Equal(v, got) }) || info.Size != int64(len(got)) {
		t.Fatalf("after racing Puts the object is %d bytes that are no writer's version", len(got))
	}
}

// cancelAfter is a source that cancels its context after n bytes and then keeps producing.
type cancelAfter struct {
	r      io.Reader
	n      int64
	cancel context.CancelFunc
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	k, err := c.r.Read(p)
	c.n -= int64(k)
	if c.n <= 0 {
		c.cancel()
	}
	return k, err
}

// failAfter is a source that fails after n bytes.
type failAfter struct {
	r   io.Reader
	n   int64
	err error
}

func (f *failAfter) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, f.err
	}
	if int64(len(p)) > f.n {
		p = p[:f.n]
	}
	k, err := f.r.Read(p)
	f.n -= int64(k)
	return k, err
}

// testCancelledPut: a Put whose context ends midway leaves no object, or the old one whole.
func testCancelledPut(t *testing.T, h Harness) {
	s := h.New(t)
	old := content(30, h.BlockSize/2)
	put(t, s, "existing", old)
	size := 4 * h.BlockSize
	for _, c := range []struct {
		name  string
		after int64
	}{{"before", 0}, {"first-block", h.BlockSize / 3}, {"later-block", h.BlockSize + h.BlockSize/2}, {"last-byte", size}} {
		for _, key := range []string{"fresh", "existing"} {
			ctx, cancel := context.WithCancel(context.Background())
			if c.after == 0 {
				cancel()
			}
			_, err := s.Put(ctx, key, &cancelAfter{r: Generate(31, size), n: c.after, cancel: cancel})
			cancel()
			if !errors.Is(err, context.Canceled) {
				t.Errorf("%s: Put of %s cancelled after %d bytes returned %v, want context.Canceled", c.name, key, c.after, err)
			}
		}
		if _, err := s.Stat(context.Background(), "fresh"); !errors.Is(err, blob.ErrNotFound) {
			t.Fatalf("%s: a cancelled Put left a new object (Stat: %v)", c.name, err)
		}
		if got, _ := get(t, s, "existing"); !bytes.Equal(got, old) {
			t.Fatalf("%s: a cancelled Put changed the object it was replacing (%d bytes, want %d)", c.name, len(got), len(old))
		}
	}
	if l, _ := s.List(context.Background(), ""); !slices.Equal(keys(l), []string{"existing"}) {
		t.Fatalf("cancelled Puts left %q", keys(l))
	}
}

// testFailedReader: a Put whose source fails midway returns that error and leaves no object.
func testFailedReader(t *testing.T, h Harness) {
	s := h.New(t)
	boom := errors.New("source failed")
	for _, after := range []int64{0, 10, h.BlockSize, 2*h.BlockSize + 5} {
		_, err := s.Put(context.Background(), "failed", &failAfter{r: Generate(40, 4*h.BlockSize), n: after, err: boom})
		if !errors.Is(err, boom) {
			t.Errorf("Put from a source failing after %d bytes: %v, want the source's error", after, err)
		}
		if _, err := s.Stat(context.Background(), "failed"); !errors.Is(err, blob.ErrNotFound) {
			t.Fatalf("a Put whose source failed after %d bytes left an object (Stat: %v)", after, err)
		}
	}
	if l, _ := s.List(context.Background(), ""); len(l) != 0 {
		t.Fatalf("failed Puts left %q", keys(l))
	}
}

// testBoundedMemory streams an object much larger than the limit through Put and Get, from a
// generator and into a hash, and checks the heap's peak while each runs. The garbage
// collector runs at GOGC=20 meanwhile, so the heap's size tracks what is live.
func testBoundedMemory(t *testing.T, h Harness) {
	size, limit := memSize.n, memLimit.n
	if size <= 2*limit {
		t.Logf("-blobtest.memsize %s is not much larger than the limit %s: the test proves little", mib(size), mib(limit))
	}
	s := h.New(t)
	ctx := context.Background()
	defer debug.SetGCPercent(debug.SetGCPercent(20))

	want := sha256.New()
	var n int64
	putM := measure(func() error {
		var err error
		n, err = s.Put(ctx, "big/object", io.TeeReader(Generate(50, size), want))
		return err
	})
	if putM.err != nil || n != size {
		t.Fatalf("put %s: %d bytes, %v", mib(size), n, putM.err)
	}
	got := sha256.New()
	var info blob.Info
	var read int64
	getM := measure(func() error {
		rc, in, err := s.Get(ctx, "big/object")
		if err != nil {
			return err
		}
		defer rc.Close()
		info = in
		read, err = io.Copy(got, rc)
		return err
	})
	if getM.err != nil || read != size || info.Size != size || !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		t.Fatalf("get %s: read %d bytes (Info.Size %d), same as written: %v; %v", mib(size), read, info.Size, bytes.Equal(got.Sum(nil), want.Sum(nil)), getM.err)
	}
	for _, m := range []struct {
		op string
		m  measurement
	}{{"Put", putM}, {"Get", getM}} {
		t.Logf("%s of %s: heap peak +%s (live after a GC: +%s), allocated %s in all, %.0f MB/s",
			m.op, mib(size), mib(m.m.peakHeap), mib(m.m.peakLive), mib(m.m.allocated), float64(size)/1e6/m.m.elapsed.Seconds())
		if m.m.peakHeap > limit {
			t.Errorf("%s of %s grew the heap by %s, more than the %s bound", m.op, mib(size), mib(m.m.peakHeap), mib(limit))
		}
	}
	if err := s.Delete(ctx, "big/object"); err != nil {
		t.Fatal(err)
	}
}

type measurement struct {
	err                           error
	peakHeap, peakLive, allocated int64
	elapsed                       time.Duration
}

// measure runs fn while sampling the heap every millisecond, and reports the peaks above what
// was in use before.
func measure(fn func() error) measurement {
	samples := []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"}, // live and not yet swept
		{Name: "/gc/heap/live:bytes"},                // live, as of the last GC
		{Name: "/gc/heap/allocs:bytes"},              // allocated since the start
	}
	read := func() (heap, live, allocs int64) {
		metrics.Read(samples)
		return int64(samples[0].Value.Uint64()), int64(samples[1].Value.Uint64()), int64(samples[2].Value.Uint64())
	}
	runtime.GC()
	baseHeap, baseLive, baseAllocs := read()
	var m measurement
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			heap, live, _ := read()
			m.peakHeap = max(m.peakHeap, heap-baseHeap)
			m.peakLive = max(m.peakLive, live-baseLive)
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	start := time.Now()
	m.err = fn()
	m.elapsed = time.Since(start)
	close(stop)
	<-sampled
	_, _, allocs := read()
	m.allocated = allocs - baseAllocs
	return m
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

type sizeValue struct{ n int64 }

func sizeFlag(name string, def int64, usage string) *sizeValue {
	v := &sizeValue{def}
	flag.Var(v, name, usage)
	return v
}

func (v *sizeValue) String() string {
	if v == nil {
		return ""
	}
	return strconv.FormatInt(v.n, 10)
}

func (v *sizeValue) Set(s string) error {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = rest, u.m
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/mult {
		return fmt.Errorf("want a size such as 268435456, 256MiB or 1GiB")
	}
	v.n = n * mult
	return nil
}
