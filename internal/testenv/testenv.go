// Package testenv gives tests the real servers they need, and makes their absence loud: when
// RAMPART_REQUIRE_INTEGRATION=1 (CI), a missing server fails the test; elsewhere it skips with
// the command that would provide it.
package testenv

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"io"
	"net"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/stdlib"
)

// Missing skips the test, or fails it under RAMPART_REQUIRE_INTEGRATION=1, saying what is
// missing and how to get it.
func Missing(t testing.TB, what, how string) {
	t.Helper()
	if os.Getenv("RAMPART_REQUIRE_INTEGRATION") == "1" {
		t.Fatalf("%s is required (RAMPART_REQUIRE_INTEGRATION=1) but not available: %s", what, how)
	}
	t.Skipf("%s not available: %s", what, how)
}

// PostgresDSN returns a connection string to a new, empty schema of the test PostgreSQL server
// named by RAMPART_TEST_POSTGRES_DSN; the schema is dropped when the test ends.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	base := os.Getenv("RAMPART_TEST_POSTGRES_DSN")
	if base == "" {
		Missing(t, "PostgreSQL", "run ./scripts/test.sh, which starts a throwaway server and sets RAMPART_TEST_POSTGRES_DSN")
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("RAMPART_TEST_POSTGRES_DSN %q: %v", base, err)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	schema := "t_" + hex.EncodeToString(b)
	db, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		db.Close()
		t.Fatalf("create test schema on %s: %v", u.Host, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = db.ExecContext(ctx, "DROP SCHEMA "+schema+" CASCADE")
		db.Close()
	})
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

var _ = stdlib.GetDefaultDriver // registers the "pgx" database/sql driver

// Proxy is a TCP proxy on loopback that a test can cut, to make a real server unreachable
// (a network partition or a crashed database, as the client sees it) and restore.
type Proxy struct {
	target string
	ln     net.Listener

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]bool
}

// NewProxy listens on 127.0.0.1 and forwards to target until the test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{target: target, ln: ln, conns: map[net.Conn]bool{}}
	go p.serve()
	t.Cleanup(func() { ln.Close(); p.Cut() })
	return p
}

// Addr is the proxy's listening address.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Cut closes every open connection and refuses new ones until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		c.Close()
	}
	p.conns = map[net.Conn]bool{}
}

// Restore lets connections through again.
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
}

func (p *Proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.mu.Unlock()
		go p.pipe(c)
	}
}

func (p *Proxy) pipe(c net.Conn) {
	up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.cut {
		p.mu.Unlock()
		c.Close()
		up.Close()
		return
	}
	p.conns[c], p.conns[up] = true, true
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done
	c.Close()
	up.Close()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, up)
	p.mu.Unlock()
}

// ViaProxy rewrites a postgres:// DSN to connect through the proxy.
func ViaProxy(t testing.TB, dsn string, p *Proxy) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = p.Addr()
	return u.String()
}

// PostgresHostPort returns host:port of a postgres:// DSN.
func PostgresHostPort(t testing.TB, dsn string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// TCPEcho starts a TCP echo server on loopback for the test (egress tests tunnel to it) and
// returns its port; it stops when the test ends.
func TCPEcho(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
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
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}
