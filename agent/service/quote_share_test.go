package service

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	"github.com/bpfattest/bpfattest/agent"
	"github.com/bpfattest/bpfattest/attest"
	"github.com/bpfattest/bpfattest/evidence"
	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
)

// remoteTapCtx is the context a tap handle gets for a remote peer at ip.
func remoteTapCtx(ip string) context.Context {
	return peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000}})
}

// TestRemoteTapQuoteCalls: quotes in flight are a budget of their own. A
// peer's quotes are admitted past its budget of other calls, up to
// MaxQuoteCallsPerPeer, then turned away; its other calls, and another
// peer's quotes, are admitted meanwhile.
func TestRemoteTapQuoteCalls(t *testing.T) {
	s := newTestServer(t, Options{MaxRemoteCallsPerPeer: 2, MaxQuoteCallsPerPeer: 5, MaxQuoteCalls: 8})
	quote := &tap.Info{FullMethodName: pb.AttestationService_Quote_FullMethodName}
	events := &tap.Info{FullMethodName: pb.AttestationService_Events_FullMethodName}
	var held []context.Context
	for i := range 5 {
		ctx, err := s.remoteTap(remoteTapCtx("192.0.2.1"), quote)
		if err != nil {
			t.Fatalf("quote %d of a peer with 2 other calls allowed: %v", i, err)
		}
		held = append(held, ctx)
	}
	if _, err := s.remoteTap(remoteTapCtx("192.0.2.1"), quote); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a sixth quote of the peer: %v, want ResourceExhausted", err)
	}
	if _, err := s.remoteTap(remoteTapCtx("192.0.2.1"), events); err != nil {
		t.Fatalf("the peer's Events stream beside its quotes: %v", err)
	}
	for i := range 3 {
		if _, err := s.remoteTap(remoteTapCtx("192.0.2.2"), quote); err != nil {
			t.Fatalf("another peer's quote %d: %v", i, err)
		}
	}
	if _, err := s.remoteTap(remoteTapCtx("192.0.2.3"), quote); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a quote past the total: %v, want ResourceExhausted", err)
	}
	budgetOf(held[0]).cancel(context.Canceled)
	deadline := time.Now().Add(5 * time.Second)
	for s.quoteCalls.inUse() > 7 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := s.quoteCalls.inUse(); n != 7 {
		t.Fatalf("%d quote calls held after one ended, want 7", n)
	}
	if _, err := s.remoteTap(remoteTapCtx("192.0.2.1"), quote); err != nil {
		t.Fatalf("the peer's quote after one of its own ended: %v", err)
	}
}

