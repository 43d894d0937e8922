package attest

import "crypto"

// AKPublicKey returns the public key of an attestation key's TPMT_PUBLIC
// (*ecdsa.PublicKey or *rsa.PublicKey), after the checks Verify makes on
// the evidence's AK: canonical encoding, a fixedTPM restricted signing key,
// NIST P-256 or RSA 2048. It is how a pinned AK is handed to tools that
// take a PEM public key, such as tpm2_checkquote.
func AKPublicKey(tpmtPublic []byte) (crypto.PublicKey, error) {
	k, err := parseAK(tpmtPublic)
	if err != nil {
		return nil, err
	}
	return k.pub, nil
}
