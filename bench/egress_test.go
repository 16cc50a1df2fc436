package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"rampart.dev/rampart/egress"
	"rampart.dev/rampart/policy"
)

// The egress comparison: Rampart's egress gateway (package egress, served in this process)
// against Stripe's smokescreen v0.1.0 (a subprocess built from this module), both forwarding
// CONNECT tunnels to origins on 127.0.0.1, in the same run. See README.md.

// Settings of the egress comparison. The window per peer and concurrency is
// $RAMPART_BENCH_EGRESS_SECONDS (default 5), the bulk transfer size
// $RAMPART_BENCH_EGRESS_BULK_MIB (default 256); the smokescreen binary is $SMOKESCREEN_BIN or
// bin/smokescreen (run.sh builds it).
var (
	egressClients        = []int{8, 32}
	egressWarmup         = time.Second
	egressLatencySamples = 5000 // tunnels timed one at a time, per target
	egressBulkRounds     = 5    // transfers per target and direction; the median counts
)

const (
	egressMsgSize   = 32 // the small message each tunnel echoes
	egressIOTimeout = 10 * time.Second
	bulkChunk       = 128 << 10 // the client's read and write size in bulk transfers
)

func envInt(name string, def int) int {
	if s := os.Getenv(name); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			return n
		}
	}
	return def
}

// egressWindow is how long each target is measured at each concurrency.
func egressWindow() time.Duration {
	return time.Duration(envInt("RAMPART_BENCH_EGRESS_SECONDS", 5)) * time.Second
}

// egressBulkBytes is the size of one bulk transfer.
func egressBulkBytes() int64 { return int64(envInt("RAMPART_BENCH_EGRESS_BULK_MIB", 256)) << 20 }

// bulkData is the pattern bulk transfers repeat: 1 MiB of deterministic pseudo-random bytes.
var bulkData = func() []byte {
	b := make([]byte, 1<<20)
	r := rand.NewChaCha8([32]byte{'r', 'a', 'm', 'p', 'a', 'r', 't'})
	_, _ = r.Read(b)
	return b
}()

// origin is a TCP server on 127.0.0.1 that runs serve on every connection it accepts.
type origin struct {
	ln    net.Listener
	conns atomic.Int64
}

func startOrigin(serve func(net.Conn)) (*origin, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	o := &origin{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			o.conns.Add(1)
			go serve(c)
		}
	}()
	return o, nil
}

func (o *origin) addr() string { return o.ln.Addr().String() }

// echoConn echoes what it reads until the client closes.
func echoConn(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 512)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Bulk origin protocol: the client sends a mode byte and a big-endian uint64 n.
//   - 'U' (upload): the client sends n bytes; the origin answers with the number of bytes it
//     read (uint64) once it has n, and 32 zero bytes.
//   - 'S' (upload, checked): the same, but the 32 bytes are the SHA-256 of what it read.
//   - 'D' (download): the origin sends n bytes of bulkData repeated, then closes.
//
// No step relies on a half-close: smokescreen closes both sides of a tunnel when one side
// finishes sending.
const bulkHeader = 9

func bulkConn(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Minute))
	var hdr [bulkHeader]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return
	}
	n := int64(binary.BigEndian.Uint64(hdr[1:]))
	switch hdr[0] {
	case 'U', 'S':
		h := sha256.New()
		buf := make([]byte, 256<<10)
		var got int64
		for got < n {
			m, err := c.Read(buf[:min(int64(len(buf)), n-got)])
			if hdr[0] == 'S' {
				h.Write(buf[:m])
			}
			got += int64(m)
			if err != nil {
				break
			}
		}
		reply := make([]byte, 8, 8+sha256.Size)
		binary.BigEndian.PutUint64(reply, uint64(got))
		if hdr[0] == 'S' {
			reply = h.Sum(reply)
		} else {
			reply = append(reply, make([]byte, sha256.Size)...)
		}
		_, _ = c.Write(reply)
		// Wait for the client to close, so that the reply is never cut by a reset.
		_, _ = c.Read(hdr[:1])
	case 'D':
		for sent := int64(0); sent < n; {
			off := sent % int64(len(bulkData))
			m, err := c.Write(bulkData[off:min(int64(len(bulkData)), off+n-sent, off+bulkChunk)])
			sent += int64(m)
			if err != nil {
				return
			}
		}
	}
}

// relayConn is the reference floor: a minimal CONNECT relay with no identity, policy, address
// checks, limits or logging. It reads the request with net/http, dials, answers 200 and copies
// both ways with io.Copy (splice(2) between TCP connections on Linux), passing half-closes on.
func relayConn(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil || req.Method != http.MethodConnect {
		return
	}
	u, err := net.DialTimeout("tcp", req.Host, egressIOTimeout)
	if err != nil {
		_, _ = io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
		return
	}
	defer u.Close()
	if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\n\r\n"); err != nil {
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if n := br.Buffered(); n > 0 {
			b, _ := br.Peek(n)
			if _, err := u.Write(b); err != nil {
				return
			}
		}
		_, _ = io.Copy(u, c)
		_ = u.(*net.TCPConn).CloseWrite()
	}()
	_, _ = io.Copy(c, u)
	_ = c.(*net.TCPConn).CloseWrite()
	<-done
}

