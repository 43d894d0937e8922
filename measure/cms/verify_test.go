package cms

import (
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/bpfattest/bpfattest/internal/testutil"
)

// TestVerifyFixtures: bpftool's signatures verify OK against the fixture
// certificate, UNKNOWNKEY against an unrelated one, UNSIGNED when empty,
// BADSIG over a changed program.
func TestVerifyFixtures(t *testing.T) {
	cert := fixtureCert(t)
	other, _ := newSelfSigned(t, "unrelated")
	good, stranger := NewTrustStore(cert), NewTrustStore(other)
	for _, n := range signedFixtures {
		t.Run(n, func(t *testing.T) {
			f := loadFixture(t, n)
			r := Verify(f.sig, f.insn, good)
			if r.Verdict != VerdictOK {
				t.Fatalf("fixture cert: %v (%s)", r.Verdict, r.Reason)
			}
			if r.Signer != cert || r.SignerID != "skid:de0e7eb4aae9b5c8b36b02283248e0f06a4140c3" || r.DigestAlgorithm != "sha256" || r.SignedAttrs {
				t.Errorf("result details: %+v", r)
			}
			if r := Verify(f.sig, f.insn, stranger); r.Verdict != VerdictUnknownKey || r.Errno != "ENOKEY" {
				t.Errorf("unrelated cert: %v %s", r.Verdict, r.Errno)
			}
			if r := Verify(nil, f.insn, good); r.Verdict != VerdictUnsigned {
				t.Errorf("empty signature: %v", r.Verdict)
			}
			if r := Verify(f.sig, f.insn, nil); r.Verdict != VerdictUnknownKey {
				t.Errorf("nil trust store: %v", r.Verdict)
			}
			bad := bytes.Clone(f.insn)
			bad[100] ^= 1
			if r := Verify(f.sig, bad, good); r.Verdict != VerdictBadSig || r.Errno != "EKEYREJECTED" {
				t.Errorf("changed program: %v %s", r.Verdict, r.Errno)
			}
			if r := Verify(f.sig, f.data, good); r.Verdict != VerdictBadSig {
				t.Errorf("signature over opts_data instead of opts_insn: %v", r.Verdict)
			}
		})
	}
}