// TestQuoteFloodTPMShare: over mutual TLS, one client (a verifier host:
// one certificate) floods the agent with more quote requests at once
// than its budget of other calls (48 > 32), on swtpm behind a proxy that
// holds each TPM2_Quote for quoteHold. Every request is answered, bound
// to its own nonce; the flood gets no more TPM quotes than the agent's
// TPM share allows (each holds the TPM at least quoteHold, so at most
// share × elapsed / quoteHold of them, plus the one running at the start
// and the last); another client's quote shares a batch with the flood and
// is answered by the first or second quote made after it asked (two more
// for the time its request and answer take on a busy machine), not after
// the flood's.
func TestQuoteFloodTPMShare(t *testing.T) {
	testutil.RequireRoot(t)
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		testutil.SkipEnv(t, "kernel without BTF: %v", err)
	}
	const (
		share     = 0.25
		quoteHold = 100 * time.Millisecond
		flooders  = 48
		quotes    = 8 // TPM quotes the flood lasts
	)
	sw := tpmtest.StartSwtpm(t, tpmtest.SwtpmOptions{})
	proxy := tpmtest.StartSlowProxy(t, sw.SocketPath(), quoteHold, tpmtest.CCQuote)
	a, err := agent.New(t.Context(), agent.Config{TPM: proxy.Spec(), StateDir: t.TempDir(), ObserverInterval: -1, QuoteTPMShare: share})
	if err != nil {
		t.Fatalf("agent.New: %v", err)
	}
	t.Cleanup(func() { a.Close() })

	ca := testutil.NewCert(t, "ca", nil, false)
	server := testutil.NewCert(t, "agent", ca, true)
	tlsCfg, err := ServerTLS(TLSOptions{CertFile: server.CertFile, KeyFile: server.KeyFile, ClientCAFile: ca.CertFile})
	if err != nil {
		t.Fatal(err)
	}
	s := New(a, Options{TLS: tlsCfg})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.ServeRemote(ln)
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	dial := func(cn string) pb.AttestationServiceClient {
		roots := x509.NewCertPool()
		roots.AddCert(ca.Cert)
		cfg := &tls.Config{RootCAs: roots, ServerName: "localhost", Certificates: []tls.Certificate{testutil.NewCert(t, cn, ca, false).TLS()}}
		c, err := grpc.NewClient("passthrough:///"+ln.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return pb.NewAttestationServiceClient(c)
	}
	flood, other := dial("fleet verifier host"), dial("another verifier")
	from := a.Status().Records
	// Both connections up, the log's tail known.
	for _, c := range []pb.AttestationServiceClient{flood, other} {
		if _, err := c.Quote(t.Context(), &pb.QuoteRequest{Nonce: freshNonce(), FromRecord: from}); err != nil {
			t.Fatal(err)
		}
	}
	tpmQuotes := func() uint64 {
		for _, c := range a.Metrics().Snapshot().TPM {
			if c.Class == "quote" {
				return c.Commands
			}
		}
		t.Fatal("no quote class in the TPM metrics")
		return 0
	}

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stop := make(chan struct{})
	var answered atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, flooders)
	before, start := tpmQuotes(), time.Now()
	for range flooders {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				// Each flooder's first answer is verified as a new
				// verifier would (from record 0), the rest resume.
				nonce, fromRec := freshNonce(), from
				if i == 0 {
					fromRec = 0
				}
				resp, err := flood.Quote(ctx, &pb.QuoteRequest{Nonce: nonce, FromRecord: fromRec})
				if err != nil {
					errs <- err
					return
				}
				if i == 0 {
					if err := verifyAnswer(resp, nonce); err != nil {
						errs <- err
						return
					}
				}
				answered.Add(1)
			}
		})
	}
	// Once the flood holds the agent, the other client asks.
	for tpmQuotes() < before+2 {
		time.Sleep(10 * time.Millisecond)
	}
	nonce := freshNonce()
	asked := tpmQuotes()
	resp, err := other.Quote(t.Context(), &pb.QuoteRequest{Nonce: nonce})
	if err != nil {
		t.Fatalf("another client's quote during the flood: %v", err)
	}
	made := tpmQuotes() - asked
	if err := verifyAnswer(resp, nonce); err != nil {
		t.Fatalf("another client's quote: %v", err)
	}
	if made > 4 {
		t.Errorf("another client's quote took %d TPM quotes to answer, want at most 4: it waited behind the flood", made)
	}
	if size := resp.GetProof().GetSize(); size < 2 {
		t.Errorf("another client's quote was alone in its batch (size %d): the flood's requests did not share it", size)
	}
	for tpmQuotes() < before+quotes {
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		t.Errorf("flood: %v", err)
	}
	n := tpmQuotes() - before
	allowed := uint64(share*elapsed.Seconds()/quoteHold.Seconds()) + 2
	t.Logf("%d requests answered with %d TPM quotes in %v (%d allowed by a TPM share of %v)", answered.Load(), n, elapsed.Round(time.Millisecond), allowed, share)
	if n > allowed {
		t.Errorf("%d TPM quotes in %v, more than a TPM share of %v allows (%d of at least %v each)", n, elapsed, share, allowed, quoteHold)
	}
	if answered.Load() < 2*int64(n) {
		t.Errorf("%d requests answered with %d TPM quotes: not coalesced", answered.Load(), n)
	}
	if busy := quoteBusy(a); busy < time.Duration(n)*quoteHold {
		t.Errorf("quotes held the TPM for %v by the agent's metrics, less than %d × %v", busy, n, quoteHold)
	}
}

// quoteBusy is the time quotes held the TPM, by the agent's metrics.
func quoteBusy(a *agent.Agent) time.Duration {
	for _, c := range a.Metrics().Snapshot().TPM {
		if c.Class == "quote" {
			return c.Busy
		}
	}
	return 0
}

// verifyAnswer verifies a quote answer of the log from record 0 the way a
// new verifier does: the signature, its own nonce through the batch's
// inclusion proof, the log's replay.
func verifyAnswer(resp *pb.Evidence, nonce []byte) error {
	ev, err := evidence.FromProto(resp)
	if err != nil {
		return err
	}
	if ev.Proof.Size == 0 {
		return errors.New("no batch proof")
	}
	_, err = attest.Verify(ev, attest.VerifyOptions{Nonce: nonce, AKPublic: ev.AKPublic, BootPCRs: attest.DefaultBootPCRs()})
	return err
}

// freshNonce is a random 32-byte nonce.
func freshNonce() []byte {
	n := make([]byte, 32)
	rand.Read(n) // never fails (crypto/rand)
	return n
}
