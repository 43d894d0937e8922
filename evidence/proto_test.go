package evidence

import (
	"bytes"
	"crypto"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
)

// TestProtoRoundTrip converts evidence to the wire message and back: the
// same values, and FromProto's in copies of their own.
func TestProtoRoundTrip(t *testing.T) {
	b, err := NewBatch([][]byte{bytes.Repeat([]byte{1}, 16), bytes.Repeat([]byte{2}, 16), bytes.Repeat([]byte{3}, 16)})
	if err != nil {
		t.Fatal(err)
	}
	ev := &Evidence{
		AKPublic: []byte("ak"), Attest: []byte("attest"), Signature: []byte("sig"), PCR: 14,
		PCRs: []PCRValue{
			{Bank: crypto.SHA256, Index: 14, Digest: bytes.Repeat([]byte{0xaa}, 32)},
			{Bank: crypto.SHA384, Index: 14, Digest: bytes.Repeat([]byte{0xbb}, 48)},
		},
		Log: []byte("records"), FromRecord: 7, Proof: b.Proof(2), EKCertificate: []byte("ek"),
		FirmwareLog: []byte("firmware events"),
	}
	m, err := ToProto(ev)
	if err != nil {
		t.Fatal(err)
	}
	back, err := FromProto(m)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(ev, back); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	// FromProto copies; ToProto shares.
	m.Log[0] ^= 0xff
	m.Proof.Siblings[0][0] ^= 0xff
	if back.Log[0] == m.Log[0] || back.Proof.Siblings[0][0] == m.Proof.Siblings[0][0] {
		t.Error("FromProto shares the message's bytes")
	}
	if ev.Log[0] != m.Log[0] {
		t.Error("ToProto copied the log")
	}
	m.FirmwareLog[0] ^= 0xff
	if back.FirmwareLog[0] == m.FirmwareLog[0] {
		t.Error("FromProto shares the message's firmware log")
	}
}

// TestFromProtoBootPCRs accepts a quote's worth of values: every PCR of
// four banks.
func TestFromProtoBootPCRs(t *testing.T) {
	m := &pb.Evidence{Pcr: 14, FirmwareLog: make([]byte, MaxFirmwareLogSize)}
	for _, alg := range []uint32{0x0004, 0x000b, 0x000c, 0x000d} {
		for i := range MaxPCRsPerBank {
			m.Pcrs = append(m.Pcrs, &pb.PCRValue{HashAlg: alg, Index: uint32(i)})
		}
	}
	ev, err := FromProto(m)
	if err != nil {
		t.Fatal(err)
	}
	if len(ev.PCRs) != 4*MaxPCRsPerBank || len(ev.FirmwareLog) != MaxFirmwareLogSize {
		t.Errorf("%d values, %d log bytes", len(ev.PCRs), len(ev.FirmwareLog))
	}
}

// TestFromProtoRefuses proves what cannot be held in an Evidence is an
// ErrWire error, not a panic or a silent truncation.
func TestFromProtoRefuses(t *testing.T) {
	siblings := make([][]byte, maxWireSiblings+1)
	bank := make([]*pb.PCRValue, MaxPCRsPerBank+1)
	for i := range bank {
		bank[i] = &pb.PCRValue{HashAlg: 0x000b, Index: uint32(i % 24)}
	}
	for name, m := range map[string]*pb.Evidence{
		"25 sha256 values":   {Pcrs: bank},
		"large firmware log": {FirmwareLog: make([]byte, MaxFirmwareLogSize+1)},
		"nil":                nil,
		"pcr 24":             {Pcr: 24},
		"alg above u16":      {Pcrs: []*pb.PCRValue{{HashAlg: 0x1000b, Index: 14}}},
		"unknown alg":        {Pcrs: []*pb.PCRValue{{HashAlg: 0x0099, Index: 14}}},
		"index 24":           {Pcrs: []*pb.PCRValue{{HashAlg: 0x000b, Index: 24}}},
		"too many pcrs":      {Pcrs: make([]*pb.PCRValue, maxWirePCRs+1)},
		"proof too deep":     {Proof: &pb.InclusionProof{Siblings: siblings}},
	} {
		if _, err := FromProto(m); !errors.Is(err, ErrWire) {
			t.Errorf("%s: %v, want ErrWire", name, err)
		}
	}
	for name, ev := range map[string]*Evidence{
		"nil":                nil,
		"md5 bank":           {PCRs: []PCRValue{{Bank: crypto.MD5, Index: 14}}},
		"pcr 24":             {PCR: 24},
		"index -1":           {PCRs: []PCRValue{{Bank: crypto.SHA256, Index: -1}}},
		"large firmware log": {FirmwareLog: make([]byte, MaxFirmwareLogSize+1)},
	} {
		if _, err := ToProto(ev); !errors.Is(err, ErrWire) {
			t.Errorf("ToProto %s: %v, want ErrWire", name, err)
		}
	}
}