// TestVerifyKernelRules exercises each rule of docs/cms-verification.md on
// signatures built by this package, checking verdict and kernel errno.
func TestVerifyKernelRules(t *testing.T) {
	key, cert := fixtureKey(t), fixtureCert(t)
	trust := NewTrustStore(cert)
	content := loadFixture(t, "counter").insn
	md := sha256.Sum256(content)
	serial, issuer, err := rawSerialIssuer(cert.RawTBSCertificate)
	if err != nil {
		t.Fatal(err)
	}
	issuerSerial := derSeq(tlvBytes(tagSequence, issuer), tlvBytes(tagInteger, serial))
	base := func() signTemplate {
		return signTemplate{content: content, key: key, version: 3, sid: tlvBytes(tagCtx0Prim, cert.SubjectKeyId),
			digestOID: digestAlgs[1].oid, sigAlg: derSeq(derOID(oidRSAEncryption), derNull)}
	}
	attrsOK := [][]byte{attr(oidContentType, derOID(oidData)), attr(oidMessageDigest, tlvBytes(tagOctetString, md[:]))}
	outside := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name  string
		edit  func(*signTemplate)
		want  Verdict
		errno string
	}{
		{"kernel scheme", func(*signTemplate) {}, VerdictOK, ""},
		{"issuer+serial v1", func(s *signTemplate) { s.version, s.sid = 1, issuerSerial }, VerdictOK, ""},
		{"issuer+serial with v3 signer", func(s *signTemplate) { s.sid = issuerSerial }, VerdictUnknownKey, "ENOKEY"},
		{"skid with v1 signer", func(s *signTemplate) { s.version = 1 }, VerdictUnknownKey, "ENOKEY"},
		{"signed attrs", func(s *signTemplate) { s.attrs = attrsOK }, VerdictOK, ""},
		{"signed attrs + unknown attr", func(s *signTemplate) {
			s.attrs = append(attrsOK, attr([]byte{0x2a, 0x03}, []byte{0x05, 0x00}))
		}, VerdictOK, ""},
		{"signed attrs + signingTime (no cert: not checked)", func(s *signTemplate) {
			s.attrs = append(attrsOK, attr(oidSigningTime, encodeTime(outside)))
		}, VerdictOK, ""},
		{"signingTime outside embedded cert validity", func(s *signTemplate) {
			s.version, s.sid = 1, issuerSerial
			s.certs = [][]byte{cert.Raw}
			s.attrs = append(attrsOK, attr(oidSigningTime, encodeTime(outside)))
		}, VerdictBadSig, "EKEYREJECTED"},
		{"signingTime inside embedded cert validity", func(s *signTemplate) {
			s.version, s.sid = 1, issuerSerial
			s.certs = [][]byte{cert.Raw}
			s.attrs = append(attrsOK, attr(oidSigningTime, encodeTime(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC))))
		}, VerdictOK, ""},
		{"smimeCapabilities", func(s *signTemplate) {
			s.attrs = append(attrsOK, attr(oidSMIMECapabilities, derSeq(derSeq(derOID([]byte{0x2a, 0x03})))))
		}, VerdictBadSig, "EKEYREJECTED"},
		{"missing contentType", func(s *signTemplate) { s.attrs = attrsOK[1:] }, VerdictFault, "EBADMSG"},
		{"missing messageDigest", func(s *signTemplate) { s.attrs = attrsOK[:1] }, VerdictFault, "EBADMSG"},
		{"repeated messageDigest", func(s *signTemplate) {
			s.attrs = append(attrsOK, attr(oidMessageDigest, tlvBytes(tagOctetString, md[:])))
		}, VerdictBadSig, "EKEYREJECTED"},
		{"wrong messageDigest", func(s *signTemplate) {
			bad := md
			bad[0] ^= 1
			s.attrs = [][]byte{attrsOK[0], attr(oidMessageDigest, tlvBytes(tagOctetString, bad[:]))}
		}, VerdictBadSig, "EKEYREJECTED"},
		{"short messageDigest", func(s *signTemplate) {
			s.attrs = [][]byte{attrsOK[0], attr(oidMessageDigest, tlvBytes(tagOctetString, md[:20]))}
		}, VerdictBadSig, "EBADMSG"},
		{"contentType attr not data", func(s *signTemplate) {
			s.attrs = [][]byte{attr(oidContentType, derOID(oidSignedData)), attrsOK[1]}
		}, VerdictFault, "EBADMSG"},
		{"bad signingTime", func(s *signTemplate) {
			s.attrs = append(attrsOK, attr(oidSigningTime, tlvBytes(tagUTCTime, []byte("991332000000Z"))))
		}, VerdictFault, "EBADMSG"},
		{"sha256WithRSAEncryption", func(s *signTemplate) {
			s.sigAlg = derSeq(derOID([]byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b}), derNull)
		}, VerdictFault, "ENOPKG"},
		{"sha1 digest refused", func(s *signTemplate) { s.digestOID = digestAlgs[0].oid }, VerdictFault, "ENOPKG"},
		{"unknown digest", func(s *signTemplate) { s.digestOID = []byte{0x2a, 0x03} }, VerdictFault, "ENOPKG"},
		{"embedded trusted cert", func(s *signTemplate) {
			s.version, s.sid, s.certs = 1, issuerSerial, [][]byte{cert.Raw}
		}, VerdictOK, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tmpl := base()
			c.edit(&tmpl)
			sig, err := tmpl.build()
			if err != nil {
				t.Fatal(err)
			}
			r := Verify(sig, content, trust)
			if r.Verdict != c.want || r.Errno != c.errno {
				t.Fatalf("got %v/%q (%s), want %v/%q", r.Verdict, r.Errno, r.Reason, c.want, c.errno)
			}
		})
	}
}

