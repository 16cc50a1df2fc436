package main_test

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// The standalone egress gateway end to end: a `rampart server` and a `rampart egress` on one
// store (egressStack), origins behind a test CA and a DNS name, and the identity re-checks of
// open connections in the gateway process (issue 12, item 2). The real clients are in
// e2e_egress_clients_test.go.

// lockedBuffer collects a process's output while it runs.
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

// testCA is a throwaway certificate authority; ca.pem is written to dir for the clients.
type testCA struct {
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	pem    string // path of the CA certificate
	serial int64
}

func newTestCA(t *testing.T, dir string) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rampart e2e test CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{cert: cert, key: key, pem: filepath.Join(dir, "ca.pem"), serial: 100}
	writePEMFile(t, ca.pem, "CERTIFICATE", der)
	return ca
}

func writePEMFile(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// issue makes a leaf certificate: a server's for names, or a client's with a SPIFFE ID.
func (ca *testCA) issue(t *testing.T, server bool, spiffe string, names ...string) (tls.Certificate, int64) {
	t.Helper()
	ca.serial++
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(ca.serial), Subject: pkix.Name{CommonName: "leaf"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.DNSNames = names
	}
	if spiffe != "" {
		u, err := neturl.Parse(spiffe)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = []*neturl.URL{u}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, ca.serial
}

// writeCRL publishes a revocation list with the given serials.
func (ca *testCA) writeCRL(t *testing.T, path string, serials ...int64) {
	t.Helper()
	var entries []x509.RevocationListEntry
	for _, s := range serials {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: big.NewInt(s), RevocationTime: time.Now()})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(time.Now().UnixNano()), ThisUpdate: time.Now().Add(-time.Minute),
		NextUpdate: time.Now().Add(24 * time.Hour), RevokedCertificateEntries: entries}, ca.cert, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	writePEMFile(t, path, "X509 CRL", der)
}

// namesDNS answers A queries for the names it holds (and nothing else): the gateway's resolver.
func namesDNS(t *testing.T, names map[string]string) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		for _, q := range req.Question {
			if ip, ok := names[strings.TrimSuffix(q.Name, ".")]; ok && q.Qtype == dns.TypeA {
				rr, _ := dns.NewRR(q.Name + " 0 IN A " + ip)
				m.Answer = append(m.Answer, rr)
			}
		}
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String()
}

// egressStack is `rampart server` and a separate `rampart egress` on one SQLite store.
type egressStack struct {
	dir, api, gw, srvCfg, dlog string
	gwLogs                     *lockedBuffer
	gwCmd                      *exec.Cmd
	cli                        *cli
}

// startEgressStack writes the demo policy plus extraPolicy and starts both processes; gwExtra is
// appended to the gateway's configuration.
func startEgressStack(t *testing.T, extraPolicy, gwExtra string) *egressStack {
	t.Helper()
	s := &egressStack{dir: t.TempDir()}
	pdir := filepath.Join(s.dir, "policy")
	if err := os.MkdirAll(pdir, 0o700); err != nil {
		t.Fatal(err)
	}
	demoFiles, _ := filepath.Glob("../../internal/demo/policy/*.yaml")
	for _, f := range demoFiles {
		b, _ := os.ReadFile(f)
		_ = os.WriteFile(filepath.Join(pdir, filepath.Base(f)), b, 0o600)
	}
	_ = os.WriteFile(filepath.Join(pdir, "egress-e2e.yaml"), []byte(extraPolicy), 0o600)
	db := filepath.Join(s.dir, "rampart.db")
	s.api, s.gw = freeAddr(t), freeAddr(t)
	s.srvCfg = filepath.Join(s.dir, "server.yaml")
	_ = os.WriteFile(s.srvCfg, []byte(fmt.Sprintf("listen: %s\ndata_dir: %s\npolicy_dir: %s\nstore: {driver: sqlite, path: %s}\noidc: {dev_provider: true}\n",
		s.api, filepath.Join(s.dir, "data"), pdir, db)), 0o600)
	s.dlog = filepath.Join(s.dir, "decisions.jsonl")
	gwCfg := filepath.Join(s.dir, "egress.yaml")
	_ = os.WriteFile(gwCfg, []byte(fmt.Sprintf("listen: %s\npolicy_dir: %s\nstore: {driver: sqlite, path: %s}\ndecision_log: %s\n%s",
		s.gw, pdir, db, s.dlog, gwExtra)), 0o600)
	startServer(t, s.api, "server", "--config", s.srvCfg)

	cmd := exec.Command(binary, "egress", "--config", gwCfg, "--allow-range", "127.0.0.1/32")
	s.gwLogs = &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = s.gwLogs, s.gwLogs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.gwCmd = cmd
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
			t.Logf("rampart egress output:\n%s", s.gwLogs.String())
		}
	})
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		select {
		case <-done:
			t.Fatalf("rampart egress exited early:\n%s", s.gwLogs.String())
		default:
		}
		if resp, err := http.Get("http://" + s.gw + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("rampart egress not ready:\n%s", s.gwLogs.String())
		}
	}
	s.cli = &cli{t: t, addr: s.api, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir()}}
	return s
}

