package service

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"net"
	"os"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/bpfattest/bpfattest/attest"
	"github.com/bpfattest/bpfattest/evidence"
	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/lskel"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
)

// The targets below feed arbitrary bytes, decoded as the request message
// the way gRPC's codec does, through the error interceptor and the handler
// of a real agent on the TPM simulator. The agent trusts no signer and does
// not allow unsigned artifacts, so no input may ever reach the kernel: every
// load must end in a refusal or a bad-request error, and the agent must
// count no loaded program afterwards.

// fuzzServer is a Server over a fresh agent on the simulator that trusts
// nobody, with the quote rate limit off.
func fuzzServer(f *testing.F) *Server {
	f.Helper()
	// Rates off: a fuzzer calls far faster than any limit, and the limits
	// have tests of their own; here every answer must be about the input.
	return newTestServer(f, Options{ActivateRate: -1, IdentityRate: -1, EnrolRate: -1, LoadRate: -1, LoadRateTotal: -1, RefusalDelay: -1})
}

// localPeer is the context of an RPC from root on the local socket.
func localPeer(ctx context.Context) context.Context {
	return peer.NewContext(ctx, &peer.Peer{
		Addr:     &net.UnixAddr{Name: "@fuzz", Net: "unix"},
		AuthInfo: PeerCred{UID: 0, GID: 0, PID: uint32(os.Getpid()), Allowed: true},
	})
}

// remotePeer is the context of an RPC from a loopback client.
func remotePeer(ctx context.Context) context.Context {
	return peer.NewContext(ctx, &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}})
}

// call runs handler h on req through the server's error interceptor, as
// the gRPC server does after decoding, and returns the client's status code.
func call[Req, Resp any](ctx context.Context, s *Server, method string, req Req, h func(context.Context, Req) (Resp, error)) (any, codes.Code) {
	resp, err := s.unaryErrors(ctx, req, &grpc.UnaryServerInfo{FullMethod: method}, func(ctx context.Context, r any) (any, error) {
		return h(ctx, r.(Req))
	})
	return resp, status.Code(err)
}

