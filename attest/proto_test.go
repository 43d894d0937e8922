package attest

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/bpfattest/bpfattest/evidence"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
)

// TestEvidenceProtoRoundTrip proves that real evidence survives the wire
// unchanged: Evidence → proto → proto JSON (the `bpfattest quote` file
// format) → proto → Evidence gives the same bytes, and still verifies.
func TestEvidenceProtoRoundTrip(t *testing.T) {
	for _, p := range evidenceFiles(t) {
		t.Run(filepath.Base(p), func(t *testing.T) {
			c := readCaptured(t, p)
			m, err := evidence.ToProto(c.Evidence)
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
			ev, err := evidence.FromProto(&back)
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

// FuzzEvidenceFromProto feeds arbitrary wire bytes through the decoder,
// the conversion and Verify: none may panic.
func FuzzEvidenceFromProto(f *testing.F) {
	for _, p := range evidenceFiles(f) {
		c := readCaptured(f, p)
		m, err := evidence.ToProto(c.Evidence)
		if err != nil {
			f.Fatal(err)
		}
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	// A shim host's evidence: the boot PCRs and the firmware log.
	if _, ev := bootSeed(f); ev != nil {
		m, err := evidence.ToProto(ev)
		if err != nil {
			f.Fatal(err)
		}
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	nonce := make([]byte, evidence.MinNonceSize)
	f.Fuzz(func(t *testing.T, b []byte) {
		var m pb.Evidence
		if proto.Unmarshal(b, &m) != nil {
			return
		}
		ev, err := evidence.FromProto(&m)
		if err != nil {
			if !errors.Is(err, evidence.ErrWire) {
				t.Fatalf("error not ErrWire: %v", err)
			}
			return
		}
		if _, err := evidence.ToProto(ev); err != nil {
			t.Fatalf("converted evidence does not convert back: %v", err)
		}
		Verify(ev, VerifyOptions{Nonce: nonce, AKPublic: ev.AKPublic})
		Verify(ev, VerifyOptions{Nonce: nonce, AKPublic: ev.AKPublic, BootPCRs: DefaultBootPCRs()})
	})
}
