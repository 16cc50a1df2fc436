package egress_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/egress"
	"rampart.dev/rampart/policy"
)

// pki is a throwaway CA with server and client certificates.
type pki struct {
	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
	dir    string
}

func newPKI(t *testing.T, name string) *pki {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &pki{caCert: cert, caKey: key, dir: t.TempDir()}
}

func (p *pki) issue(t *testing.T, serial int64, cn string, uri string, server bool) tls.Certificate {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	if uri != "" {
		u, _ := url.Parse(uri)
		tmpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestMTLSIdentity(t *testing.T) {
	echo := newEcho(t)
	ca := newPKI(t, "workload-ca")
	srvCert := ca.issue(t, 10, "gateway", "", true)
	keyDER, _ := x509.MarshalPKCS8PrivateKey(srvCert.PrivateKey)
	writePEM(t, filepath.Join(ca.dir, "ca.pem"), "CERTIFICATE", ca.caCert.Raw)
	writePEM(t, filepath.Join(ca.dir, "gw.pem"), "CERTIFICATE", srvCert.Certificate[0])
	writePEM(t, filepath.Join(ca.dir, "gw.key"), "PRIVATE KEY", keyDER)
	// Serial 21 is revoked.
	crlDER, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: time.Now().Add(time.Hour),
		RevokedCertificateEntries: []x509.RevocationListEntry{{SerialNumber: big.NewInt(21), RevocationTime: time.Now()}}}, ca.caCert, ca.caKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(ca.dir, "ca.crl"), "X509 CRL", crlDER)
	tcfg, cas, err := egress.ServerTLS(egress.TLSFiles{CertFile: filepath.Join(ca.dir, "gw.pem"), KeyFile: filepath.Join(ca.dir, "gw.key"), ClientCAFile: filepath.Join(ca.dir, "ca.pem")})
	if err != nil {
		t.Fatal(err)
	}
	revs := &egress.Revocations{}
	if err := revs.Load(filepath.Join(ca.dir, "ca.crl"), cas, time.Now()); err != nil {
		t.Fatal(err)
	}
	pol := parsePolicy(t, "", egressPolicy("trainer", "k8s:prod/ml/trainer", "enforce", []string{"127.0.0.1"}, echo.port(), ""))
	r := newRig(t, pol, rigOptions{allow: []string{"127.0.0.1/32"}, tls: tcfg, revoked: revs.Revoked})
	roots := x509.NewCertPool()
	roots.AddCert(ca.caCert)
	dial := func(cert tls.Certificate) (net.Conn, error) {
		c, err := tls.Dial("tcp", r.addr, &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}})
		if err != nil {
			return nil, err
		}
		return c, c.Handshake()
	}
	target := "127.0.0.1:" + strconv.Itoa(echo.port())

	good := ca.issue(t, 20, "trainer", "spiffe://prod/ns/ml/sa/trainer", false)
	c, err := dial(good)
	if err != nil {
		t.Fatal(err)
	}
	status, body, tun := connectOn(t, c, target, "")
	if status != 200 {
		t.Fatalf("good certificate: %d %q", status, body)
	}
	roundTrip(t, tun, "mtls")
	tun.Close()

	revoked := ca.issue(t, 21, "trainer", "spiffe://prod/ns/ml/sa/trainer", false)
	c, err = dial(revoked)
	if err != nil {
		t.Fatal(err)
	}
	if status, body, _ := connectOn(t, c, target, ""); status != 403 || !strings.Contains(body, "revoked") {
		t.Fatalf("revoked certificate: %d %q", status, body)
	}

	other := newPKI(t, "someone-else")
	wrong := other.issue(t, 30, "trainer", "spiffe://prod/ns/ml/sa/trainer", false)
	if c, err := dial(wrong); err == nil {
		// TLS 1.3 may report the client certificate refusal on the first read.
		status, _, _ := connectOn(t, c, target, "")
		if status == 200 {
			t.Fatal("a certificate from another CA opened a tunnel")
		}
	}
	// Another workload's certificate has no policy.
	nosy := ca.issue(t, 22, "nosy", "spiffe://prod/ns/ml/sa/nosy", false)
	c, _ = dial(nosy)
	if status, _, _ := connectOn(t, c, target, ""); status != 403 {
		t.Fatalf("unlisted workload: %d", status)
	}
}

// mtlsRig is a gateway whose listener requires client certificates from ca, with a CRL it
// reloads on demand.
type mtlsRig struct {
	*rig
	ca   *pki
	revs *egress.Revocations
	cas  []*x509.Certificate
}

func newMTLSRig(t *testing.T, pol *policy.Policy) *mtlsRig {
	t.Helper()
	ca := newPKI(t, "workload-ca")
	srvCert := ca.issue(t, 10, "gateway", "", true)
	keyDER, _ := x509.MarshalPKCS8PrivateKey(srvCert.PrivateKey)
	writePEM(t, filepath.Join(ca.dir, "ca.pem"), "CERTIFICATE", ca.caCert.Raw)
	writePEM(t, filepath.Join(ca.dir, "gw.pem"), "CERTIFICATE", srvCert.Certificate[0])
	writePEM(t, filepath.Join(ca.dir, "gw.key"), "PRIVATE KEY", keyDER)
	tcfg, cas, err := egress.ServerTLS(egress.TLSFiles{CertFile: filepath.Join(ca.dir, "gw.pem"), KeyFile: filepath.Join(ca.dir, "gw.key"), ClientCAFile: filepath.Join(ca.dir, "ca.pem")})
	if err != nil {
		t.Fatal(err)
	}
	m := &mtlsRig{ca: ca, revs: &egress.Revocations{}, cas: cas}
	m.revoke(t) // an empty list
	m.rig = newRig(t, pol, rigOptions{allow: []string{"127.0.0.1/32"}, tls: tcfg, revoked: m.revs.Revoked})
	return m
}

// revoke publishes a CRL with the given serials and reloads it, as SIGHUP does.
func (m *mtlsRig) revoke(t *testing.T, serials ...int64) {
	t.Helper()
	var entries []x509.RevocationListEntry
	for _, s := range serials {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: big.NewInt(s), RevocationTime: time.Now()})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(time.Now().UnixNano()), ThisUpdate: time.Now().Add(-time.Minute),
		NextUpdate: time.Now().Add(time.Hour), RevokedCertificateEntries: entries}, m.ca.caCert, m.ca.caKey)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(m.ca.dir, "ca.crl")
	writePEM(t, path, "X509 CRL", der)
	if err := m.revs.Load(path, m.cas, time.Now()); err != nil {
		t.Fatal(err)
	}
}

// dial opens a TLS connection to the gateway with a client certificate.
func (m *mtlsRig) dial(t *testing.T, cert tls.Certificate) net.Conn {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(m.ca.caCert)
	c, err := tls.Dial("tcp", m.addr, &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
