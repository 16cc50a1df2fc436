package main_test

import (
	"bytes"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"rampart.dev/rampart/vault"
)

// Through the binary and its API: every kind of corruption of a stored version is reported as
// a corrupt version naming the part (header, segment N, manifest), never as an unavailable key
// (503) or a server that cannot be reached. The header, the manifest and the first segment are
// checked before the answer starts: a 500 with code corrupt. A later segment cuts the download,
// and the CLI says at which segment; verify names it.
func TestWeightsCorruptionReported(t *testing.T) {
	addr := freeAddr(t)
	data := filepath.Join(t.TempDir(), "data")
	startServer(t, addr, "dev", "--addr", addr, "--data", data)
	c := &cli{t: t, addr: addr, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir(), "RAMPART_TOKEN="}}
	login := func(user string) string {
		return strings.TrimSpace(c.ok("login", "--dev", "--user", user, "--print-token"))
	}
	alice, bob, dave := login("alice"), login("bob"), login("dave")
	id := reqID.FindString(c.as(alice, "request", "create", "--role", "weights-writer-frontier-7", "--reason", "checkpoint 4411", "--duration", "1h").out)
	c.as(bob, "request", "approve", id)
	c.as(dave, "request", "approve", id)
	dir := t.TempDir()
	file := filepath.Join(dir, "model.bin")
	plain := make([]byte, 3<<20+12345) // four segments of 1 MiB, the last short
	_, _ = rand.Read(plain)
	if err := os.WriteFile(file, plain, 0o600); err != nil {
		t.Fatal(err)
	}
	if r := c.as(alice, "weights", "put", "frontier-7", file); r.code != 0 {
		t.Fatalf("put: %+v", r)
	}

	db, err := sql.Open("sqlite", "file:"+filepath.Join(data, "rampart.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	exec := func(q string) {
		t.Helper()
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	headerPath := filepath.Join(data, "vault", "objects", "frontier-7", "1", "header#")
	dataPath := filepath.Join(data, "vault", "objects", "frontier-7", "1", "data#")
	origHeader, err := os.ReadFile(headerPath)
	if err != nil {
		t.Fatal(err)
	}
	origData, err := os.ReadFile(dataPath)
	if err != nil {
		t.Fatal(err)
	}
	var origManifest string
	var origSize int64
	if err := db.QueryRow(`SELECT manifest, size FROM vault_objects WHERE name = 'frontier-7' AND version = 1`).Scan(&origManifest, &origSize); err != nil {
		t.Fatal(err)
	}
	write := func(path string, b []byte) {
		t.Helper()
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	header := func(edit func(h *vault.Header)) {
		t.Helper()
		h, err := vault.ReadHeader(bytes.NewReader(origHeader))
		if err != nil {
			t.Fatal(err)
		}
		edit(h)
		b, err := h.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		write(headerPath, b)
	}
	flip := func(off int) {
		b := bytes.Clone(origData)
		b[off] ^= 1
		write(dataPath, b)
	}
	seg := 1<<20 + vault.TagSize

	for _, k := range []struct {
		name, part string
		edit       func()
	}{
		{"key id in the header", "header", func() { header(func(h *vault.Header) { h.KeyID = "local-00000000deadbeef" }) }},
		{"nonce prefix in the header", "header", func() { header(func(h *vault.Header) { h.NoncePrefix[0] ^= 1 }) }},
		{"wrapped key in the header", "header", func() { header(func(h *vault.Header) { h.WrappedDEK[0] ^= 1 }) }},
		{"header cut short", "header", func() { write(headerPath, origHeader[:20]) }},
		{"first segment", "segment 0", func() { flip(100) }},
		{"third segment", "segment 2", func() { flip(2*seg + 100) }},
		{"last segment cut off", "segment 2", func() { write(dataPath, origData[:3*seg]) }},
		{"manifest signature", "manifest", func() {
			exec(`UPDATE vault_objects SET manifest = replace(manifest, 'uploaded-by alice', 'uploaded-by mallory') WHERE name = 'frontier-7'`)
		}},
		{"size beside the manifest", "manifest", func() { exec(`UPDATE vault_objects SET size = size + 1 WHERE name = 'frontier-7'`) }},
	} {
		t.Run(k.name, func(t *testing.T) {
			k.edit()
			defer func() {
				write(headerPath, origHeader)
				write(dataPath, origData)
				if _, err := db.Exec(`UPDATE vault_objects SET manifest = ?, size = ? WHERE name = 'frontier-7' AND version = 1`, origManifest, origSize); err != nil {
					t.Fatal(err)
				}
			}()
			late := k.part == "segment 2"
			out := filepath.Join(dir, "fetched.bin")
			r := c.as(alice, "weights", "get", "frontier-7", "-o", out)
			switch {
			case r.code == 0:
				t.Fatalf("get of a corrupt version succeeded: %+v", r)
			case strings.Contains(r.err, "cannot reach") || strings.Contains(r.err, "gave no answer"):
				t.Fatalf("get blamed the server: %s", r.err)
			case !late && !strings.Contains(r.err, "weights/frontier-7 version 1 is corrupt: "+k.part+": "):
				t.Fatalf("get: want the corrupt %s named:\n%s", k.part, r.err)
			case late && !strings.Contains(r.err, "at segment 2 of 4"):
				t.Fatalf("get: want the segment it stopped at:\n%s", r.err)
			case !strings.Contains(r.err, "nothing was written"):
				t.Fatalf("get: %s", r.err)
			}
			if _, err := os.Stat(out); err == nil {
				t.Fatal("a file was written from a corrupt version")
			}
			v := c.as(alice, "weights", "verify", "frontier-7")
			if v.code == 0 || !strings.Contains(v.out, "FAILED: "+k.part+" is corrupt") || !strings.Contains(v.out, "is corrupt: "+k.part+": ") {
				t.Fatalf("verify: want the corrupt %s named: %+v", k.part, v)
			}

			// The API: a 500 naming the part before any byte, or a cut body without the
			// verification trailer.
			req, _ := http.NewRequest("GET", "http://"+addr+"/v1/weights/frontier-7", nil)
			req.Header.Set("Authorization", "Bearer "+alice)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if late {
				if resp.StatusCode != 200 || rerr == nil || resp.Trailer.Get("X-Rampart-Verified") != "" || len(body) != 2<<20 {
					t.Fatalf("API: %d, %d bytes, %v, trailer %q; want 200 cut after two segments", resp.StatusCode, len(body), rerr, resp.Trailer.Get("X-Rampart-Verified"))
				}
				return
			}
			var e struct {
				Error struct{ Code, Message string }
			}
			if resp.StatusCode != 500 || json.Unmarshal(body, &e) != nil || e.Error.Code != "corrupt" || !strings.Contains(e.Error.Message, "is corrupt: "+k.part+": ") {
				t.Fatalf("API: %d %s; want 500 corrupt naming the %s", resp.StatusCode, body, k.part)
			}
		})
	}

	// Restored, it reads again.
	if r := c.as(alice, "weights", "get", "frontier-7", "-o", filepath.Join(dir, "ok.bin")); r.code != 0 {
		t.Fatalf("get after the restores: %+v", r)
	}
}
