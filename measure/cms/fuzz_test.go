package cms

import (
	"bytes"
	"crypto/sha256"
	"testing"
	"time"
)

// seedSignatures returns the fixture signatures plus a Hornet signature
// and BER re-encodings, as fuzz seeds.
func seedSignatures(f *testing.F) [][]byte {
	f.Helper()
	var seeds [][]byte
	for _, n := range signedFixtures {
		fx := loadFixture(f, n)
		tree := parseDER(f, fx.sig)
		seeds = append(seeds, fx.sig,
			tree.encode(encStyle{indef: func(d int, _ *node) bool { return d <= 2 }}, 0),
			tree.encode(encStyle{longLen: 2}, 0),
			append(bytes.Clone(fx.sig), 0, 0, 0))
	}
	fx := loadFixture(f, "counter")
	h := sha256.Sum256(fx.data)
	hs, err := Sign(fx.insn, fixtureKey(f), fixtureCert(f), SignOptions{Scheme: SchemeHornet,
		SigningTime: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), MapHashes: []MapHash{{Index: 0, SHA256: h[:]}, {Index: 2}}})
	if err != nil {
		f.Fatal(err)
	}
	return append(seeds, hs)
}

// FuzzParse: Parse never panics on any input and, when it succeeds, its
// result is consistent with the input.
func FuzzParse(f *testing.F) {
	for _, s := range seedSignatures(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		sd, err := Parse(b)
		if err != nil {
			if sd != nil {
				t.Fatal("result and error together")
			}
			return
		}
		if sd.Length+sd.Trailing != len(b) || len(sd.Signers) == 0 {
			t.Fatalf("inconsistent: length %d trailing %d input %d signers %d", sd.Length, sd.Trailing, len(b), len(sd.Signers))
		}
		for _, si := range sd.Signers {
			_ = si.ID.String()
			if si.HasSignedAttrs && (len(si.RawSignedAttrs) == 0 || si.RawSignedAttrs[0] != tagSet) {
				t.Fatal("signed attributes without their digest input")
			}
		}
	})
}

// FuzzVerify: Verify and VerifyHornet never panic and only ever return a
// known verdict; OK needs a parsable signature.
func FuzzVerify(f *testing.F) {
	fx := loadFixture(f, "counter")
	trust := NewTrustStore(fixtureCert(f))
	for _, s := range seedSignatures(f) {
		f.Add(s, fx.insn[:64])
	}
	f.Add(fx.sig, fx.insn)
	maps := [][]byte{fx.data}
	f.Fuzz(func(t *testing.T, sig, content []byte) {
		for _, r := range []Result{Verify(sig, content, trust), VerifyHornet(sig, content, maps, trust)} {
			if _, err := r.Verdict.MarshalText(); err != nil || r.Verdict == VerdictNone {
				t.Fatalf("verdict %d", r.Verdict)
			}
			if r.Verdict == VerdictOK {
				if _, err := Parse(sig); err != nil {
					t.Fatalf("OK for an unparsable signature: %v", err)
				}
			}
		}
	})
}
