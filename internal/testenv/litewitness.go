package testenv

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// Witness is a running litewitness (filippo.io/torchwood v0.6.1, pinned by the module in
// internal/testenv/litewitness): a real c2sp.org/tlog-witness server, independent of Rampart,
// with its SQLite state and its key in an ssh-agent, as its operators run it.
type Witness struct {
	// URL is its submission prefix.
	URL string
	// Name is its key name; Key its cosignature verifier key.
	Name, Key string

	db, ctl string
}

var witnessBuild struct {
	once     sync.Once
	dir, err string
}

// witnessBinaries builds litewitness and witnessctl once per test process.
func witnessBinaries(t testing.TB) (litewitness, witnessctl string) {
	t.Helper()
	witnessBuild.once.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		mod := filepath.Join(filepath.Dir(file), "litewitness")
		dir, err := os.MkdirTemp("", "rampart-litewitness")
		if err != nil {
			witnessBuild.err = err.Error()
			return
		}
		for _, cmd := range []string{"litewitness", "witnessctl"} {
			out, err := exec.Command("go", "build", "-C", mod, "-o", filepath.Join(dir, cmd), "filippo.io/torchwood/cmd/"+cmd).CombinedOutput()
			if err != nil {
				witnessBuild.err = fmt.Sprintf("go build filippo.io/torchwood/cmd/%s: %v\n%s", cmd, err, out)
				return
			}
		}
		witnessBuild.dir = dir
	})
	if witnessBuild.err != "" {
		Missing(t, "the litewitness witness", witnessBuild.err+" (it is built from the Go module proxy, or the module cache)")
	}
	return filepath.Join(witnessBuild.dir, "litewitness"), filepath.Join(witnessBuild.dir, "witnessctl")
}

// Litewitness starts a witness named name, with a new Ed25519 key, until the test ends.
func Litewitness(t testing.TB, name string) *Witness {
	t.Helper()
	lw, ctl := witnessBinaries(t)
	// A unix socket path must be short: not under t.TempDir().
	dir, err := os.MkdirTemp("", "lw")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "agent.sock")
	fingerprint := serveAgent(t, sock)
	w := &Witness{db: filepath.Join(dir, "witness.db"), ctl: ctl, Name: name}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(lw, "-name", name, "-db", w.db, "-ssh-agent", sock, "-key", fingerprint, "-listen", addr)
	var logs lockedBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("litewitness output:\n%s", logs.String())
		}
	})
	w.URL = "http://" + addr
	vkey := regexp.MustCompile(`vkey=(\S+)`)
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-done:
			t.Fatalf("litewitness exited:\n%s", logs.String())
		default:
		}
		if m := vkey.FindStringSubmatch(logs.String()); m != nil && w.Key == "" {
			w.Key = strings.Trim(m[1], `"`)
		}
		if w.Key != "" {
			// Any answer means it listens (a GET of add-checkpoint is not allowed).
			if resp, err := http.Get(w.URL + "/add-checkpoint"); err == nil {
				resp.Body.Close()
				return w
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("litewitness not ready after 30s:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// AddLog makes the witness accept checkpoints of the log named origin, signed by vkey.
func (w *Witness) AddLog(t testing.TB, origin, vkey string) {
	t.Helper()
	for _, args := range [][]string{{"add-log", "-db", w.db, "-origin", origin}, {"add-key", "-db", w.db, "-origin", origin, "-key", vkey}} {
		if out, err := exec.Command(w.ctl, args...).CombinedOutput(); err != nil {
			t.Fatalf("witnessctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// serveAgent runs an ssh-agent holding a new Ed25519 key on sock and returns the key's
// SHA256 fingerprint.
func serveAgent(t testing.TB, sock string) string {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keyring := agent.NewKeyring()
	if err := keyring.Add(agent.AddedKey{PrivateKey: priv}); err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _ = agent.ServeAgent(keyring, c) }()
		}
	}()
	return ssh.FingerprintSHA256(signer.PublicKey())
}

// lockedBuffer is a goroutine-safe output sink.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