// egressTarget is a way to reach an origin: directly, or through a proxy's CONNECT tunnel.
type egressTarget struct {
	name  string
	proxy string // proxy address; "" dials the origin directly
	// enforces is set for the proxies under comparison, which refuse what their rule does not
	// name (the reference relay allows everything).
	enforces bool
	// pids are the processes whose CPU time the target costs: this one (load generator, origins
	// and Rampart's gateway) and, for smokescreen, its process.
	pids   []int
	opened *atomic.Int64 // tunnels (or direct connections) established
}

// open connects to dst, through the proxy if there is one, with every I/O due by deadline.
func (t egressTarget) open(dst string, deadline time.Time) (net.Conn, error) {
	addr := dst
	if t.proxy != "" {
		addr = t.proxy
	}
	c, err := net.DialTimeout("tcp", addr, egressIOTimeout)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(deadline)
	if t.proxy != "" {
		status, body, err := connectVia(c, dst)
		if err == nil && status != http.StatusOK {
			err = fmt.Errorf("%s answered CONNECT %s with %d: %.200q", t.name, dst, status, body)
		}
		if err != nil {
			c.Close()
			return nil, err
		}
	}
	t.opened.Add(1)
	return c, nil
}

// connectVia sends CONNECT dst on c and reads the proxy's answer head. It returns the status
// and, for a refusal, whatever part of the body has arrived with the head.
func connectVia(c net.Conn, dst string) (int, string, error) {
	if _, err := io.WriteString(c, "CONNECT "+dst+" HTTP/1.1\r\nHost: "+dst+"\r\n\r\n"); err != nil {
		return 0, "", err
	}
	var buf [2048]byte
	n := 0
	for {
		m, err := c.Read(buf[n:])
		n += m
		if i := bytes.Index(buf[:n], []byte("\r\n\r\n")); i >= 0 {
			line, _, _ := bytes.Cut(buf[:i], []byte("\r\n"))
			f := strings.Fields(string(line))
			if len(f) < 2 || !strings.HasPrefix(f[0], "HTTP/1.") {
				return 0, "", fmt.Errorf("not an HTTP answer: %q", line)
			}
			status, err := strconv.Atoi(f[1])
			if err != nil {
				return 0, "", fmt.Errorf("bad status line %q", line)
			}
			if status == http.StatusOK && n > i+4 {
				// Nothing was sent through the tunnel yet, so nothing can have come back.
				return 0, "", fmt.Errorf("the proxy sent %d bytes after its 200 before the origin could have", n-i-4)
			}
			return status, string(buf[i+4 : n]), nil
		}
		if err != nil {
			return 0, "", fmt.Errorf("reading the answer to CONNECT: %w", err)
		}
		if n == len(buf) {
			return 0, "", fmt.Errorf("the answer head is over %d bytes", len(buf))
		}
	}
}

// echoTunnel opens one connection to the echo origin through t, sends msg, reads the echo into
// echo and closes. It returns the time from the dial to the first echoed byte.
func echoTunnel(t egressTarget, dst string, msg, echo []byte) (time.Duration, error) {
	t0 := time.Now()
	c, err := t.open(dst, t0.Add(egressIOTimeout))
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if _, err := c.Write(msg); err != nil {
		return 0, err
	}
	n, err := c.Read(echo)
	if n == 0 {
		return 0, fmt.Errorf("%s: no echo: %v", t.name, err)
	}
	first := time.Since(t0)
	if n < len(echo) {
		if _, err := io.ReadFull(c, echo[n:]); err != nil {
			return 0, fmt.Errorf("%s: echo cut after %d bytes: %v", t.name, n, err)
		}
	}
	if !bytes.Equal(echo, msg) {
		return 0, errWrongEcho
	}
	return first, nil
}

var errWrongEcho = errors.New("the echo differs from the message sent")

// setMsg makes the message of worker w's seq-th tunnel unique.
func setMsg(msg []byte, w, seq int) {
	for i := range msg {
		msg[i] = byte('a' + i%26)
	}
	binary.BigEndian.PutUint64(msg[0:], uint64(w))
	binary.BigEndian.PutUint64(msg[8:], uint64(seq))
}

