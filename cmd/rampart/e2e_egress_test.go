package main_test

import (
	"archive/zip"
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
	"net/http/cgi"
	"net/http/httptest"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"rampart.dev/rampart/internal/testenv"
)

// The egress gateway with the tools researchers use (issue 12, items 5-7): the real git, curl,
// pip, Python's requests and urllib (Debian's python3), and Go's http.ProxyFromEnvironment,
// through the real `rampart egress` process, against origins on loopback with a test CA the
// clients are told to trust. Hosts are named (origin.test), answered by a DNS server the
// gateway is configured to use, because Go's ProxyFromEnvironment never proxies loopback
// addresses.

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

// need finds a client program, or fails (under RAMPART_REQUIRE_INTEGRATION=1) or skips saying
// how to install it.
func need(t *testing.T, path, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(path)
	if err != nil {
		testenv.Missing(t, path, "apt-get install "+pkg+" (scripts/test.sh installs it)")
	}
	return p
}

// debianPython is Debian's python3 with the requests module (python3-requests).
func debianPython(t *testing.T) string {
	t.Helper()
	py := need(t, "/usr/bin/python3", "python3")
	if out, err := exec.Command(py, "-c", "import requests, pip").CombinedOutput(); err != nil {
		testenv.Missing(t, "Debian's python3-requests and python3-pip", "apt-get install python3-requests python3-pip (scripts/test.sh installs them): "+string(out))
	}
	return py
}

