package attest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/google/go-tpm/tpm2"
)

// ErrEnroll is wrapped by every enrolment error: an EK certificate that
// does not chain to the verifier's roots, an EK key of a kind no default
// template makes, an AK that is not a restricted signing key.
var ErrEnroll = errors.New("enrolment refused")

// oidTCGKpEKCertificate is tcg-kp-EKCertificate (TCG EK Credential Profile
// for TPM Family 2.0, §3.2.16: 2.23.133.8.1), the extended key usage of
// EK certificates.
var oidTCGKpEKCertificate = asn1.ObjectIdentifier{2, 23, 133, 8, 1}

// VerifyEKCertificate parses an EK certificate as the TPM stores it (DER,
// possibly framed by the TCG stored-certificate header or padded: see
// ParseEKCertificate) and checks that it chains to one of roots through
// intermediates, at time now. The EK
// Credential Profile's extended key usage (tcg-kp-EKCertificate) is
// accepted besides the usual ones; an EK certificate with an empty subject
// carries its TPM identity in a critical subjectAltName directoryName,
// which is accepted too. It returns the certificate; its public key is
// the EK's.
//
// What this proves: a manufacturer (or whoever holds the roots) certified
// that the key is the endorsement key of a real TPM. It says nothing about
// the AK: MakeCredential and the agent's ActivateCredential tie the AK to
// this EK.
func VerifyEKCertificate(der []byte, roots, intermediates *x509.CertPool, now time.Time) (*x509.Certificate, error) {
	cert, err := ParseEKCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("attest/enroll: %w: %w", ErrEnroll, err)
	}
	// Go refuses critical extensions it does not process; for an EK
	// certificate the only expected one is the subjectAltName of the TPM
	// identity (OID 2.5.29.17), which Go parses but leaves "unhandled"
	// when it holds only a directoryName.
	var unhandled []asn1.ObjectIdentifier
	for _, oid := range cert.UnhandledCriticalExtensions {
		if !oid.Equal(asn1.ObjectIdentifier{2, 5, 29, 17}) {
			unhandled = append(unhandled, oid)
		}
	}
	c := *cert
	c.UnhandledCriticalExtensions = unhandled
	if len(c.UnknownExtKeyUsage) > 0 {
		c.UnknownExtKeyUsage = nil
		for _, oid := range cert.UnknownExtKeyUsage {
			if !oid.Equal(oidTCGKpEKCertificate) {
				c.UnknownExtKeyUsage = append(c.UnknownExtKeyUsage, oid)
			}
		}
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: roots, Intermediates: intermediates, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("attest/enroll: %w: ek certificate %q: %w", ErrEnroll, cert.Subject, err)
	}
	return cert, nil
}

// Credential is an enrolment challenge for one AK and one EK: the
// TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET contents that
// TPM2_ActivateCredential takes (TPM 2.0 Part 1 §24, "Credential
// Protection"; Part 3 §12.5).
type Credential struct {
	CredentialBlob  []byte
	EncryptedSecret []byte
}

// MakeCredential protects secret so that only a TPM holding the private
// part of ekPub (the EK certificate's key: RSA 2048 or ECC NIST P-256, from
// the TCG default EK templates) recovers it, and only while an object
// whose name is the AK's is loaded in that TPM. The AK must be a
// restricted signing key (as Verify requires). It does what
// TPM2_MakeCredential does, in software: the verifier needs no TPM.
//
// The secret returned by the agent proves the AK is in the same TPM as the
// EK; comparing it in constant time is the caller's job.
func MakeCredential(rand io.Reader, ekPub any, akPublic, secret []byte) (*Credential, error) {
	if _, err := parseAK(akPublic); err != nil {
		return nil, fmt.Errorf("attest/enroll: %w: %w", ErrEnroll, err)
	}
	ak, err := tpm2.Unmarshal[tpm2.TPMTPublic](akPublic)
	if err != nil {
		return nil, fmt.Errorf("attest/enroll: %w: ak: %w", ErrEnroll, err)
	}
	name, err := tpm2.ObjectName(ak)
	if err != nil {
		return nil, fmt.Errorf("attest/enroll: %w: ak name: %w", ErrEnroll, err)
	}
	ek, err := ekPublicArea(ekPub)
	if err != nil {
		return nil, err
	}
	key, err := tpm2.ImportEncapsulationKey(ek)
	if err != nil {
		return nil, fmt.Errorf("attest/enroll: %w: ek: %w", ErrEnroll, err)
	}
	if len(secret) == 0 || len(secret) > 32 {
		return nil, fmt.Errorf("attest/enroll: %w: secret of %d bytes, want 1 to 32", ErrEnroll, len(secret))
	}
	blob, enc, err := tpm2.CreateCredential(rand, key, name.Buffer, secret)
	if err != nil {
		return nil, fmt.Errorf("attest/enroll: %w", err)
	}
	return &Credential{CredentialBlob: blob, EncryptedSecret: enc}, nil
}

// ekPublicArea rebuilds the EK's TPMT_PUBLIC from its public key and the
// default template that makes such a key: the name algorithm and
// symmetric parameters of the template decide the credential's
// encryption, so they must be the TPM's.
func ekPublicArea(pub any) (*tpm2.TPMTPublic, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() != 2048 || k.E != 65537 {
			return nil, fmt.Errorf("attest/enroll: %w: ek is rsa %d bits exponent %d, want the default template's 2048 bits, 65537", ErrEnroll, k.N.BitLen(), k.E)
		}
		t := tpm2.RSAEKTemplate
		t.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: k.N.FillBytes(make([]byte, 256))})
		return &t, nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("attest/enroll: %w: ek curve %s, want the default template's P-256", ErrEnroll, k.Curve.Params().Name)
		}
		raw, err := k.Bytes()
		if err != nil {
			return nil, fmt.Errorf("attest/enroll: %w: ek: %w", ErrEnroll, err)
		}
		t := tpm2.ECCEKTemplate
		t.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
			X: tpm2.TPM2BECCParameter{Buffer: raw[1:33]},
			Y: tpm2.TPM2BECCParameter{Buffer: raw[33:]},
		})
		return &t, nil
	}
	return nil, fmt.Errorf("attest/enroll: %w: ek key of type %T", ErrEnroll, pub)
}