func marshal(tb testing.TB, m proto.Message) []byte {
	tb.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// FuzzLoadRequest: any serialized LoadRequest ends in InvalidArgument (the
// request or artifact is malformed) or FailedPrecondition (measured and
// refused), never in another code or a panic, and never loads anything.
func FuzzLoadRequest(f *testing.F) {
	for _, name := range []string{"counter", "pair", "rocfg"} {
		for _, file := range []string{"headers/" + name + ".signed.lskel.h", "headers/" + name + ".lskel.h"} {
			b, err := os.ReadFile(testutil.LskelFile(f, file))
			if err != nil {
				f.Fatal(err)
			}
			// The bundle form: the header seeds (30-100 KB) make the
			// mutator crawl, and the header reader has its own target.
			art, err := lskel.Load(b)
			if err != nil {
				f.Fatal(err)
			}
			bundle, err := art.MarshalBundle()
			if err != nil {
				f.Fatal(err)
			}
			f.Add(marshal(f, &pb.LoadRequest{Artifact: bundle}))
			f.Add(marshal(f, &pb.LoadRequest{Artifact: bundle, PinDir: "/sys/fs/bpf/fuzz"}))
		}
	}
	f.Add(marshal(f, &pb.LoadRequest{}))
	s := fuzzServer(f)
	l := &localService{s: s}
	ctx := localPeer(f.Context())
	f.Fuzz(func(t *testing.T, b []byte) {
		req := new(pb.LoadRequest)
		if err := proto.Unmarshal(b, req); err != nil {
			return // the codec refuses it: the handler never runs
		}
		_, code := call(ctx, s, "/bpfattest.v1.LocalService/Load", req, l.Load)
		switch code {
		case codes.InvalidArgument, codes.FailedPrecondition:
		default:
			t.Fatalf("load of %d-byte artifact: code %v, want InvalidArgument or FailedPrecondition", len(req.GetArtifact()), code)
		}
		if st := s.agent.Status(); st.Loaded != 0 {
			t.Fatalf("%d programs loaded by an agent that trusts nobody", st.Loaded)
		}
	})
}

// FuzzQuoteRequest: a serialized QuoteRequest is answered with evidence
// that decodes back into the verifier's form and quotes its nonce, or
// refused with InvalidArgument (bad nonce, record past the end).
func FuzzQuoteRequest(f *testing.F) {
	f.Add(marshal(f, &pb.QuoteRequest{Nonce: make([]byte, evidence.MinNonceSize)}))
	f.Add(marshal(f, &pb.QuoteRequest{Nonce: []byte("0123456789abcdef0123456789abcdef"), FromRecord: 1}))
	f.Add(marshal(f, &pb.QuoteRequest{Nonce: make([]byte, evidence.MaxNonceSize+1)}))
	f.Add(marshal(f, &pb.QuoteRequest{Nonce: []byte("short"), FromRecord: 1 << 62}))
	f.Add(marshal(f, &pb.QuoteRequest{Nonce: make([]byte, evidence.MinNonceSize), IncludeFirmwareLog: true}))
	s := fuzzServer(f)
	r := &remoteService{s: s}
	ctx := remotePeer(f.Context())
	f.Fuzz(func(t *testing.T, b []byte) {
		req := new(pb.QuoteRequest)
		if err := proto.Unmarshal(b, req); err != nil {
			return
		}
		resp, code := call(ctx, s, "/bpfattest.v1.AttestationService/Quote", req, r.Quote)
		switch code {
		case codes.OK:
		case codes.InvalidArgument:
			return
		default:
			t.Fatalf("quote (nonce %d bytes, from %d): code %v", len(req.GetNonce()), req.GetFromRecord(), code)
		}
		ev, err := evidence.FromProto(resp.(*pb.Evidence))
		if err != nil {
			t.Fatalf("the agent's own evidence does not decode: %v", err)
		}
		if ev.FromRecord != req.GetFromRecord() {
			t.Fatalf("evidence from record %d, asked %d", ev.FromRecord, req.GetFromRecord())
		}
	})
}

// FuzzActivateCredentialRequest: arbitrary credential blobs and secrets
// for the agent's own AK (or any other key) are refused as InvalidArgument
// or answered; they never make the agent unavailable.
func FuzzActivateCredentialRequest(f *testing.F) {
	s := fuzzServer(f)
	id, err := s.agent.Identity(f.Context())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(marshal(f, &pb.ActivateCredentialRequest{AkPublic: id.AKPublic}))
	f.Add(marshal(f, &pb.ActivateCredentialRequest{AkPublic: id.AKPublic, CredentialBlob: []byte{0, 2, 1, 2}, EncryptedSecret: []byte{0, 1, 0}}))
	if ek, err := x509.ParseCertificate(id.EKCertificate); err == nil {
		cred, err := attest.MakeCredential(rand.Reader, ek.PublicKey, id.AKPublic, []byte("0123456789abcdef0123456789abcdef"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(marshal(f, &pb.ActivateCredentialRequest{AkPublic: id.AKPublic, CredentialBlob: cred.CredentialBlob, EncryptedSecret: cred.EncryptedSecret}))
	}
	r := &remoteService{s: s}
	ctx := remotePeer(f.Context())
	f.Fuzz(func(t *testing.T, b []byte) {
		req := new(pb.ActivateCredentialRequest)
		if err := proto.Unmarshal(b, req); err != nil {
			return
		}
		_, code := call(ctx, s, "/bpfattest.v1.AttestationService/ActivateCredential", req, r.ActivateCredential)
		switch code {
		case codes.OK, codes.InvalidArgument:
		default:
			t.Fatalf("activate credential (blob %d bytes, secret %d bytes): code %v",
				len(req.GetCredentialBlob()), len(req.GetEncryptedSecret()), code)
		}
	})
}
