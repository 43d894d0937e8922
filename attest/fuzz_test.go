package attest

import (
	"crypto"
	"os"
	"path/filepath"
	"testing"

	"github.com/bpfattest/bpfattest/evidence"
)

// FuzzVerify feeds Verify evidence whose every field the fuzzer mutates,
// seeded from the real evidence in testdata/evidence. Verify must return
// a Result or a *VerifyError, never panic; a Result must be usable and its
// State must survive its encoding and verify the same quote again.
func FuzzVerify(f *testing.F) {
	for _, p := range evidenceFiles(f) {
		c := readCaptured(f, p)
		ev := c.Evidence
		var pcrs []byte
		for _, v := range ev.PCRs {
			pcrs = append(pcrs, v.Digest...)
		}
		f.Add(c.Nonce, ev.AKPublic, ev.Attest, ev.Signature, pcrs, ev.Log, ev.FromRecord, uint8(ev.PCR))
	}
	f.Fuzz(func(t *testing.T, nonce, akPub, attest, sig, pcrs, log []byte, from uint64, pcr uint8) {
		ev := &evidence.Evidence{AKPublic: akPub, Attest: attest, Signature: sig, Log: log, FromRecord: from,
			PCR: int(pcr), Proof: evidence.InclusionProof{Size: 1}}
		for i := 0; i+32 <= len(pcrs); i += 32 {
			ev.PCRs = append(ev.PCRs, evidence.PCRValue{Bank: crypto.SHA256, Index: int(pcr), Digest: pcrs[i : i+32]})
		}
		res, err := Verify(ev, VerifyOptions{Nonce: nonce, AKPublic: akPub})
		if err != nil {
			if _, ok := err.(*VerifyError); !ok {
				t.Fatalf("error %T: %v", err, err)
			}
			return
		}
		_ = Evaluate(res, &Policy{RequireSigned: true, ForbidUnmeasured: true, RequirePinned: true})
		b, err := res.State().MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var st State
		if err := st.UnmarshalBinary(b); err != nil {
			t.Fatalf("state of a verified result does not decode: %v", err)
		}
		ev.Log, ev.FromRecord = nil, st.NextRecord()
		if _, err := Verify(ev, VerifyOptions{Nonce: nonce, AKPublic: akPub, State: &st}); err != nil {
			t.Fatalf("same quote from its own state: %v", err)
		}
	})
}

// FuzzState feeds State's binary decoder; seeds are the States of the
// captured evidence. Decoding must not panic, and a decoded State must
// encode back to the same bytes.
func FuzzState(f *testing.F) {
	for _, p := range evidenceFiles(f) {
		c := readCaptured(f, p)
		res, err := Verify(c.Evidence, VerifyOptions{Nonce: c.Nonce, AKPublic: c.Evidence.AKPublic})
		if err != nil {
			f.Fatal(err)
		}
		b, err := res.State().MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var s State
		if err := s.UnmarshalBinary(b); err != nil {
			return
		}
		out, err := s.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != string(b) {
			t.Fatalf("decoded state re-encodes differently")
		}
	})
}

// FuzzParsePolicy feeds the policy parser, seeded from the example
// policies. It must not panic.
func FuzzParsePolicy(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "policy", "*.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePolicy(b)
		if err == nil && p == nil {
			t.Fatal("nil policy without error")
		}
	})
}