// bulkTransfer moves n bytes through one connection to the bulk origin: up (client to origin)
// or down. It returns the time from the dial to the last byte (for uploads, to the origin's
// acknowledgement of it).
func bulkTransfer(t egressTarget, dst string, up bool, n int64, buf []byte) (time.Duration, error) {
	t0 := time.Now()
	c, err := t.open(dst, t0.Add(2*time.Minute))
	if err != nil {
		return 0, err
	}
	defer c.Close()
	var hdr [bulkHeader]byte
	hdr[0] = 'D'
	if up {
		hdr[0] = 'U'
	}
	binary.BigEndian.PutUint64(hdr[1:], uint64(n))
	if _, err := c.Write(hdr[:]); err != nil {
		return 0, err
	}
	if up {
		for sent := int64(0); sent < n; {
			off := sent % int64(len(bulkData))
			m, err := c.Write(bulkData[off:min(int64(len(bulkData)), off+n-sent, off+int64(len(buf)))])
			sent += int64(m)
			if err != nil {
				return 0, fmt.Errorf("%s: upload cut after %d bytes: %w", t.name, sent, err)
			}
		}
		var reply [8 + sha256.Size]byte
		if _, err := io.ReadFull(c, reply[:]); err != nil {
			return 0, fmt.Errorf("%s: no acknowledgement of the upload: %w", t.name, err)
		}
		if got := int64(binary.BigEndian.Uint64(reply[:8])); got != n {
			return 0, fmt.Errorf("%s: the origin received %d bytes of %d", t.name, got, n)
		}
		return time.Since(t0), nil
	}
	var got int64
	for got < n {
		m, err := c.Read(buf[:min(int64(len(buf)), n-got)])
		got += int64(m)
		if err != nil && got < n {
			return 0, fmt.Errorf("%s: download cut after %d bytes of %d: %w", t.name, got, n, err)
		}
	}
	return time.Since(t0), nil
}

// egressEnv holds the origins, Rampart's gateway and the smokescreen process.
type egressEnv struct {
	dir         string
	echo, bulk  *origin
	relay       *origin
	gw          *egress.Gateway
	gwSrv       *http.Server
	gwServed    chan error
	stopRun     context.CancelFunc
	rampartAddr string
	rampartLog  *os.File
	smoke       *exec.Cmd
	smokeAddr   string
	smokeLog    string
	opened      map[string]*atomic.Int64
	setup       []string
}

var (
	egressOnce sync.Once
	egressE    *egressEnv
	egressErr  error
)

// egressEnvFor starts the origins and both proxies once per test binary.
func egressEnvFor(tb testing.TB) *egressEnv {
	tb.Helper()
	egressOnce.Do(func() { egressE, egressErr = startEgressEnv(context.Background()) })
	if egressErr != nil {
		tb.Fatal(egressErr)
	}
	return egressE
}

// egressBenchEnv is egressEnvFor for the benchmarks. It first frees the in-process environment
// (as the HTTP benchmarks do), so that the numbers do not depend on which benchmarks ran before:
// Rampart's gateway shares this process's garbage collector, and a heap left large by another
// benchmark means fewer collections during the egress measurements.
func egressBenchEnv(b *testing.B) *egressEnv {
	b.Helper()
	if inProcEnv != nil {
		releaseInProcess()
		runtime.GC()
	}
	return egressEnvFor(b)
}

// closeEgressEnv stops both proxies and the origins if they were started.
func closeEgressEnv() {
	if egressE != nil {
		egressE.close()
		egressE = nil
	}
}

// egressPolicyYAML allows callers without identity (the default subject) to the two origins.
const egressPolicyYAML = `apiVersion: rampart.dev/v1alpha1
kind: Settings
metadata: {name: settings}
spec: {admin_group: admins}
---
apiVersion: rampart.dev/v1alpha1
kind: Group
metadata: {name: admins}
spec: {members: [bench-admin]}
---
apiVersion: rampart.dev/v1alpha1
kind: EgressPolicy
metadata: {name: bench-origins}
spec:
  subjects: [default]
  allow:
  - {host: "127.0.0.1", ports: [%d, %d]}
`

// smokescreenACL is the equivalent smokescreen ACL: clients without a role get the default rule,
// which allows 127.0.0.1 only (smokescreen's ACL names hosts, not ports).
const smokescreenACL = `version: v1
services: []
default:
  name: default
  project: bench
  action: enforce
  allowed_domains: [127.0.0.1]
`

