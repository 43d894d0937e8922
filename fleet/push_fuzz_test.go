package fleet

import (
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/bpfattest/bpfattest/fleet/store"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
	"github.com/bpfattest/bpfattest/verifier"
)

// FuzzSubmit feeds arbitrary uploads (the wire Evidence message a push
// agent sends) through Submit: nothing panics, and garbage never makes a
// host compliant or advances its state.
func FuzzSubmit(f *testing.F) {
	s := newFuzzService(f)
	ctx := f.Context()
	fp := strings.Repeat("ab", 32)
	if err := s.Register(ctx, []AgentSpec{{Name: "edge", Mode: store.ModePush, CertSHA256: fp}}); err != nil {
		f.Fatal(err)
	}
	seed, _ := proto.Marshal(&pb.Evidence{AkPublic: []byte{0, 0x23}, Attest: []byte{0xff, 0x54, 0x43, 0x47}, Pcr: 14,
		Pcrs: []*pb.PCRValue{{HashAlg: 0x0b, Index: 14, Digest: make([]byte, 32)}}, Log: []byte{1, 2, 3}, Proof: &pb.InclusionProof{Size: 1}})
	f.Add(seed)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var m pb.Evidence
		if proto.Unmarshal(b, &m) != nil {
			return
		}
		c, err := s.Challenge(ctx, fp)
		var nd *NotDueError
		if errors.As(err, &nd) {
			time.Sleep(nd.RetryAfter)
			c, err = s.Challenge(ctx, fp)
		}
		if err != nil {
			t.Fatal(err)
		}
		r, err := s.Submit(ctx, fp, c.Session, &m)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status == verifier.StatusCompliant || r.Status == verifier.StatusNonCompliant {
			t.Fatalf("garbage judged %s", r.Status)
		}
		if a, _ := s.st.Agent(ctx, "edge"); a.StateVersion != 0 {
			t.Fatalf("state advanced to %d", a.StateVersion)
		}
	})
}

func newFuzzService(f *testing.F) *Service {
	st := openFuzzStore(f)
	s, err := New(Config{Store: st, Interval: time.Millisecond, Timeout: time.Minute, TOFU: true})
	if err != nil {
		f.Fatal(err)
	}
	if _, err := s.PutPolicy(f.Context(), DefaultPolicyName, []byte("version: 1\n")); err != nil {
		f.Fatal(err)
	}
	return s
}
