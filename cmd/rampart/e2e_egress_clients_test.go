package main_test

import (
	"archive/zip"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"rampart.dev/rampart/internal/testenv"
)

// The egress gateway with the tools researchers use (issue 12, items 5-7): the real git, curl,
// pip, Python's requests and urllib (Debian's python3), and Go's http.ProxyFromEnvironment,
// through the real `rampart egress` process, against origins on loopback with a test CA the
// clients are told to trust. Hosts are named (origin.test), answered by a DNS server the
// gateway is configured to use, because Go's ProxyFromEnvironment never proxies loopback
// addresses.

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
