package main

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/bpfattest/bpfattest/internal/testutil"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
)

// installFile replaces dst with src's contents atomically (write, rename),
// as cert-manager's and kubelet's Secret volumes do.
func installFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	tmp := dst + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}

// serverCertOf completes a TLS 1.3 handshake with the remote API as
// client and returns the certificate the agent presented, or the error.
func serverCertOf(addr string, cfg *tls.Config) (*x509.Certificate, error) {
	cfg = cfg.Clone()
	cfg.NextProtos = []string{"h2"} // gRPC closes connections without it
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	// TLS 1.3: a refused client certificate shows on the first read; an
	// accepted one reads the server's HTTP/2 settings.
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != nil && !isTimeout(err) {
		return nil, err
	}
	return c.ConnectionState().PeerCertificates[0], nil
}

func isTimeout(err error) bool {
	ne, ok := err.(interface{ Timeout() bool })
	return ok && ne.Timeout()
}

// waitServerCert waits until a new connection is served with want.
func waitServerCert(t *testing.T, addr string, cfg *tls.Config, want *x509.Certificate) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, err := serverCertOf(addr, cfg)
		if err == nil && got.Equal(want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent still serves %v (err %v), want serial %s", got.SerialNumber, err, want.SerialNumber)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestTLSRotation rotates the remote API's certificate, key and client CA
// under a running agent, as cert-manager or SPIRE would, and checks that
// new connections see the new material without a restart: on a file
// change (polled), and on SIGHUP when polling is off. A connection opened
// before the rotation keeps working; gRPC calls work over the new
// certificate; a broken rotation (a key that does not match) keeps the
// old certificate in service.
func TestTLSRotation(t *testing.T) {
	caA := testutil.NewCert(t, "verifiers-ca-a", nil, false)
	caB := testutil.NewCert(t, "verifiers-ca-b", nil, false)
	server1 := testutil.NewCert(t, "agent", caA, true)
	server2 := testutil.NewCert(t, "agent", caA, true)
	verifierA := testutil.NewCert(t, "verifier-a", caA, false)
	verifierB := testutil.NewCert(t, "verifier-b", caB, false)

	for _, mode := range []string{"file change", "SIGHUP"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			cert, key, clientCA := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "ca.pem")
			installFile(t, server1.CertFile, cert)
			installFile(t, server1.KeyFile, key)
			installFile(t, caA.CertFile, clientCA)
			interval := "100ms"
			if mode == "SIGHUP" {
				interval = "-1s"
			}
			d := startDaemon(t, "--listen", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key,
				"--client-ca", clientCA, "--tls-reload-interval", interval)
			asA := clientTLS(caA, verifierA, tls.VersionTLS13)
			asB := clientTLS(caA, verifierB, tls.VersionTLS13)
			got, err := serverCertOf(d.listen, asA)
			if err != nil || !got.Equal(server1.Cert) {
				t.Fatalf("before rotation: %v, %v", got, err)
			}
			if _, err := serverCertOf(d.listen, asB); err == nil {
				t.Fatal("a client of CA B was served before B was trusted")
			}
			old := d.remote(t, asA)
			if _, err := old.Identity(t.Context(), &pb.IdentityRequest{}); err != nil {
				t.Fatal(err)
			}

			// A key that does not belong to the certificate: refused,
			// the old pair stays in service.
			installFile(t, server2.CertFile, cert)
			if mode == "SIGHUP" {
				if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
					t.Fatal(err)
				}
			}
			time.Sleep(500 * time.Millisecond)
			if got, err := serverCertOf(d.listen, asA); err != nil || !got.Equal(server1.Cert) {
				t.Fatalf("after a broken rotation: %v, %v; want the old certificate", got, err)
			}

			installFile(t, server2.KeyFile, key)
			installFile(t, caB.CertFile, clientCA)
			if mode == "SIGHUP" {
				time.Sleep(300 * time.Millisecond)
				if got, _ := serverCertOf(d.listen, asA); got == nil || !got.Equal(server1.Cert) {
					t.Fatal("reloaded without a signal although polling is off")
				}
				if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
					t.Fatal(err)
				}
			}
			waitServerCert(t, d.listen, asB, server2.Cert)
			if _, err := serverCertOf(d.listen, asA); err == nil {
				t.Error("a client of CA A is still served after the CA file names only B")
			}
			if _, err := d.remote(t, asB).Identity(t.Context(), &pb.IdentityRequest{}); err != nil {
				t.Errorf("gRPC over the new certificate: %v", err)
			}
			if _, err := old.Identity(t.Context(), &pb.IdentityRequest{}); err != nil {
				t.Errorf("the connection opened before the rotation: %v", err)
			}
		})
	}
}