func startEgressEnv(ctx context.Context) (_ *egressEnv, err error) {
	env := &egressEnv{opened: map[string]*atomic.Int64{"direct": {}, "relay": {}, "rampart": {}, "smokescreen": {}}}
	step := func(name string, t0 time.Time) {
		env.setup = append(env.setup, fmt.Sprintf("%s %s", name, time.Since(t0).Round(time.Millisecond)))
	}
	defer func() {
		if err != nil {
			env.close()
		}
	}()
	smokeBin := os.Getenv("SMOKESCREEN_BIN")
	if smokeBin == "" {
		smokeBin = filepath.Join("bin", "smokescreen")
	}
	if _, err := os.Stat(smokeBin); err != nil {
		return nil, fmt.Errorf("the smokescreen binary is missing (%v); build it with: go build -o bin/smokescreen github.com/stripe/smokescreen (run.sh does)", err)
	}
	if env.dir, err = os.MkdirTemp("", "rampart-bench-egress-"); err != nil {
		return nil, err
	}
	if env.echo, err = startOrigin(echoConn); err != nil {
		return nil, err
	}
	if env.bulk, err = startOrigin(bulkConn); err != nil {
		return nil, err
	}
	if env.relay, err = startOrigin(relayConn); err != nil {
		return nil, err
	}

	// Rampart: the gateway as the standalone server builds it (server.RunEgress), minus the
	// token store and decision index that subject-less clients never reach.
	t0 := time.Now()
	port := func(o *origin) int { return o.ln.Addr().(*net.TCPAddr).Port }
	pol, err := policy.Parse([]policy.File{{Name: "egress.yaml", Data: fmt.Appendf(nil, egressPolicyYAML, port(env.echo), port(env.bulk))}})
	if err != nil {
		return nil, fmt.Errorf("egress policy: %w", err)
	}
	if env.rampartLog, err = os.Create(filepath.Join(env.dir, "rampart-decisions.log")); err != nil {
		return nil, err
	}
	env.gw = egress.New(egress.Config{
		Policy:      func() *policy.Policy { return pol },
		Addr:        egress.AddrPolicy{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, Own: egress.OwnAddrs()},
		DecisionLog: env.rampartLog,
	})
	ln, err := env.gw.Listen(ctx, "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	env.rampartAddr = ln.Addr().String()
	env.gwSrv = env.gw.HTTPServer(nil)
	env.gwServed = make(chan error, 1)
	go func() { env.gwServed <- env.gw.Serve(env.gwSrv, ln) }()
	runCtx, cancel := context.WithCancel(context.Background())
	env.stopRun = cancel
	go env.gw.Run(runCtx) // revalidates open tunnels every 100ms, as in production
	if err := env.waitReady(env.target("rampart")); err != nil {
		return nil, err
	}
	step("start Rampart's gateway", t0)

	t0 = time.Now()
	if err := env.startSmokescreen(smokeBin); err != nil {
		return nil, err
	}
	step("start smokescreen", t0)
	return env, nil
}

// startSmokescreen writes the ACL and configuration and runs smokescreen on a free loopback
// port, logging (at its default level, info: one line per decision and one per closed
// connection) to a file, like Rampart's decision log.
func (env *egressEnv) startSmokescreen(bin string) error {
	aclFile, cfgFile := filepath.Join(env.dir, "acl.yaml"), filepath.Join(env.dir, "smokescreen.yaml")
	if err := os.WriteFile(aclFile, []byte(smokescreenACL), 0o600); err != nil {
		return err
	}
	// allow_missing_role: a client without a certificate gets the ACL's default rule (it has no
	// command-line flag).
	if err := os.WriteFile(cfgFile, fmt.Appendf(nil, "allow_missing_role: true\nacl_file: %s\n", aclFile), 0o600); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	env.smokeLog = filepath.Join(env.dir, "smokescreen.log")
	logf, err := os.Create(env.smokeLog)
	if err != nil {
		return err
	}
	defer logf.Close()
	env.smoke = exec.Command(bin, "--config-file", cfgFile, "--listen-ip", "127.0.0.1", "--listen-port", strconv.Itoa(port),
		"--allow-range", "127.0.0.1/32")
	env.smoke.Stdout, env.smoke.Stderr = logf, logf
	env.smoke.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the test binary
	if err := env.smoke.Start(); err != nil {
		return fmt.Errorf("start %s: %w", bin, err)
	}
	env.smokeAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if err := env.waitReady(env.target("smokescreen")); err != nil {
		log, _ := os.ReadFile(env.smokeLog)
		return fmt.Errorf("%w; smokescreen's log:\n%.4000s", err, log)
	}
	return nil
}

// waitReady waits until a tunnel through t echoes.
func (env *egressEnv) waitReady(t egressTarget) error {
	msg, echo := make([]byte, egressMsgSize), make([]byte, egressMsgSize)
	setMsg(msg, 0, 0)
	var err error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if _, err = echoTunnel(t, env.echo.addr(), msg, echo); err == nil {
			return nil
		}
	}
	return fmt.Errorf("%s did not tunnel to the echo origin within 30s: %v", t.name, err)
}

// target returns the named way to the origins: direct, rampart or smokescreen.
func (env *egressEnv) target(name string) egressTarget {
	t := egressTarget{name: name, pids: []int{os.Getpid()}, opened: env.opened[name]}
	switch name {
	case "relay":
		t.proxy = env.relay.addr()
	case "rampart":
		t.proxy, t.enforces = env.rampartAddr, true
	case "smokescreen":
		t.proxy, t.enforces = env.smokeAddr, true
		t.pids = append(t.pids, env.smoke.Process.Pid)
	}
	return t
}

func (env *egressEnv) targets() []egressTarget {
	return []egressTarget{env.target("direct"), env.target("relay"), env.target("rampart"), env.target("smokescreen")}
}

