package attest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
)

// ekChain issues a root, an intermediate and an EK certificate shaped as
// the TCG EK Credential Profile says: empty subject, the TPM identity in a
// critical subjectAltName directoryName, the tcg-kp-EKCertificate usage.
func ekChain(tb testing.TB, ekPub any) (root, inter *x509.Certificate, ekDER []byte) {
	tb.Helper()
	now := time.Now()
	mk := func(tmpl, parent *x509.Certificate, pub any, signer *ecdsa.PrivateKey) *x509.Certificate {
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
		if err != nil {
			tb.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			tb.Fatal(err)
		}
		return c
	}
	rootKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	interKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := func(cn string, serial int64) *x509.Certificate {
		return &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn}, NotBefore: now.Add(-time.Hour),
			NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	}
	root = mk(ca("test EK root", 1), ca("test EK root", 1), &rootKey.PublicKey, rootKey)
	inter = mk(ca("test EK issuer", 2), root, &interKey.PublicKey, rootKey)
	// subjectAltName: directoryName { tcg-at-tpmManufacturer "id:00001014" }
	type atv struct {
		Type  asn1.ObjectIdentifier
		Value string `asn1:"utf8"`
	}
	rdn, err := asn1.Marshal([]atv{{asn1.ObjectIdentifier{2, 23, 133, 2, 1}, "id:00001014"}})
	if err != nil {
		tb.Fatal(err)
	}
	rdnSeq, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: mustSet(tb, rdn)})
	dirName, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: rdnSeq})
	san, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: dirName})
	ek := &x509.Certificate{SerialNumber: big.NewInt(3), NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageKeyEncipherment, UnknownExtKeyUsage: []asn1.ObjectIdentifier{oidTCGKpEKCertificate},
		ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 17}, Critical: true, Value: san}}}
	return root, inter, mk(ek, inter, ekPub, interKey).Raw
}

// mustSet wraps an encoded SEQUENCE OF as a SET (the RDN).
func mustSet(tb testing.TB, seqOf []byte) []byte {
	tb.Helper()
	var raw asn1.RawValue
	if _, err := asn1.Unmarshal(seqOf, &raw); err != nil {
		tb.Fatal(err)
	}
	set, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSet, IsCompound: true, Bytes: raw.Bytes})
	if err != nil {
		tb.Fatal(err)
	}
	return set
}

// TestVerifyEKCertificate proves a profile-shaped EK certificate verifies
// through its intermediate to its root, and is refused without the
// intermediate, against another root, and after it expired.
func TestVerifyEKCertificate(t *testing.T) {
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	root, inter, der := ekChain(t, &key.PublicKey)
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(root)
	inters.AddCert(inter)
	c, err := VerifyEKCertificate(der, roots, inters, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !key.PublicKey.Equal(c.PublicKey) {
		t.Error("certificate key is not the EK")
	}
	otherRoot, _, _ := ekChain(t, &key.PublicKey)
	others := x509.NewCertPool()
	others.AddCert(otherRoot)
	for name, f := range map[string]func() error{
		"no intermediate": func() error { _, err := VerifyEKCertificate(der, roots, nil, time.Now()); return err },
		"other root":      func() error { _, err := VerifyEKCertificate(der, others, inters, time.Now()); return err },
		"expired": func() error {
			_, err := VerifyEKCertificate(der, roots, inters, time.Now().Add(2*time.Hour))
			return err
		},
		"not DER": func() error { _, err := VerifyEKCertificate(der[1:], roots, inters, time.Now()); return err },
	} {
		if err := f(); !errors.Is(err, ErrEnroll) {
			t.Errorf("%s: %v, want ErrEnroll", name, err)
		}
	}
}

// TestMakeCredential checks what MakeCredential refuses: an AK that is not
// a restricted signing key, EK keys no default template makes, and secrets
// of no or too many bytes. (That a TPM activates what it makes is proven
// against the simulator and swtpm by internal/tpm and cmd/bpfattest.)
func TestMakeCredential(t *testing.T) {
	ak := readCaptured(t, evidenceFiles(t)[0]).Evidence.AKPublic
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, pub := range []any{&rsaKey.PublicKey, &ecKey.PublicKey} {
		c, err := MakeCredential(rand.Reader, pub, ak, make([]byte, 32))
		if err != nil || len(c.CredentialBlob) == 0 || len(c.EncryptedSecret) == 0 {
			t.Errorf("%T: %v", pub, err)
		}
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	unrestricted, err := tpm2.Unmarshal[tpm2.TPMTPublic](ak)
	if err != nil {
		t.Fatal(err)
	}
	unrestricted.ObjectAttributes.Restricted = false
	for name, c := range map[string]struct {
		ek     any
		ak     []byte
		secret []byte
	}{
		"p384 ek":         {&p384.PublicKey, ak, make([]byte, 32)},
		"rsa 1024 ek":     {&small.PublicKey, ak, make([]byte, 32)},
		"ed25519-ish ek":  {"not a key", ak, make([]byte, 32)},
		"unrestricted ak": {&rsaKey.PublicKey, tpm2.Marshal(unrestricted), make([]byte, 32)},
		"garbage ak":      {&rsaKey.PublicKey, ak[:10], make([]byte, 32)},
		"no secret":       {&rsaKey.PublicKey, ak, nil},
		"long secret":     {&rsaKey.PublicKey, ak, make([]byte, 33)},
	} {
		if _, err := MakeCredential(rand.Reader, c.ek, c.ak, c.secret); !errors.Is(err, ErrEnroll) {
			t.Errorf("%s: %v, want ErrEnroll", name, err)
		}
	}
}

// FuzzEnroll feeds arbitrary EK certificate and AK bytes to the enrolment
// parsers: errors, never panics.
func FuzzEnroll(f *testing.F) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	root, _, der := ekChain(f, &key.PublicKey)
	f.Add(der, readCaptured(f, evidenceFiles(f)[0]).Evidence.AKPublic)
	roots := x509.NewCertPool()
	roots.AddCert(root)
	f.Fuzz(func(t *testing.T, cert, ak []byte) {
		c, err := VerifyEKCertificate(cert, roots, nil, time.Now())
		pub := any(&key.PublicKey)
		if err == nil {
			pub = c.PublicKey
		}
		MakeCredential(rand.Reader, pub, ak, make([]byte, 32))
	})
}
