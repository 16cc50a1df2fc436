package egress

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/textproto"
	"strings"
	"sync"
)

// maxRecorded bounds the request-head bytes kept per connection.
const maxRecorded = 64 << 10

// headConn records the bytes read from a client connection so that the gateway can see the
// request head as sent. Go's HTTP server drops the Host header of absolute-URI requests, and the
// gateway must refuse requests whose Host header names another host than the URL.
type headConn struct {
	net.Conn
	mu        sync.Mutex
	buf       []byte
	overflow  bool
	recording bool
}

func (c *headConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.mu.Lock()
		if c.recording {
			if len(c.buf)+n > maxRecorded {
				c.overflow = true
			} else {
				c.buf = append(c.buf, p[:n]...)
			}
		}
		c.mu.Unlock()
	}
	return n, err
}

// CloseWrite half-closes the underlying connection when it can.
func (c *headConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// take returns what was read since the last take, and starts afresh.
func (c *headConn) take() ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.buf, !c.overflow
	c.buf, c.overflow = nil, false
	return b, ok
}

// stopRecording is called once a connection becomes a tunnel.
func (c *headConn) stopRecording() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.recording, c.buf = false, nil
}

type connKey struct{}

type recordingListener struct{ net.Listener }

func (l recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &headConn{Conn: c, recording: true}, nil
}

// Serve serves the gateway on ln with srv (from HTTPServer), recording request heads.
func (g *Gateway) Serve(srv *http.Server, ln net.Listener) error {
	srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		return context.WithValue(ctx, connKey{}, c)
	}
	return srv.Serve(recordingListener{ln})
}

func connOf(r *http.Request) *headConn {
	hc, _ := r.Context().Value(connKey{}).(*headConn)
	return hc
}

// tlsState returns the TLS state of the client connection, if it is TLS.
func tlsState(r *http.Request) *tls.ConnectionState {
	if r.TLS != nil {
		return r.TLS
	}
	if hc := connOf(r); hc != nil {
		if tc, ok := hc.Conn.(*tls.Conn); ok {
			st := tc.ConnectionState()
			return &st
		}
	}
	return nil
}

// rawHosts finds the Host headers of the request in the recorded head. ok is false when the
// head cannot be found (pipelined requests, or no recording).
func rawHosts(raw []byte, r *http.Request) (hosts []string, ok bool) {
	line := r.Method + " " + r.RequestURI + " "
	i := bytes.Index(raw, []byte(line))
	if i < 0 {
		return nil, false
	}
	tp := textproto.NewReader(newBufReader(raw[i:]))
	if _, err := tp.ReadLine(); err != nil {
		return nil, false
	}
	h, err := tp.ReadMIMEHeader()
	if err != nil {
		return nil, false
	}
	for _, v := range h.Values("Host") {
		hosts = append(hosts, strings.TrimSpace(v))
	}
	return hosts, true
}

func newBufReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }
