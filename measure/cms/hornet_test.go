package cms

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/bpfattest/bpfattest/internal/testutil"
)

func hornetSign(t *testing.T, f fixture, maps []MapHash) []byte {
	t.Helper()
	sig, err := Sign(f.insn, fixtureKey(t), fixtureCert(t), SignOptions{
		Scheme: SchemeHornet, MapHashes: maps, SigningTime: time.Date(2027, 3, 4, 5, 6, 7, 0, time.UTC),
	})
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// TestHornet: a Hornet signature over the loader with the data map's hash
// verifies OK (and OK under the kernel scheme too), a different map gives
// UNEXPECTED, no map attribute gives PARTIALSIG, a missing map FAULT.
func TestHornet(t *testing.T) {
	trust := NewTrustStore(fixtureCert(t))
	for _, n := range signedFixtures {
		t.Run(n, func(t *testing.T) {
			f := loadFixture(t, n)
			h := sha256.Sum256(f.data)
			sig := hornetSign(t, f, []MapHash{{Index: 0, SHA256: h[:]}, {Index: 5}})
			maps := [][]byte{f.data}

			r := VerifyHornet(sig, f.insn, maps, trust)
			if r.Verdict != VerdictOK || !r.SignedAttrs || len(r.MapHashes) != 2 {
				t.Fatalf("hornet: %v (%s) %v", r.Verdict, r.Reason, r.MapHashes)
			}
			if !r.Signer.Equal(fixtureCert(t)) || r.SignerID[:14] != "issuer+serial:" {
				t.Errorf("signer %q", r.SignerID)
			}
			// DER sorts the SET OF by encoding: the skip entry is shorter.
			if got := r.MapHashes[1].String(); got != "0:"+hex.EncodeToString(h[:]) || r.MapHashes[0].String() != "5:skip" {
				t.Errorf("map hashes = %v", r.MapHashes)
			}
			if r := Verify(sig, f.insn, trust); r.Verdict != VerdictOK {
				t.Errorf("kernel scheme on a Hornet signature: %v (%s)", r.Verdict, r.Reason)
			}
			other := bytes.Clone(f.data)
			other[len(other)-1] ^= 1
			if r := VerifyHornet(sig, f.insn, [][]byte{other}, trust); r.Verdict != VerdictUnexpected {
				t.Errorf("wrong map: %v", r.Verdict)
			}
			if r := VerifyHornet(sig, f.insn, nil, trust); r.Verdict != VerdictFault {
				t.Errorf("missing map: %v", r.Verdict)
			}
			if r := VerifyHornet(hornetSign(t, f, nil), f.insn, maps, trust); r.Verdict != VerdictPartialSig {
				t.Errorf("no map attribute: %v", r.Verdict)
			}
			if r := VerifyHornet(f.sig, f.insn, maps, trust); r.Verdict != VerdictPartialSig {
				t.Errorf("bpftool signature (no attributes): %v", r.Verdict)
			}
			if r := VerifyHornet(sig, append(bytes.Clone(f.insn), 0), maps, trust); r.Verdict != VerdictBadSig {
				t.Errorf("changed program: %v", r.Verdict)
			}
		})
	}
}

// TestHornetOpenSSL: openssl cms -verify accepts the CMS part of Hornet
// signatures, and asn1parse shows the map-hash attribute's OID.
func TestHornetOpenSSL(t *testing.T) {
	openssl := testutil.RequireTool(t, "openssl")
	f := loadFixture(t, "rocfg")
	h := sha256.Sum256(f.data)
	sig := hornetSign(t, f, []MapHash{{Index: 0, SHA256: h[:]}, {Index: 3, SHA256: h[:]}})
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	sp, cp := write("sig.der", sig), write("insn.bin", f.insn)
	cert := testutil.LskelFile(t, "keys/TEST_ONLY_signing_cert.pem")
	out, err := exec.Command(openssl, "cms", "-verify", "-binary", "-inform", "DER", "-in", sp, "-content", cp,
		"-certfile", cert, "-CAfile", cert, "-purpose", "any", "-out", os.DevNull).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl cms -verify: %v\n%s", err, out)
	}
	out, err = exec.Command(openssl, "asn1parse", "-inform", "DER", "-in", sp).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl asn1parse: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("2.25.316487325684022475439036912669789383960")) {
		t.Fatalf("asn1parse output lacks the Hornet OID:\n%s", out)
	}
}