// TestVerifyEmbeddedUnknownSelfSigned: an embedded self-signed certificate
// that is not trusted gives UNKNOWNKEY even though it verifies the
// signature, and an embedded impostor of a trusted certificate's
// issuer+serial does not borrow its trust.
func TestVerifyEmbeddedUnknownSelfSigned(t *testing.T) {
	cert := fixtureCert(t)
	other, okey := newSelfSigned(t, "embedded stranger")
	content := []byte("program bytes")
	sig, err := Sign(content, okey, other, SignOptions{Scheme: SchemeHornet})
	if err != nil {
		t.Fatal(err)
	}
	sd, err := Parse(sig)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := signTemplate{content: content, key: okey, version: 1, digestOID: digestAlgs[1].oid,
		sigAlg: derSeq(derOID(oidRSAEncryption), derNull), certs: [][]byte{other.Raw},
		sid: derSeq(tlvBytes(tagSequence, sd.Signers[0].ID.Issuer), tlvBytes(tagInteger, sd.Signers[0].ID.Serial))}
	emb, err := tmpl.build()
	if err != nil {
		t.Fatal(err)
	}
	if r := Verify(emb, content, NewTrustStore(cert)); r.Verdict != VerdictUnknownKey {
		t.Fatalf("embedded untrusted self-signed: %v (%s)", r.Verdict, r.Reason)
	}
	if r := Verify(emb, content, NewTrustStore(other)); r.Verdict != VerdictOK || !r.Signer.Equal(other) {
		t.Fatalf("embedded trusted: %v (%s)", r.Verdict, r.Reason)
	}
	// Impostor: the fixture cert's issuer+serial, signed by another key.
	serial, issuer, _ := rawSerialIssuer(cert.RawTBSCertificate)
	tmpl.sid = derSeq(tlvBytes(tagSequence, issuer), tlvBytes(tagInteger, serial))
	tmpl.certs = nil
	imp, err := tmpl.build()
	if err != nil {
		t.Fatal(err)
	}
	if r := Verify(imp, content, NewTrustStore(cert)); r.Verdict != VerdictBadSig {
		t.Fatalf("impostor signer id: %v (%s)", r.Verdict, r.Reason)
	}
}

func TestVerifyECDSA(t *testing.T) {
	cert, key := newECDSASelfSigned(t, "ecdsa")
	content := []byte("ecdsa program")
	for _, s := range []Scheme{SchemeKernel, SchemeHornet} {
		sig, err := Sign(content, key, cert, SignOptions{Scheme: s})
		if err != nil {
			t.Fatal(err)
		}
		if r := Verify(sig, content, NewTrustStore(cert)); r.Verdict != VerdictOK {
			t.Fatalf("scheme %d: %v (%s)", s, r.Verdict, r.Reason)
		}
		if r := Verify(sig, []byte("other"), NewTrustStore(cert)); r.Verdict != VerdictBadSig {
			t.Fatalf("scheme %d changed content: %v", s, r.Verdict)
		}
	}
}

func TestVerifySizeLimit(t *testing.T) {
	f := loadFixture(t, "counter")
	big := append(bytes.Clone(f.sig), make([]byte, MaxSignatureSize-len(f.sig))...)
	if r := Verify(big, f.insn, NewTrustStore(fixtureCert(t))); r.Verdict != VerdictOK {
		t.Fatalf("8192 bytes with zero padding: %v (%s)", r.Verdict, r.Reason)
	}
	big = append(big, 0)
	if r := Verify(big, f.insn, NewTrustStore(fixtureCert(t))); r.Verdict != VerdictFault || r.Errno != "EINVAL" {
		t.Fatalf("8193 bytes: %v %s", r.Verdict, r.Errno)
	}
}

func TestLoadTrust(t *testing.T) {
	dir := t.TempDir()
	cert := fixtureCert(t)
	other, _ := newSelfSigned(t, "second")
	pemBoth, err := os.ReadFile(testutil.LskelFile(t, "keys/TEST_ONLY_signing_cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a.der"), other.Raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "b.pem"), pemBoth, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "README"), []byte("not a cert"), 0o600); err != nil {
		t.Fatal(err)
	}
	ts, err := LoadTrust(dir, testutil.LskelFile(t, "keys/TEST_ONLY_signing_cert.der"))
	if err != nil {
		t.Fatal(err)
	}
	got := ts.Certificates()
	if len(got) != 3 || !got[0].Equal(other) || !got[1].Equal(cert) || !got[2].Equal(cert) {
		t.Fatalf("loaded %d certificates in the wrong order", len(got))
	}
	if _, err := LoadTrust(filepath.Join(dir, "README")); err == nil {
		t.Fatal("a file without a certificate must be an error")
	}
	if _, err := LoadTrust(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("a missing path must be an error")
	}
	f := loadFixture(t, "pair")
	if r := Verify(f.sig, f.insn, ts); r.Verdict != VerdictOK || !r.Signer.Equal(cert) {
		t.Fatalf("verify with loaded store: %v", r.Verdict)
	}
}
