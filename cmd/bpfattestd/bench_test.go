package main

import (
	"crypto/tls"
	"github.com/bpfattest/bpfattest/internal/testutil"
	"testing"

	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
)

// BenchmarkQuoteRPC measures one Quote over mutual TLS 1.3 against a real
// bpfattestd on the in-process simulator: sweep, TPM quote, log slice and
// the wire, end to end.
func BenchmarkQuoteRPC(b *testing.B) {
	ca := testutil.NewCert(b, "ca", nil, false)
	server := testutil.NewCert(b, "agent", ca, true)
	verifier := testutil.NewCert(b, "verifier", ca, false)
	d := startDaemon(b, "--listen", "127.0.0.1:0", "--tls-cert", server.CertFile, "--tls-key", server.KeyFile,
		"--client-ca", ca.CertFile)
	remote := d.remote(b, clientTLS(ca, verifier, tls.VersionTLS13))
	nonce := make([]byte, 32)
	for b.Loop() {
		if _, err := remote.Quote(b.Context(), &pb.QuoteRequest{Nonce: nonce}); err != nil {
			b.Fatal(err)
		}
	}
}