// close stops smokescreen and the gateway and removes the files.
func (env *egressEnv) close() {
	if env.smoke != nil && env.smoke.Process != nil {
		env.smoke.Process.Kill()
		env.smoke.Wait()
	}
	if env.gwSrv != nil {
		env.gwSrv.Close()
		<-env.gwServed
	}
	if env.stopRun != nil {
		env.stopRun()
	}
	for _, o := range []*origin{env.echo, env.bulk, env.relay} {
		if o != nil {
			o.ln.Close()
		}
	}
	if env.rampartLog != nil {
		env.rampartLog.Close()
	}
	if env.dir != "" {
		os.RemoveAll(env.dir)
	}
}

// TestEgressPeersAgree checks that both proxies are configured alike and work: each tunnels to
// the allowed origin (echo, and 4 MiB each way with SHA-256 checked), refuses destinations its
// rule does not name without connecting to them, and Rampart writes its decisions to its log.
func TestEgressPeersAgree(t *testing.T) {
	env := egressEnvFor(t)
	const n = 4 << 20
	want := sha256.New()
	for sent := 0; sent < n; sent += len(bulkData) {
		want.Write(bulkData[:min(len(bulkData), n-sent)])
	}
	wantSum := want.Sum(nil)
	for _, tg := range env.targets() {
		t.Run(tg.name, func(t *testing.T) {
			msg, echo := make([]byte, egressMsgSize), make([]byte, egressMsgSize)
			setMsg(msg, 1, 2)
			if _, err := echoTunnel(tg, env.echo.addr(), msg, echo); err != nil {
				t.Fatalf("echo: %v", err)
			}
			// Upload, checked by the origin.
			c, err := tg.open(env.bulk.addr(), time.Now().Add(30*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			hdr := []byte{'S', 0, 0, 0, 0, 0, 0, 0, 0}
			binary.BigEndian.PutUint64(hdr[1:], n)
			if _, err := c.Write(hdr); err != nil {
				t.Fatal(err)
			}
			for sent := 0; sent < n; sent += len(bulkData) {
				if _, err := c.Write(bulkData[:min(len(bulkData), n-sent)]); err != nil {
					t.Fatal(err)
				}
			}
			var reply [8 + sha256.Size]byte
			if _, err := io.ReadFull(c, reply[:]); err != nil {
				t.Fatalf("upload acknowledgement: %v", err)
			}
			c.Close()
			if got := binary.BigEndian.Uint64(reply[:8]); got != n || !bytes.Equal(reply[8:], wantSum) {
				t.Errorf("upload: the origin received %d bytes with SHA-256 %x; sent %d with %x", got, reply[8:], n, wantSum)
			}
			// Download, checked here.
			if c, err = tg.open(env.bulk.addr(), time.Now().Add(30*time.Second)); err != nil {
				t.Fatal(err)
			}
			hdr[0] = 'D'
			if _, err := c.Write(hdr); err != nil {
				t.Fatal(err)
			}
			h := sha256.New()
			got, err := io.Copy(h, io.LimitReader(c, n))
			c.Close()
			if err != nil || got != n || !bytes.Equal(h.Sum(nil), wantSum) {
				t.Errorf("download: received %d bytes of %d with SHA-256 %x, want %x (err %v)", got, n, h.Sum(nil), wantSum, err)
			}
			if !tg.enforces {
				return
			}
			// Destinations the rule does not name are refused, and never dialled.
			before := env.echo.conns.Load()
			echoPort := strconv.Itoa(env.echo.ln.Addr().(*net.TCPAddr).Port)
			for _, dst := range []string{"127.0.0.2:" + echoPort, "10.0.0.1:443", "192.168.1.1:" + echoPort} {
				c, err := net.DialTimeout("tcp", tg.proxy, egressIOTimeout)
				if err != nil {
					t.Fatal(err)
				}
				_ = c.SetDeadline(time.Now().Add(egressIOTimeout))
				status, body, err := connectVia(c, dst)
				c.Close()
				if err != nil || (status != http.StatusForbidden && status != http.StatusProxyAuthRequired) {
					t.Errorf("CONNECT %s: %d %.200q (err %v); want a refusal (403 or 407)", dst, status, body, err)
				}
			}
			if after := env.echo.conns.Load(); after != before {
				t.Errorf("the echo origin was dialled %d times for refused destinations", after-before)
			}
		})
	}
	env.rampartLog.Sync()
	if log, err := os.ReadFile(env.rampartLog.Name()); err != nil || !bytes.Contains(log, []byte(`"event_code":"egress.allowed"`)) ||
		!bytes.Contains(log, []byte(`"event_code":"egress.denied"`)) {
		t.Errorf("Rampart's decision log lacks allowed and denied lines (err %v)", err)
	}
}

// runTunnels opens tunnels through t from workers goroutines for d, each one after the other:
// dial, CONNECT, read the 200, send egressMsgSize bytes, read the echo, close. Every tunnel is
// timed from the dial to the first echoed byte.
func runTunnels(t egressTarget, dst string, workers int, d time.Duration) loadResult {
	type worker struct {
		lat       []time.Duration
		ok, wrong int
		failed    int
		err       error
	}
	ws := make([]worker, workers)
	var wg sync.WaitGroup
	cpu0, cpuErr := cpuTime(t.pids)
	self0, _ := cpuTime(t.pids[:1])
	start := time.Now()
	deadline := start.Add(d)
	for w := range ws {
		wg.Go(func() {
			me := &ws[w]
			me.lat = make([]time.Duration, 0, 1<<13)
			msg, echo := make([]byte, egressMsgSize), make([]byte, egressMsgSize)
			for seq := 0; time.Now().Before(deadline); seq++ {
				setMsg(msg, w, seq)
				lat, err := echoTunnel(t, dst, msg, echo)
				switch {
				case errors.Is(err, errWrongEcho):
					me.wrong++
				case err != nil:
					me.failed++
				default:
					me.ok++
					me.lat = append(me.lat, lat)
					continue
				}
				if me.err == nil {
					me.err = err
				}
			}
		})
	}
	wg.Wait()
	r := loadResult{target: t.name, clients: workers, elapsed: time.Since(start), firstErr: cpuErr}
	if cpu1, err := cpuTime(t.pids); err == nil && cpuErr == nil {
		self1, _ := cpuTime(t.pids[:1])
		r.cpu, r.cpuSelf = cpu1-cpu0, self1-self0
	}
	for _, w := range ws {
		r.ok, r.failed, r.wrong = r.ok+w.ok, r.failed+w.failed, r.wrong+w.wrong
		r.samples = append(r.samples, w.lat...)
		if r.firstErr == nil {
			r.firstErr = w.err
		}
	}
	r.lat = Summarize(slices.Clone(r.samples))
	return r
}

// Egress results, printed by TestMain; guarded by resultsMu.
var (
	egressResults = map[string]*loadResult{}     // "clients=N/target"
	egressLat     = map[string]Latencies{}       // target → one tunnel at a time
	egressBulk    = map[string][]float64{}       // "up/target", "down/target" → MB/s per round
	egressBulkErr = map[string]error{}           // first failed transfer per direction
	egressCPU     = map[string][]time.Duration{} // "up/target" → CPU per transfer
)

// BenchmarkEgressTunnels measures tunnels per second through each proxy (and, for reference,
// direct connections to the origin) with 8 and 32 workers: after a warm-up each, the targets get
// egressWindow each, in alternating slices. Each sub-benchmark does its work once and reports,
// per target, tunnels/s, p50-µs and p99-µs (dial to first echoed byte) and cpu-µs/tunnel (this
// process, and smokescreen's for smokescreen), and rampart/smokescreen-x, the throughput ratio.
func BenchmarkEgressTunnels(b *testing.B) {
	env := egressBenchEnv(b)
	targets := env.targets()
	dst := env.echo.addr()
	for _, clients := range egressClients {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			key := func(name string) string { return fmt.Sprintf("clients=%d/%s", clients, name) }
			resultsMu.Lock()
			_, done := egressResults[key("rampart")]
			resultsMu.Unlock()
			if !done {
				for _, t := range targets {
					runTunnels(t, dst, clients, egressWarmup)
				}
				res := map[string]*loadResult{}
				for range httpSlices {
					for _, t := range targets {
						if res[t.name] == nil {
							res[t.name] = &loadResult{}
						}
						res[t.name].add(runTunnels(t, dst, clients, egressWindow()/httpSlices))
					}
				}
				resultsMu.Lock()
				for name, r := range res {
					r.samples = nil
					egressResults[key(name)] = r
				}
				resultsMu.Unlock()
			}
			resultsMu.Lock()
			defer resultsMu.Unlock()
			b.ReportMetric(0, "ns/op")
			for _, t := range targets {
				r := egressResults[key(t.name)]
				if r.failed > 0 || r.wrong > 0 || r.ok == 0 {
					b.Fatalf("%s: %d tunnels echoed, %d failed, %d wrong echoes; first problem: %v", key(t.name), r.ok, r.failed, r.wrong, r.firstErr)
				}
				b.ReportMetric(r.rps(), t.name+"-tunnels/s")
				b.ReportMetric(float64(r.lat.P50.Microseconds()), t.name+"-p50-µs")
				b.ReportMetric(float64(r.lat.P99.Microseconds()), t.name+"-p99-µs")
				b.ReportMetric(float64(r.cpuPerRequest().Nanoseconds())/1000, t.name+"-cpu-µs/tunnel")
			}
			b.ReportMetric(egressResults[key("rampart")].rps()/egressResults[key("smokescreen")].rps(), "rampart/smokescreen-x")
			b.ReportMetric(egressResults[key("rampart")].rps()/egressResults[key("relay")].rps(), "rampart/relay-x")
		})
	}
}

