package service

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/bpfattest/bpfattest/internal/boundedfile"
	"github.com/bpfattest/bpfattest/internal/testutil"
)

// handshake runs one TLS handshake over loopback TCP and returns the
// server's error (the server decides whether a client is accepted).
func handshake(t *testing.T, server, client *tls.Config) error {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		done <- tls.Server(c, server).Handshake()
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), client)
	if err == nil {
		// In TLS 1.3 the client learns of a refused certificate on its
		// first read.
		c.Read(make([]byte, 1))
		c.Close()
	}
	return <-done
}

// TestServerTLS proves the remote service's TLS policy with real
// handshakes: TLS 1.2 is refused, and under each client-authentication
// mode exactly the intended client certificates are accepted.
func TestServerTLS(t *testing.T) {
	ca := testutil.NewCert(t, "verifiers-ca", nil, false)
	otherCA := testutil.NewCert(t, "other-ca", nil, false)
	server := testutil.NewCert(t, "agent", ca, true)
	good := testutil.NewCert(t, "verifier-1", ca, false)
	stranger := testutil.NewCert(t, "stranger", otherCA, false)
	pinned := testutil.NewCert(t, "pinned", nil, false) // self-signed, allowed by fingerprint

	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	client := func(c *testutil.Cert, version uint16) *tls.Config {
		cfg := &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: version, MaxVersion: version}
		if c != nil {
			cfg.Certificates = []tls.Certificate{c.TLS()}
		}
		return cfg
	}
	modes := map[string]TLSOptions{
		"server only": {},
		"ca":          {ClientCAFile: ca.CertFile},
		"allowlist":   {ClientAllow: []string{Fingerprint(pinned.Cert.Raw), "SHA256:" + strings.ToUpper(colons(Fingerprint(good.Cert.Raw)))}},
		"ca+allow":    {ClientCAFile: ca.CertFile, ClientAllow: []string{Fingerprint(good.Cert.Raw), Fingerprint(pinned.Cert.Raw)}},
	}
	tests := []struct {
		mode   string
		client *testutil.Cert
		tls12  bool
		ok     bool
	}{
		{mode: "server only", ok: true},
		{mode: "server only", tls12: true, ok: false},
		{mode: "ca", client: good, ok: true},
		{mode: "ca", client: good, tls12: true, ok: false},
		{mode: "ca", client: nil, ok: false},
		{mode: "ca", client: stranger, ok: false},
		{mode: "ca", client: pinned, ok: false},
		{mode: "allowlist", client: pinned, ok: true},
		{mode: "allowlist", client: good, ok: true},
		{mode: "allowlist", client: stranger, ok: false},
		{mode: "allowlist", client: nil, ok: false},
		{mode: "ca+allow", client: good, ok: true},
		{mode: "ca+allow", client: pinned, ok: false}, // allowed, but not issued by the CA
		{mode: "ca+allow", client: stranger, ok: false},
	}
	for _, tt := range tests {
		name := tt.mode + "/"
		if tt.client != nil {
			name += tt.client.Cert.Subject.CommonName
		} else {
			name += "no cert"
		}
		if tt.tls12 {
			name += "/tls1.2"
		}
		t.Run(name, func(t *testing.T) {
			opts := modes[tt.mode]
			opts.CertFile, opts.KeyFile = server.CertFile, server.KeyFile
			cfg, err := ServerTLS(opts)
			if err != nil {
				t.Fatal(err)
			}
			version := uint16(tls.VersionTLS13)
			if tt.tls12 {
				version = tls.VersionTLS12
			}
			err = handshake(t, cfg, client(tt.client, version))
			if tt.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tt.ok && err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func colons(h string) string {
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}

func TestServerTLSConfigErrors(t *testing.T) {
	ca := testutil.NewCert(t, "ca", nil, false)
	server := testutil.NewCert(t, "agent", ca, true)
	for name, opts := range map[string]TLSOptions{
		"no key":          {CertFile: server.CertFile},
		"bad fingerprint": {CertFile: server.CertFile, KeyFile: server.KeyFile, ClientAllow: []string{"abcd"}},
		"missing ca":      {CertFile: server.CertFile, KeyFile: server.KeyFile, ClientCAFile: server.KeyFile + ".missing"},
		"ca not pem":      {CertFile: server.CertFile, KeyFile: server.KeyFile, ClientCAFile: server.KeyFile},
		"cert oversized":  {CertFile: "/dev/zero", KeyFile: server.KeyFile},
		"key oversized":   {CertFile: server.CertFile, KeyFile: "/dev/zero"},
		"ca oversized":    {CertFile: server.CertFile, KeyFile: server.KeyFile, ClientCAFile: "/dev/zero"},
		"key is the cert": {CertFile: server.CertFile, KeyFile: server.CertFile},
	} {
		_, err := ServerTLS(opts)
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if strings.HasSuffix(name, "oversized") && !errors.Is(err, boundedfile.ErrTooLarge) {
			t.Errorf("%s: %v, want boundedfile.ErrTooLarge", name, err)
		}
	}
}
