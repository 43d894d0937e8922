package tpm_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"math/big"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/bpfattest/bpfattest/internal/tpm"
)

// verifyQuote checks a quote in Go as a verifier would: the AK public area
// is a restricted signing key whose key matches ak.Public, the signature
// covers Attest, Attest is a quote carrying qualifyingData, and its PCR
// digest is SHA-256 over the returned PCR values in order.
func verifyQuote(tb testing.TB, ak *tpm.AK, q *tpm.Quote, qualifyingData []byte) {
	tb.Helper()
	pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](ak.PublicArea())
	if err != nil {
		tb.Fatalf("AK public area: %v", err)
	}
	if a := pub.ObjectAttributes; !a.Restricted || !a.SignEncrypt || !a.FixedTPM || a.Decrypt {
		tb.Fatalf("AK attributes %+v: not a restricted signing key", a)
	}
	sig, err := tpm2.Unmarshal[tpm2.TPMTSignature](q.Signature)
	if err != nil {
		tb.Fatalf("signature: %v", err)
	}
	h := sha256.Sum256(q.Attest)
	switch k := ak.Public().(type) {
	case *ecdsa.PublicKey:
		e, err := sig.Signature.ECDSA()
		if err != nil {
			tb.Fatalf("signature: %v", err)
		}
		r, s := new(big.Int).SetBytes(e.SignatureR.Buffer), new(big.Int).SetBytes(e.SignatureS.Buffer)
		if !ecdsa.Verify(k, h[:], r, s) {
			tb.Fatal("ECDSA signature does not verify")
		}
	case *rsa.PublicKey:
		r, err := sig.Signature.RSASSA()
		if err != nil {
			tb.Fatalf("signature: %v", err)
		}
		if err := rsa.VerifyPKCS1v15(k, crypto.SHA256, h[:], r.Sig.Buffer); err != nil {
			tb.Fatalf("RSA signature: %v", err)
		}
	default:
		tb.Fatalf("AK public key type %T", k)
	}
	att, err := tpm2.Unmarshal[tpm2.TPMSAttest](q.Attest)
	if err != nil {
		tb.Fatalf("attest: %v", err)
	}
	if att.Type != tpm2.TPMSTAttestQuote {
		tb.Fatalf("attest type %v", att.Type)
	}
	if !bytes.Equal(att.ExtraData.Buffer, qualifyingData) {
		tb.Fatalf("extraData %x, want %x", att.ExtraData.Buffer, qualifyingData)
	}
	info, err := att.Attested.Quote()
	if err != nil {
		tb.Fatal(err)
	}
	d := sha256.New()
	for _, v := range q.PCRs {
		d.Write(v.Digest)
	}
	if !bytes.Equal(d.Sum(nil), info.PCRDigest.Buffer) {
		tb.Fatal("PCR digest does not match the returned PCR values")
	}
	if q.Clock.ResetCount != att.ClockInfo.ResetCount || q.Clock.Clock != att.ClockInfo.Clock {
		tb.Fatalf("Quote.Clock %+v differs from the attest's %+v", q.Clock, att.ClockInfo)
	}
}