// BenchmarkEgressLatency times egressLatencySamples tunnels per target one at a time (no other
// load), from the dial to the first echoed byte, interleaving the targets; the added latency of
// a proxy is its percentile minus the direct connection's.
func BenchmarkEgressLatency(b *testing.B) {
	env := egressBenchEnv(b)
	targets := env.targets()
	dst := env.echo.addr()
	resultsMu.Lock()
	done := len(egressLat) > 0
	resultsMu.Unlock()
	if !done {
		samples := map[string][]time.Duration{}
		msg, echo := make([]byte, egressMsgSize), make([]byte, egressMsgSize)
		for i := range egressLatencySamples + 200 { // the first 200 rounds warm up
			for j := range targets {
				t := targets[(i+j)%len(targets)]
				setMsg(msg, j, i)
				lat, err := echoTunnel(t, dst, msg, echo)
				if err != nil {
					b.Fatalf("%s: %v", t.name, err)
				}
				if i >= 200 {
					samples[t.name] = append(samples[t.name], lat)
				}
			}
		}
		resultsMu.Lock()
		for name, s := range samples {
			egressLat[name] = Summarize(s)
		}
		resultsMu.Unlock()
	}
	resultsMu.Lock()
	defer resultsMu.Unlock()
	b.ReportMetric(0, "ns/op")
	d := egressLat["direct"]
	for _, t := range targets {
		l := egressLat[t.name]
		b.ReportMetric(float64(l.P50.Microseconds()), t.name+"-p50-µs")
		b.ReportMetric(float64(l.P99.Microseconds()), t.name+"-p99-µs")
		if t.proxy != "" {
			b.ReportMetric(float64((l.P99 - d.P99).Microseconds()), t.name+"-added-p99-µs")
		}
	}
}

