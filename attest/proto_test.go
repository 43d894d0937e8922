package attest

import (
	"crypto"
	"errors"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
)

// TestEvidenceProtoRoundTrip proves that real evidence survives the wire
// unchanged: Evidence → proto → proto JSON (the `bpfattest quote` file
// format) → proto → Evidence gives the same bytes, and still verifies.
func TestEvidenceProtoRoundTrip(t *testing.T) {
	for _, p := range evidenceFiles(t) {
		t.Run(filepath.Base(p), func(t *testing.T) {
			c := readCaptured(t, p)
			m, err := EvidenceToProto(c.Evidence)
			if err != nil {
				t.Fatal(err)
			}
			js, err := protojson.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			var back pb.Evidence
			if err := protojson.Unmarshal(js, &back); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(m, &back) {
				t.Fatal("proto JSON round trip changed the message")
			}
			ev, err := EvidenceFromProto(&back)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(c.Evidence, ev); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
			if _, err := Verify(ev, VerifyOptions{Nonce: c.Nonce, AKPublic: ev.AKPublic}); err != nil {
				t.Errorf("converted evidence does not verify: %v", err)
			}
			// The copy owns its bytes.
			back.Log[0] ^= 0xff
			if ev.Log[0] == back.Log[0] {
				t.Error("converted evidence shares the message's log")
			}
		})
	}
}

// TestEvidenceFromProtoRefuses proves what cannot be held in an Evidence
// is an ErrWire error, not a panic or a silent truncation.
func TestEvidenceFromProtoRefuses(t *testing.T) {
	siblings := make([][]byte, maxWireSiblings+1)
	for name, m := range map[string]*pb.Evidence{
		"nil":            nil,
		"pcr 24":         {Pcr: 24},
		"alg above u16":  {Pcrs: []*pb.PCRValue{{HashAlg: 0x1000b, Index: 14}}},
		"unknown alg":    {Pcrs: []*pb.PCRValue{{HashAlg: 0x0099, Index: 14}}},
		"index 24":       {Pcrs: []*pb.PCRValue{{HashAlg: 0x000b, Index: 24}}},
		"too many pcrs":  {Pcrs: make([]*pb.PCRValue, maxWirePCRs+1)},
		"proof too deep": {Proof: &pb.InclusionProof{Siblings: siblings}},
	} {
		if _, err := EvidenceFromProto(m); !errors.Is(err, ErrWire) {
			t.Errorf("%s: %v, want ErrWire", name, err)
		}
	}
	if _, err := EvidenceToProto(&Evidence{PCRs: []PCRValue{{Bank: crypto.MD5, Index: 14}}}); !errors.Is(err, ErrWire) {
		t.Errorf("md5 bank: %v, want ErrWire", err)
	}
}

// FuzzEvidenceFromProto feeds arbitrary wire bytes through the decoder,
// the conversion and Verify: none may panic.
func FuzzEvidenceFromProto(f *testing.F) {
	for _, p := range evidenceFiles(f) {
		c := readCaptured(f, p)
		m, err := EvidenceToProto(c.Evidence)
		if err != nil {
			f.Fatal(err)
		}
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	nonce := make([]byte, MinNonceSize)
	f.Fuzz(func(t *testing.T, b []byte) {
		var m pb.Evidence
		if proto.Unmarshal(b, &m) != nil {
			return
		}
		ev, err := EvidenceFromProto(&m)
		if err != nil {
			if !errors.Is(err, ErrWire) {
				t.Fatalf("error not ErrWire: %v", err)
			}
			return
		}
		if _, err := EvidenceToProto(ev); err != nil {
			t.Fatalf("converted evidence does not convert back: %v", err)
		}
		Verify(ev, VerifyOptions{Nonce: nonce, AKPublic: ev.AKPublic})
	})
}
