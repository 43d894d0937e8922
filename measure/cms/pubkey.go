package cms

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"errors"
	"fmt"
)

var (
	errKeyType      = errors.New("key type does not match signature algorithm")
	errUnsupportedK = errors.New("unsupported public key or algorithm")
)

// verifyDigest checks a signature over a precomputed digest the way the
// kernel's public_key_verify_signature does for the algorithms it knows:
// "rsa" is RSASSA-PKCS1-v1_5 with a DigestInfo for the digest algorithm,
// "ecdsa" is an X9.62 (DER Ecdsa-Sig-Value) signature over the digest.
// The hash named by an ecdsa-with-* OID is ignored; the digest algorithm
// field decides, as in the kernel.
func verifyDigest(pub crypto.PublicKey, pkey string, h crypto.Hash, digest, sig []byte) error {
	switch pkey {
	case "rsa":
		k, ok := pub.(*rsa.PublicKey)
		if !ok {
			return errKeyType
		}
		if err := rsa.VerifyPKCS1v15(k, h, digest, sig); err != nil {
			return fmt.Errorf("rsa: %w", err)
		}
		return nil
	case "ecdsa":
		k, ok := pub.(*ecdsa.PublicKey)
		if !ok {
			return errKeyType
		}
		if !ecdsa.VerifyASN1(k, digest, sig) {
			return errors.New("ecdsa: verification error")
		}
		return nil
	}
	return errUnsupportedK
}