// gitRepo makes a bare repository with one commit under root/repo.git.
func gitRepo(t *testing.T, gitBin, root, home string) {
	t.Helper()
	work := filepath.Join(root, "work")
	env := clientEnv(home, "GIT_AUTHOR_NAME=e2e", "GIT_AUTHOR_EMAIL=e2e@example.com", "GIT_COMMITTER_NAME=e2e", "GIT_COMMITTER_EMAIL=e2e@example.com")
	for _, args := range [][]string{{"init", "-q", "-b", "main", work}, {"-C", work, "commit", "-q", "--allow-empty", "-m", "start"}} {
		if _, errOut, code := runClient(t, env, root, gitBin, args...); code != 0 {
			t.Fatalf("git %v: %s", args, errOut)
		}
	}
	if err := os.WriteFile(filepath.Join(work, "model-card.md"), []byte("frontier-7: cloned through the gateway\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"-C", work, "add", "."}, {"-C", work, "commit", "-q", "-m", "card"}, {"clone", "-q", "--bare", work, filepath.Join(root, "repo.git")}} {
		if _, errOut, code := runClient(t, env, root, gitBin, args...); code != 0 {
			t.Fatalf("git %v: %s", args, errOut)
		}
	}
}

// probeWheel is a minimal wheel for pip to download.
func probeWheel(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	z := zip.NewWriter(&b)
	for name, content := range map[string]string{
		"rampartprobe/__init__.py":                 "",
		"rampartprobe-1.0.dist-info/METADATA":      "Metadata-Version: 2.1\nName: rampartprobe\nVersion: 1.0\n",
		"rampartprobe-1.0.dist-info/WHEEL":         "Wheel-Version: 1.0\nGenerator: rampart-e2e\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
		"rampartprobe-1.0.dist-info/RECORD":        "",
		"rampartprobe-1.0.dist-info/top_level.txt": "rampartprobe\n",
	} {
		w, _ := z.Create(name)
		_, _ = io.WriteString(w, content)
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

const goProxyClient = `package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
)

// Fetches each URL through http.ProxyFromEnvironment (HTTPS_PROXY, HTTP_PROXY), trusting the CA
// in the first argument.
func main() {
	pool := x509.NewCertPool()
	ca, _ := os.ReadFile(os.Args[1])
	pool.AppendCertsFromPEM(ca)
	c := &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, TLSClientConfig: &tls.Config{RootCAs: pool}}}
	for _, u := range os.Args[2:] {
		resp, err := c.Get(u)
		if err != nil {
			fmt.Println("error:", err)
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Printf("%d %s", resp.StatusCode, b)
	}
}
`

const pythonClients = `import os, sys, ssl, urllib.request, requests

ca, tls_url, plain_url, denied_url = sys.argv[1:5]
# requests: HTTPS_PROXY / HTTP_PROXY from the environment, Basic credentials from the proxy URL.
for u in (tls_url, plain_url):
    r = requests.get(u, verify=ca, timeout=30)
    print("requests", r.status_code, r.text.strip())
try:
    requests.get(denied_url, verify=ca, timeout=30)
    print("requests denied: no error")
except requests.exceptions.ProxyError as e:
    print("requests denied:", e)
# urllib: the default opener's ProxyHandler reads the same variables.
ctx = ssl.create_default_context(cafile=ca)
for u in (tls_url, plain_url):
    with urllib.request.urlopen(u, context=ctx, timeout=30) as r:
        print("urllib", r.status, r.read().decode().strip())
try:
    urllib.request.urlopen(denied_url, context=ctx, timeout=30)
    print("urllib denied: no error")
except OSError as e:
    print("urllib denied:", e)
`

// Issue 12, items 5-7, with the real tools.
func TestEgressWithRealClients(t *testing.T) {
	gitBin := need(t, "git", "git")
	curl := need(t, "curl", "curl")
	py := debianPython(t)
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	_ = os.MkdirAll(home, 0o700)
	ca := newTestCA(t, dir)

	// The origins: one TLS server (a Git server through git http-backend, a page, a package
	// index) and one plain HTTP server, both named origin.test.
	gitRoot := filepath.Join(dir, "git")
	_ = os.MkdirAll(gitRoot, 0o700)
	gitRepo(t, gitBin, gitRoot, home)
	execPath, _, _ := runClient(t, clientEnv(home), dir, gitBin, "--exec-path")
	wheel := probeWheel(t)
	mux := http.NewServeMux()
	mux.Handle("/git/", &cgi.Handler{Path: filepath.Join(strings.TrimSpace(execPath), "git-http-backend"), Root: "/git",
		Env: []string{"GIT_PROJECT_ROOT=" + gitRoot, "GIT_HTTP_EXPORT_ALL=1"}})
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello over TLS\n") })
	mux.HandleFunc("/simple/rampartprobe/", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `<!DOCTYPE html><html><body><a href="/files/rampartprobe-1.0-py3-none-any.whl">rampartprobe-1.0-py3-none-any.whl</a></body></html>`)
	})
	mux.HandleFunc("/files/rampartprobe-1.0-py3-none-any.whl", func(w http.ResponseWriter, r *http.Request) { w.Write(wheel) })
	tlsOrigin := httptest.NewUnstartedServer(mux)
	srvCert, _ := ca.issue(t, true, "", "origin.test")
	tlsOrigin.TLS = &tls.Config{Certificates: []tls.Certificate{srvCert}}
	tlsOrigin.StartTLS()
	defer tlsOrigin.Close()
	plainOrigin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello over HTTP\n") }))
	defer plainOrigin.Close()
	tlsPort, plainPort := tlsOrigin.Listener.Addr().(*net.TCPAddr).Port, plainOrigin.Listener.Addr().(*net.TCPAddr).Port
	resolver := namesDNS(t, map[string]string{"origin.test": "127.0.0.1"})
	tokenFile := filepath.Join(dir, "metrics-token")
	_ = os.WriteFile(tokenFile, []byte("e2e-metrics-token-0123456789\n"), 0o600)
	st := startEgressStack(t, fmt.Sprintf(`apiVersion: rampart.dev/v1alpha1
kind: EgressPolicy
metadata: {name: origins}
spec:
  subjects: [group:researchers]
  allow: [{host: origin.test, ports: [%d, %d]}]
`, tlsPort, plainPort), fmt.Sprintf("dns_server: %s\nmetrics_token_file: %s\n", resolver, tokenFile))
	alice := signInAs(t, st.api, "alice")
	proxy := "http://rampart:" + alice + "@" + st.gw
	tlsURL := fmt.Sprintf("https://origin.test:%d", tlsPort)
	plainURL := fmt.Sprintf("http://origin.test:%d", plainPort)
	linesBefore := strings.Count(st.gwLogs.String(), "\n")

	t.Run("curl", func(t *testing.T) {
		env := clientEnv(home)
		for _, u := range []string{tlsURL + "/hello", plainURL + "/hello"} {
			out, errOut, code := runClient(t, env, dir, curl, "-sS", "--fail", "-x", proxy, "--cacert", ca.pem, u)
			if code != 0 || !strings.HasPrefix(out, "hello over") {
				t.Errorf("curl -x http://rampart:TOKEN@gateway %s: exit %d %q %s", u, code, out, errOut)
			}
		}
	})
	t.Run("git clone over HTTPS through CONNECT", func(t *testing.T) {
		// git's default http.proxyAuthMethod is anyauth: it asks without credentials first and
		// answers the challenge; basic sends them at once.
		for i, method := range []string{"anyauth", "basic"} {
			dest := filepath.Join(dir, "clone-"+strconv.Itoa(i))
			_, errOut, code := runClient(t, clientEnv(home), dir, gitBin, "-c", "http.proxy="+proxy, "-c", "http.proxyAuthMethod="+method,
				"-c", "http.sslCAInfo="+ca.pem, "clone", "-q", tlsURL+"/git/repo.git", dest)
			if code != 0 {
				t.Fatalf("git clone (http.proxyAuthMethod=%s): exit %d\n%s", method, code, errOut)
			}
			if b, err := os.ReadFile(filepath.Join(dest, "model-card.md")); err != nil || !strings.Contains(string(b), "cloned through the gateway") {
				t.Fatalf("cloned file: %q %v", b, err)
			}
		}
	})
	t.Run("Python requests and urllib", func(t *testing.T) {
		env := clientEnv(home, "HTTPS_PROXY="+proxy, "HTTP_PROXY="+proxy)
		out, errOut, code := runClient(t, env, dir, py, "-c", pythonClients, ca.pem, tlsURL+"/hello", plainURL+"/hello", "https://api.openai.com/v1/models")
		for _, want := range []string{"requests 200 hello over TLS", "requests 200 hello over HTTP", "urllib 200 hello over TLS", "urllib 200 hello over HTTP",
			// What Python shows of a refused CONNECT: the reason phrase, with the next step.
			"403 Rampart egress: denied api.openai.com:443 for alice", "rampart request create --resource egress/api.openai.com:443 --action connect"} {
			if !strings.Contains(out, want) {
				t.Errorf("python lacks %q: exit %d\n%s%s", want, code, out, errOut)
			}
		}
		if strings.Count(out, "Rampart egress: denied api.openai.com:443") != 2 {
			t.Errorf("requests and urllib should both show the reason:\n%s", out)
		}
	})
	t.Run("pip", func(t *testing.T) {
		dest := filepath.Join(dir, "wheels")
		env := clientEnv(home, "PIP_CONFIG_FILE=/dev/null", "PIP_DISABLE_PIP_VERSION_CHECK=1", "PIP_NO_INPUT=1")
		_, errOut, code := runClient(t, env, dir, py, "-m", "pip", "download", "--no-deps", "--no-cache-dir", "--dest", dest, "--proxy", proxy,
			"--cert", ca.pem, "--index-url", tlsURL+"/simple/", "rampartprobe")
		if _, err := os.Stat(filepath.Join(dest, "rampartprobe-1.0-py3-none-any.whl")); code != 0 || err != nil {
			t.Fatalf("pip download through the gateway: exit %d %v\n%s", code, err, errOut)
		}
	})
	t.Run("Go ProxyFromEnvironment", func(t *testing.T) {
		src := filepath.Join(dir, "goclient")
		_ = os.MkdirAll(src, 0o700)
		_ = os.WriteFile(filepath.Join(src, "main.go"), []byte(goProxyClient), 0o600)
		env := append(os.Environ(), "HTTPS_PROXY="+proxy, "HTTP_PROXY="+proxy, "NO_PROXY=", "no_proxy=", "GOFLAGS=", "GO111MODULE=off")
		cmd := exec.Command("go", "run", "main.go", ca.pem, tlsURL+"/hello", plainURL+"/hello", "https://pastebin.com/")
		cmd.Dir, cmd.Env = src, env
		out, err := cmd.CombinedOutput()
		for _, want := range []string{"200 hello over TLS", "200 hello over HTTP", "Rampart egress: denied pastebin.com:443", "Nothing can be requested"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("Go client lacks %q: %v\n%s", want, err, out)
			}
		}
	})
	// Issue 12, item 6: what curl and git actually print for a refused CONNECT.
	t.Run("refusals curl and git show", func(t *testing.T) {
		env := clientEnv(home)
		_, errOut, code := runClient(t, env, dir, curl, "-sS", "-x", proxy, "https://api.openai.com/v1/models")
		if code != 56 || !strings.Contains(errOut, "CONNECT tunnel failed, response 403") {
			t.Errorf("curl without -v: exit %d %q", code, errOut)
		}
		_, errOut, _ = runClient(t, env, dir, curl, "-sS", "-v", "-x", proxy, "https://api.openai.com/v1/models")
		for _, want := range []string{
			"< HTTP/1.1 403 Rampart egress: denied api.openai.com:443 for alice",
			"< X-Rampart-Egress-Next: Request access: rampart request create --resource egress/api.openai.com:443 --action connect",
			"< X-Rampart-Egress-Reason: denied api.openai.com:443 for alice: no egress policy allows alice to api.openai.com:443, and alice has no active grant",
		} {
			if !strings.Contains(errOut, want) {
				t.Errorf("curl -v lacks %q:\n%s", want, errOut)
			}
		}
		_, errOut, _ = runClient(t, env, dir, curl, "-sS", "-v", "-x", proxy, "https://pastebin.com/")
		if !strings.Contains(errOut, "< X-Rampart-Egress-Next: Nothing can be requested to open it") || strings.Contains(errOut, "request create") {
			t.Errorf("curl -v for the deny list:\n%s", errOut)
		}
		// A plain http:// refusal: curl prints the body.
		out, _, _ := runClient(t, env, dir, curl, "-sS", "-x", proxy, "http://example.org/")
		if !strings.Contains(out, "rampart egress: denied example.org:80 for alice") || !strings.Contains(out, "not in the catalogue") {
			t.Errorf("curl http:// refusal body: %q", out)
		}
		_, errOut, code = runClient(t, env, dir, gitBin, "-c", "http.proxy="+proxy, "clone", "-q", "https://api.openai.com/x.git", filepath.Join(dir, "refused"))
		if code == 0 || !strings.Contains(errOut, "CONNECT tunnel failed, response 403") {
			t.Errorf("git clone of a refused host: exit %d %q", code, errOut)
		}
		_, errOut, _ = runClient(t, clientEnv(home, "GIT_CURL_VERBOSE=1"), dir, gitBin, "-c", "http.proxy="+proxy, "clone", "-q", "https://api.openai.com/x.git", filepath.Join(dir, "refused2"))
		if !strings.Contains(errOut, "X-Rampart-Egress-Next: Request access: rampart request create --resource egress/api.openai.com:443") {
			t.Errorf("GIT_CURL_VERBOSE=1 does not show the next step:\n%s", errOut)
		}
	})
	// Issue 12, item 7: the gateway process writes nothing per tunnel besides its decision
	// lines (which go to decision_log here), and /metrics wants its token.
	t.Run("one line per decision, metrics token", func(t *testing.T) {
		if n := strings.Count(st.gwLogs.String(), "\n"); n != linesBefore {
			t.Errorf("the gateway process wrote %d lines for the connections above besides its decision log:\n%s", n-linesBefore, st.gwLogs.String())
		}
		b, _ := os.ReadFile(st.dlog)
		if !strings.Contains(string(b), `"egress.closed"`) {
			t.Errorf("no closed decision line:\n%s", b)
		}
		get := func(auth string) (int, string) {
			req, _ := http.NewRequest("GET", "http://"+st.gw+"/metrics", nil)
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(body)
		}
		if status, _ := get(""); status != 401 {
			t.Errorf("/metrics without the token: %d", status)
		}
		if status, _ := get("Bearer wrong-token-0123456789"); status != 401 {
			t.Errorf("/metrics with a wrong token: %d", status)
		}
		if status, body := get("Bearer e2e-metrics-token-0123456789"); status != 200 || !strings.Contains(body, "rampart_egress_decisions_total") {
			t.Errorf("/metrics with the token: %d", status)
		}
	})
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