// BenchmarkEgressBulk moves egressBulkBytes through one connection per transfer, up (client to
// origin, the direction Rampart counts against exfiltration budgets) and down, egressBulkRounds
// times per target in rotating order, and reports the median MB/s (10^6 bytes per second) of
// each target and each proxy's percentage of the direct connection's.
func BenchmarkEgressBulk(b *testing.B) {
	env := egressBenchEnv(b)
	targets := env.targets()
	n := egressBulkBytes()
	buf := make([]byte, bulkChunk)
	for _, dir := range []string{"up", "down"} {
		b.Run(dir, func(b *testing.B) {
			resultsMu.Lock()
			done := len(egressBulk[dir+"/rampart"]) > 0 || egressBulkErr[dir] != nil
			resultsMu.Unlock()
			for round := 0; !done && round < egressBulkRounds; round++ {
				for j := range targets {
					t := targets[(round+j)%len(targets)]
					cpu0, _ := cpuTime(t.pids)
					d, err := bulkTransfer(t, env.bulk.addr(), dir == "up", n, buf)
					cpu1, _ := cpuTime(t.pids)
					resultsMu.Lock()
					if err != nil && egressBulkErr[dir] == nil {
						egressBulkErr[dir] = err
					}
					if err == nil {
						egressBulk[dir+"/"+t.name] = append(egressBulk[dir+"/"+t.name], float64(n)/1e6/d.Seconds())
						egressCPU[dir+"/"+t.name] = append(egressCPU[dir+"/"+t.name], cpu1-cpu0)
					}
					resultsMu.Unlock()
				}
			}
			resultsMu.Lock()
			defer resultsMu.Unlock()
			if err := egressBulkErr[dir]; err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(0, "ns/op")
			direct := median(egressBulk[dir+"/direct"])
			for _, t := range targets {
				m := median(egressBulk[dir+"/"+t.name])
				b.ReportMetric(m, t.name+"-MB/s")
				if t.proxy != "" {
					b.ReportMetric(100*m/direct, t.name+"-%direct")
				}
			}
		})
	}
}

