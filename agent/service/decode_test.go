package service

import (
	"net"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"

	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
)

// rawCodec sends and receives messages as the bytes they are: a client
// that can put anything on the wire.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

// TestGarbageRequests sends bytes that are no protobuf message (a field
// with wire type 7, which does not exist) to every method of both
// services, unary and streaming: each answers InvalidArgument, the
// client's error, and never reaches the agent (it records nothing).
func TestGarbageRequests(t *testing.T) {
	s := newTestServer(t, Options{})
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
		c, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{})))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	local, remote := dial("unix:"+lln.Addr().String()), dial("passthrough:///"+rln.Addr().String())
	before := s.agent.Status().Records
	garbage := []byte{0x0f, 0xff, 0xff}
	for _, tc := range []struct {
		conn   *grpc.ClientConn
		method string
		stream bool
	}{
		{local, pb.LocalService_Load_FullMethodName, false},
		{local, pb.LocalService_Status_FullMethodName, false},
		{remote, pb.AttestationService_Identity_FullMethodName, false},
		{remote, pb.AttestationService_Quote_FullMethodName, false},
		{remote, pb.AttestationService_ActivateCredential_FullMethodName, false},
		{remote, pb.AttestationService_Events_FullMethodName, true},
	} {
		t.Run(filepath.Base(tc.method), func(t *testing.T) {
			var err error
			if tc.stream {
				var st grpc.ClientStream
				st, err = tc.conn.NewStream(t.Context(), &grpc.StreamDesc{ServerStreams: true}, tc.method)
				if err == nil {
					if err = st.SendMsg(&garbage); err == nil {
						st.CloseSend()
						var out []byte
						err = st.RecvMsg(&out)
					}
				}
			} else {
				var out []byte
				err = tc.conn.Invoke(t.Context(), tc.method, &garbage, &out)
			}
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("%v, want InvalidArgument", err)
			}
		})
	}
	if after := s.agent.Status().Records; after != before {
		t.Errorf("records %d -> %d: garbage reached the agent", before, after)
	}
}