// clientEnv is the environment for a client process: no proxy settings inherited from the
// machine (NO_PROXY would send loopback around the gateway), plus extra.
func clientEnv(home string, extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToLower(k) {
		case "http_proxy", "https_proxy", "all_proxy", "no_proxy", "home", "requests_ca_bundle", "curl_ca_bundle", "ssl_cert_file":
			continue
		}
		if strings.HasPrefix(k, "GIT_") || strings.HasPrefix(k, "PIP_") {
			continue
		}
		env = append(env, kv)
	}
	return append(append(env, "HOME="+home, "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0"), extra...)
}

// run runs a client and returns its standard output, standard error and exit code.
func runClient(t *testing.T, env []string, dir string, name string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env, cmd.Dir = env, dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return stdout.String(), stderr.String(), code
}

// streamThrough sends GET /stream through conn (a connection to the gateway) and returns a
// function that reports whether the stream is still flowing: it reads the next line, and
// returns false once the gateway has cut the connection.
func streamThrough(t *testing.T, conn net.Conn, origin, auth string) func() bool {
	t.Helper()
	head := "GET http://" + origin + "/stream HTTP/1.1\r\nHost: " + origin + "\r\n"
	if auth != "" {
		head += "Proxy-Authorization: " + auth + "\r\n"
	}
	if _, err := io.WriteString(conn, head+"\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("stream through the gateway: %v %v", resp, err)
	}
	body := bufio.NewReader(resp.Body)
	return func() bool {
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := body.ReadString('\n')
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("the stream stalled without being cut")
		}
		return err == nil
	}
}

// cutWithin requires flowing to report the cut before the limit (a failure limit for a busy
// machine: the gateway process re-verifies credentials every revalidation, 100 ms, through a
// one-second cache).
func cutWithin(t *testing.T, what string, limit time.Duration, flowing func() bool) {
	t.Helper()
	for deadline := time.Now().Add(limit); flowing(); {
		if time.Now().After(deadline) {
			t.Fatalf("%s: the stream still flows %s later", what, limit)
		}
	}
}

