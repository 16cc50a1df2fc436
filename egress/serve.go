package egress

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync/atomic"
	"time"
)

// TLSFiles name the mTLS listener's files.
type TLSFiles struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ClientCAFile holds the CA certificates client certificates must chain to.
	ClientCAFile string `yaml:"client_ca_file"`
	// CRLFile, if set, is a DER or PEM certificate revocation list signed by that CA.
	CRLFile string `yaml:"crl_file"`
}

// Revocations is a revocation list that can be reloaded.
type Revocations struct {
	serials atomic.Pointer[map[string]bool]
}

// Revoked reports whether cert is on the list.
func (r *Revocations) Revoked(cert *x509.Certificate) bool {
	m := r.serials.Load()
	return m != nil && (*m)[cert.SerialNumber.String()]
}

// Load reads a CRL, checks it is signed by one of the CA certificates and is current, and
// replaces the list.
func (r *Revocations) Load(path string, cas []*x509.Certificate, now time.Time) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read CRL: %w", err)
	}
	if b := pemBlock(data, "X509 CRL"); b != nil {
		data = b
	}
	crl, err := x509.ParseRevocationList(data)
	if err != nil {
		return fmt.Errorf("CRL %s: %w", path, err)
	}
	var sigErr error = errors.New("no CA certificate to check it against")
	for _, ca := range cas {
		if sigErr = crl.CheckSignatureFrom(ca); sigErr == nil {
			break
		}
	}
	if sigErr != nil {
		return fmt.Errorf("CRL %s is not signed by the client CA: %w", path, sigErr)
	}
	if !crl.NextUpdate.IsZero() && now.After(crl.NextUpdate) {
		return fmt.Errorf("CRL %s expired at %s (next update); issue a fresh one", path, crl.NextUpdate.UTC().Format(time.RFC3339))
	}
	m := map[string]bool{}
	for _, e := range crl.RevokedCertificateEntries {
		m[e.SerialNumber.String()] = true
	}
	r.serials.Store(&m)
	return nil
}

// ServerTLS builds the mTLS listener configuration: client certificates are required and must
// chain to the client CA; revocation is checked by the gateway per request.
func ServerTLS(f TLSFiles) (*tls.Config, []*x509.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("gateway certificate: %w", err)
	}
	caPEM, err := os.ReadFile(f.ClientCAFile)
	if err != nil {
		return nil, nil, fmt.Errorf("client CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, nil, fmt.Errorf("client CA %s holds no PEM certificate", f.ClientCAFile)
	}
	var cas []*x509.Certificate
	rest := caPEM
	for {
		der, next := nextPEM(rest, "CERTIFICATE")
		if der == nil {
			break
		}
		if c, err := x509.ParseCertificate(der); err == nil {
			cas = append(cas, c)
		}
		rest = next
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}, cas, nil
}

// HTTPServer wraps the gateway in an http.Server that cuts off slow and oversized request heads
// (slowloris) and answers /healthz and /metrics for requests that are not proxy requests.
func (g *Gateway) HTTPServer(local http.Handler) *http.Server {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if local != nil && r.Method != http.MethodConnect && !r.URL.IsAbs() {
			local.ServeHTTP(w, r)
			return
		}
		g.ServeHTTP(w, r)
	})
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    32 << 10,
		IdleTimeout:       2 * time.Minute,
	}
}

// ListenAndServe is Listen then Serve with srv.
func (g *Gateway) ListenAndServe(ctx context.Context, srv *http.Server, addr string) error {
	ln, err := g.Listen(ctx, addr)
	if err != nil {
		return err
	}
	return g.Serve(srv, ln)
}

// Listen opens a listener and tells the gateway its address, so it never dials itself.
func (g *Gateway) Listen(ctx context.Context, addr string) (net.Listener, error) {
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if ap, err := netip.ParseAddrPort(ln.Addr().String()); err == nil {
		g.AddListener(netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
	}
	return ln, nil
}

// OwnAddrs returns the machine's interface addresses.
func OwnAddrs() map[netip.Addr]bool {
	out := map[netip.Addr]bool{}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return out
	}
	for _, a := range addrs {
		if pn, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(pn.IP); ok {
				out[ip.Unmap()] = true
			}
		}
	}
	return out
}

// pemBlock returns the first PEM block of the given type in data, or nil.
func pemBlock(data []byte, typ string) []byte {
	der, _ := nextPEM(data, typ)
	return der
}

// nextPEM returns the next PEM block of the given type and what follows it.
func nextPEM(data []byte, typ string) ([]byte, []byte) {
	for {
		b, rest := pem.Decode(data)
		if b == nil {
			return nil, nil
		}
		if b.Type == typ {
			return b.Bytes, rest
		}
		data = rest
	}
}
