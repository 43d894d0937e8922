package service

import (
	"net"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/bpfattest/bpfattest/agent"
	"github.com/bpfattest/bpfattest/internal/testutil"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
)

// TestRequestSizeLimits proves the size limits of both services on real
// sockets: the transport refuses a message past the service's receive
// limit (ResourceExhausted) before any handler runs, and the Load handler
// refuses an artifact past MaxArtifactSize (InvalidArgument) before the
// agent sees it; the agent records and loads nothing either way.
func TestRequestSizeLimits(t *testing.T) {
	testutil.RequireRoot(t)
	a, err := agent.New(t.Context(), agent.Config{TPM: "sim", StateDir: t.TempDir(), ObserverInterval: -1})
	if err != nil {
		t.Fatalf("agent.New: %v", err)
	}
	defer a.Close()
	const maxArtifact = 4096
	s := New(a, Options{MaxArtifactSize: maxArtifact})
	defer s.Shutdown(t.Context())
	lln, err := ListenUnix(filepath.Join(t.TempDir(), "agent.sock"), -1)
	if err != nil {
		t.Fatal(err)
	}
	rln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.ServeLocal(lln)
	go s.ServeRemote(rln)
	dial := func(target string) *grpc.ClientConn {
		c, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	local := pb.NewLocalServiceClient(dial("unix:" + lln.Addr().String()))
	remote := pb.NewAttestationServiceClient(dial("passthrough:///" + rln.Addr().String()))
	before := a.Status().Records

	for _, tc := range []struct {
		name string
		call func() error
		want codes.Code
	}{
		{"artifact past MaxArtifactSize", func() error {
			_, err := local.Load(t.Context(), &pb.LoadRequest{Artifact: make([]byte, maxArtifact+1)})
			return err
		}, codes.InvalidArgument},
		{"load message past the receive limit", func() error {
			_, err := local.Load(t.Context(), &pb.LoadRequest{Artifact: make([]byte, maxArtifact+localOverhead+1)})
			return err
		}, codes.ResourceExhausted},
		{"quote message past the receive limit", func() error {
			_, err := remote.Quote(t.Context(), &pb.QuoteRequest{Nonce: make([]byte, remoteMaxRecv+1)})
			return err
		}, codes.ResourceExhausted},
		{"nonce past MaxNonceSize", func() error {
			_, err := remote.Quote(t.Context(), &pb.QuoteRequest{Nonce: make([]byte, 65)})
			return err
		}, codes.InvalidArgument},
		{"credential past the receive limit", func() error {
			_, err := remote.ActivateCredential(t.Context(), &pb.ActivateCredentialRequest{CredentialBlob: make([]byte, remoteMaxRecv)})
			return err
		}, codes.ResourceExhausted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if status.Code(err) != tc.want {
				t.Fatalf("%v, want %v", err, tc.want)
			}
			if msg := status.Convert(err).Message(); !strings.ContainsAny(msg, "0123456789") {
				t.Errorf("message %q does not say how large", msg)
			}
		})
	}
	if st := a.Status(); st.Records != before || st.Loaded != 0 {
		t.Fatalf("records %d -> %d, loaded %d: an oversized request reached the agent", before, st.Records, st.Loaded)
	}
}

// TestNestedGroupsRefused proves a deeply nested protobuf message (unknown
// groups inside each other, the wire format's only recursion for our
// messages) is refused by the decoder with an error instead of exhausting
// the stack, for every request message.
func TestNestedGroupsRefused(t *testing.T) {
	const depth = 20_000
	var b []byte
	for range depth {
		b = protowire.AppendTag(b, 99, protowire.StartGroupType)
	}
	for range depth {
		b = protowire.AppendTag(b, 99, protowire.EndGroupType)
	}
	for _, m := range []proto.Message{&pb.LoadRequest{}, &pb.QuoteRequest{}, &pb.ActivateCredentialRequest{}, &pb.EventsRequest{}, &pb.Evidence{}} {
		if err := proto.Unmarshal(b, m); err == nil {
			t.Errorf("%T: %d nested groups accepted", m, depth)
		}
	}
}