// Issue 12, item 2, in the standalone `rampart egress` process: forwarded requests and tunnels
// are cut when the credential that opened them stops holding, for every form of credential — a
// session token as a Basic password, a session token as a bearer, a client certificate on the
// mTLS listener.
func TestEgressProcessRevalidatesEveryCredential(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stream := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		for i := 0; i < 1200; i++ { // up to a minute
			if _, err := fmt.Fprintf(w, "chunk %d\n", i); err != nil || rc.Flush() != nil {
				return
			}
			select {
			case <-r.Context().Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	})}
	go func() { _ = stream.Serve(ln) }()
	defer stream.Close()
	origin := ln.Addr().String()
	port := ln.Addr().(*net.TCPAddr).Port

	dir := t.TempDir()
	ca := newTestCA(t, dir)
	gwCert, _ := ca.issue(t, true, "")
	keyDER, _ := x509.MarshalPKCS8PrivateKey(gwCert.PrivateKey)
	writePEMFile(t, filepath.Join(dir, "gw.pem"), "CERTIFICATE", gwCert.Certificate[0])
	writePEMFile(t, filepath.Join(dir, "gw.key"), "PRIVATE KEY", keyDER)
	crl := filepath.Join(dir, "ca.crl")
	ca.writeCRL(t, crl)
	tlsAddr := freeAddr(t)
	st := startEgressStack(t, fmt.Sprintf(`apiVersion: rampart.dev/v1alpha1
kind: EgressPolicy
metadata: {name: stream}
spec:
  subjects: [group:researchers, group:weights-owners, "k8s:prod/ml/trainer"]
  allow: [{host: 127.0.0.1, ports: [%d]}]
`, port), fmt.Sprintf("cluster: prod\ntls: {listen: %s, cert_file: %s, key_file: %s, client_ca_file: %s, crl_file: %s}\n",
		tlsAddr, filepath.Join(dir, "gw.pem"), filepath.Join(dir, "gw.key"), ca.pem, crl))
	erin := strings.TrimSpace(st.cli.ok("admin", "token", "--config", st.srvCfg, "--subject", "erin", "--ttl", "1h"))
	dialGW := func() net.Conn {
		c, err := net.Dial("tcp", st.gw)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}

	t.Run("Basic: session revoked", func(t *testing.T) {
		alice := signInAs(t, st.api, "alice")
		flowing := streamThrough(t, dialGW(), origin, "Basic "+base64.StdEncoding.EncodeToString([]byte("alice:"+alice)))
		if !flowing() {
			t.Fatal("no stream")
		}
		var who map[string]any
		if err := json.Unmarshal([]byte(st.cli.as(alice, "whoami", "-o", "json").out), &who); err != nil {
			t.Fatal(err)
		}
		if r := st.cli.as(erin, "session", "revoke", who["session_id"].(string), "--reason", "laptop stolen"); r.code != 0 {
			t.Fatalf("revoke the session: %+v", r)
		}
		cutWithin(t, "alice's revoked session", 5*time.Second, flowing)
	})
	t.Run("Bearer: person disabled", func(t *testing.T) {
		carol := signInAs(t, st.api, "carol")
		flowing := streamThrough(t, dialGW(), origin, "Bearer "+carol)
		if !flowing() {
			t.Fatal("no stream")
		}
		if r := st.cli.as(erin, "user", "disable", "carol", "--reason", "left"); r.code != 0 {
			t.Fatalf("disable carol: %+v", r)
		}
		cutWithin(t, "disabled carol", 5*time.Second, flowing)
	})
	t.Run("client certificate revoked (CRL reloaded on SIGHUP)", func(t *testing.T) {
		cert, serial := ca.issue(t, false, "spiffe://prod/ns/ml/sa/trainer")
		roots := x509.NewCertPool()
		roots.AddCert(ca.cert)
		dialTLS := func() net.Conn {
			c, err := tls.Dial("tcp", tlsAddr, &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			return c
		}
		flowing := streamThrough(t, dialTLS(), origin, "")
		if !flowing() {
			t.Fatal("no stream over mTLS")
		}
		// A tunnel on the same certificate, streaming through CONNECT.
		tun := dialTLS()
		fmt.Fprintf(tun, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", origin, origin)
		br := bufio.NewReader(tun)
		resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("mTLS CONNECT: %v %v", resp, err)
		}
		fmt.Fprintf(tun, "GET /stream HTTP/1.1\r\nHost: %s\r\n\r\n", origin)
		if resp, err = http.ReadResponse(br, nil); err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET through the mTLS tunnel: %v %v", resp, err)
		}
		tunBody := bufio.NewReader(resp.Body)
		tunFlowing := func() bool {
			_ = tun.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err := tunBody.ReadString('\n')
			return err == nil
		}
		ca.writeCRL(t, crl, serial)
		if err := st.gwCmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		cutWithin(t, "the revoked certificate's request", 5*time.Second, flowing)
		cutWithin(t, "the revoked certificate's tunnel", 5*time.Second, tunFlowing)
	})
	// The gateway writes its decision lines behind the connections: wait for the closes'.
	for _, want := range []string{`"connection":"request"`, `"connection":"tunnel"`, "no longer holds", "carol is disabled", "was revoked"} {
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if b, _ := os.ReadFile(st.dlog); strings.Contains(string(b), want) {
				break
			}
			if time.Now().After(deadline) {
				b, _ := os.ReadFile(st.dlog)
				t.Fatalf("the decision log lacks %q:\n%s", want, b)
			}
		}
	}
}
