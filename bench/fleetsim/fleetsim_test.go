package fleetsim_test

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/bpfattest/bpfattest/attest"
	"github.com/bpfattest/bpfattest/bench/fleetsim"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
	"github.com/bpfattest/bpfattest/verifier"
)

// TestSimulatedHostsVerify: the load generator's hosts pass the real
// verifier, round after round from the stored State, with logs that grow;
// each host has its own AK.
func TestSimulatedHostsVerify(t *testing.T) {
	sim, err := fleetsim.New(3)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go sim.Serve(t.Context(), ln)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(sim.CAPEM())
	pol, err := attest.ParsePolicy([]byte("version: 1\nrequire_signed: true\nforbid_unmeasured: true\n"))
	if err != nil {
		t.Fatal(err)
	}
	aks := map[string]bool{}
	for i := range 3 {
		conn, err := grpc.NewClient("passthrough:///"+ln.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(
			&tls.Config{RootCAs: roots, ServerName: fleetsim.Name(i), MinVersion: tls.VersionTLS13})))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		c := pb.NewAttestationServiceClient(conn)
		h := &verifier.Host{Version: verifier.HostVersion, Pinned: verifier.PinTOFU}
		var next uint64
		for round := range 3 {
			v, nh := verifier.Check(t.Context(), c, h, pol)
			if v.Status != verifier.StatusCompliant || nh == nil {
				t.Fatalf("host %d round %d: %s %s", i, round, v.Status, v.Reason)
			}
			if v.NextRecord <= next {
				t.Errorf("host %d round %d: log did not grow (next record %d)", i, round, v.NextRecord)
			}
			next, h = v.NextRecord, nh
		}
		aks[string(h.AKPublic)] = true
	}
	if len(aks) != 3 {
		t.Errorf("%d distinct AKs for 3 hosts", len(aks))
	}
	if sim.Handshakes.Load() != 3 || sim.Quotes.Load() != 9 {
		t.Errorf("%d handshakes and %d quotes, want 3 and 9 (connections reused)", sim.Handshakes.Load(), sim.Quotes.Load())
	}
}