// median returns the median of xs (0 for none).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// countLines counts the lines of a file (-1 if it cannot be read).
func countLines(path string) int {
	f, err := os.Open(path)
	if err != nil {
		return -1
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	n := 0
	for {
		m, err := f.Read(buf)
		n += bytes.Count(buf[:m], []byte{'\n'})
		if err != nil {
			return n
		}
	}
}

// egressNames are the targets in the order the summary prints them.
var egressNames = []string{"direct", "relay", "rampart", "smokescreen"}

// printEgressSummary prints the egress comparison, if it ran. The caller holds resultsMu.
func printEgressSummary() {
	if len(egressResults) == 0 && len(egressLat) == 0 && len(egressBulk) == 0 {
		return
	}
	fmt.Println("\n=== Rampart vs smokescreen v0.1.0: egress (CONNECT tunnels to 127.0.0.1) ===")
	if egressE != nil {
		for _, s := range egressE.setup {
			fmt.Println("egress setup:", s)
		}
	}
	for _, clients := range egressClients {
		res := map[string]*loadResult{}
		for _, name := range egressNames {
			res[name] = egressResults[fmt.Sprintf("clients=%d/%s", clients, name)]
		}
		r, s, relay := res["rampart"], res["smokescreen"], res["relay"]
		if r == nil || s == nil {
			continue
		}
		for _, name := range egressNames {
			if x := res[name]; x != nil {
				fmt.Printf("egress %-26s %7.0f tunnels/s  p50 %-9s p99 %-9s cpu %5.1fµs/tunnel  windows %s  (%d tunnels, %d failed, %d wrong)\n",
					fmt.Sprintf("%d workers, %s:", clients, name), x.rps(), x.lat.P50.Round(time.Microsecond), x.lat.P99.Round(time.Microsecond),
					us(x.cpuPerRequest()), windows(x.windowRPS), x.ok+x.failed+x.wrong, x.failed, x.wrong)
			}
		}
		ratio := r.rps() / s.rps()
		fmt.Printf("egress %d workers: Rampart/smokescreen tunnels/s = %.2fx (target >= 1.5x: %s); smokescreen/Rampart CPU per tunnel = %.2fx",
			clients, ratio, verdict(ratio >= 1.5), float64(s.cpuPerRequest())/float64(r.cpuPerRequest()))
		if relay != nil {
			fmt.Printf("; the bare relay reaches %.2fx smokescreen's tunnels/s, Rampart %.0f%% of the relay's", relay.rps()/s.rps(), 100*r.rps()/relay.rps())
		}
		fmt.Println()
		// In smokescreen's windows this process ran only the load generator and the origin; its
		// cost per tunnel, taken from them, estimates the in-process proxies' own.
		gen := s.perRequest(s.cpuSelf)
		rg, sg := r.perRequest(r.cpuSelf)-gen, s.perRequest(s.cpu-s.cpuSelf)
		fmt.Printf("egress %d workers: proxy CPU per tunnel: Rampart ~%.1fµs, smokescreen %.1fµs: smokescreen/Rampart ~%.2fx",
			clients, us(rg), us(sg), float64(sg)/float64(rg))
		if relay != nil {
			fmt.Printf("; bare relay ~%.1fµs", us(relay.perRequest(relay.cpuSelf)-gen))
		}
		fmt.Printf(" (estimates for the in-process ones: their process minus the load generator and origin's %.1fµs)\n", us(gen))
	}
	if d, ok := egressLat["direct"]; ok {
		fmt.Printf("egress latency, one tunnel at a time, dial to first echoed byte (%d tunnels each, interleaved):\n", d.N)
		for _, name := range egressNames {
			l := egressLat[name]
			added := ""
			if name != "direct" {
				added = fmt.Sprintf("  added: p50 +%s, p99 +%s", (l.P50 - d.P50).Round(time.Microsecond), (l.P99 - d.P99).Round(time.Microsecond))
			}
			if name == "rampart" {
				added += fmt.Sprintf(" (target added p99 < 1ms: %s)", verdict(l.P99-d.P99 < time.Millisecond))
			}
			fmt.Printf("egress latency %-12s p50 %-9s p99 %-9s max %-9s%s\n", name+":",
				l.P50.Round(time.Microsecond), l.P99.Round(time.Microsecond), l.Max.Round(time.Microsecond), added)
		}
	}
	for _, dir := range []string{"up", "down"} {
		if err := egressBulkErr[dir]; err != nil {
			fmt.Printf("egress bulk %s: FAILED: %v\n", dir, err)
			continue
		}
		direct := median(egressBulk[dir+"/direct"])
		if direct == 0 {
			continue
		}
		fmt.Printf("egress bulk %s, %d MiB through one connection (median of %d; MB = 10^6 bytes):\n", dir, egressBulkBytes()>>20, egressBulkRounds)
		for _, name := range egressNames {
			xs := egressBulk[dir+"/"+name]
			m := median(xs)
			var cpu time.Duration
			if c := slices.Sorted(slices.Values(egressCPU[dir+"/"+name])); len(c) > 0 {
				cpu = c[len(c)/2]
			}
			rel := ""
			if name != "direct" {
				rel = fmt.Sprintf(" = %3.0f%% of direct", 100*m/direct)
			}
			if name == "rampart" {
				rel += fmt.Sprintf(" (target >= 80%%: %s)", verdict(m >= 0.8*direct))
			}
			rounds := make([]string, len(xs))
			for i, x := range xs {
				rounds[i] = strconv.FormatFloat(x, 'f', 0, 64)
			}
			fmt.Printf("egress bulk %-4s %-12s %5.0f MB/s  cpu %.2fs per transfer  rounds [%s]%s\n", dir, name+":", m, cpu.Seconds(), strings.Join(rounds, " "), rel)
		}
	}
	if egressE != nil {
		_ = egressE.rampartLog.Sync()
		for _, p := range []struct {
			name, path string
		}{{"rampart", egressE.rampartLog.Name()}, {"smokescreen", egressE.smokeLog}} {
			n, t := countLines(p.path), egressE.opened[p.name].Load()
			fmt.Printf("egress decision log %-12s %d lines for %d tunnels (%.2f per tunnel)\n", p.name+":", n, t, float64(n)/float64(max(t, 1)))
		}
	}
}
