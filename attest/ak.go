package attest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"math/big"

	"github.com/google/go-tpm/tpm2"
)

// akKey is an attestation key the verifier accepts: a fixedTPM restricted
// signing key, ECC NIST P-256 or RSA 2048, with its signing scheme.
type akKey struct {
	pub    crypto.PublicKey // *ecdsa.PublicKey or *rsa.PublicKey
	scheme uint16           // tpmAlgECDSA or tpmAlgRSASSA; 0 if the key fixes none
	hash   crypto.Hash      // the scheme's hash; 0 if the key fixes none
}

// parseAK reads a TPMT_PUBLIC (TPM 2.0 Part 2 §12.2.4) and checks that it is
// an attestation key: a signing key that is restricted (the TPM signs only
// digests it made itself, such as quotes, never a caller's digest that
// could imitate one; Part 1 §25.2), not a decryption key, and fixedTPM (it
// never existed outside a TPM). Any departure is AKNotRestricted.
func parseAK(b []byte) (*akKey, error) {
	pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](b)
	if err != nil {
		return nil, fail(AKNotRestricted, err, "ak public area does not parse")
	}
	if re, err := marshalPublic(pub); err != nil || !bytes.Equal(re, b) {
		return nil, fail(AKNotRestricted, err, "ak public area is not canonical (%d bytes, %d trailing or reordered)", len(b), len(b)-len(re))
	}
	a := pub.ObjectAttributes
	if !a.Restricted || !a.SignEncrypt || a.Decrypt || !a.FixedTPM {
		return nil, fail(AKNotRestricted, nil, "attributes restricted=%v sign=%v decrypt=%v fixedTPM=%v, want a fixedTPM restricted signing key",
			a.Restricted, a.SignEncrypt, a.Decrypt, a.FixedTPM)
	}
	switch pub.Type {
	case tpm2.TPMAlgECC:
		return eccAK(pub)
	case tpm2.TPMAlgRSA:
		return rsaAK(pub)
	}
	return nil, fail(AKNotRestricted, nil, "key type %#04x, want ECC or RSA", uint16(pub.Type))
}

// marshalPublic re-encodes a parsed public area, to detect trailing bytes.
// go-tpm's Marshal panics on values it cannot encode; a value it has just
// decoded is always encodable, and the recover keeps that an error if not.
func marshalPublic(pub *tpm2.TPMTPublic) (b []byte, err error) {
	defer func() {
		if recover() != nil {
			err = errors.New("re-encoding failed")
		}
	}()
	return tpm2.Marshal(pub), nil
}

func eccAK(pub *tpm2.TPMTPublic) (*akKey, error) {
	parms, err := pub.Parameters.ECCDetail()
	if err != nil {
		return nil, fail(AKNotRestricted, err, "ecc parameters")
	}
	if parms.CurveID != tpm2.TPMECCNistP256 {
		return nil, fail(AKNotRestricted, nil, "curve %#04x, want NIST P-256", uint16(parms.CurveID))
	}
	point, err := pub.Unique.ECC()
	if err != nil {
		return nil, fail(AKNotRestricted, err, "ecc point")
	}
	const size = 32
	x, y := point.X.Buffer, point.Y.Buffer
	if len(x) > size || len(y) > size {
		return nil, fail(AKNotRestricted, nil, "ecc point coordinates of %d and %d bytes", len(x), len(y))
	}
	raw := make([]byte, 1+2*size)
	raw[0] = 4
	copy(raw[1+size-len(x):1+size], x)
	copy(raw[1+2*size-len(y):], y)
	key, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), raw)
	if err != nil {
		return nil, fail(AKNotRestricted, err, "ecc point is not on P-256")
	}
	k := &akKey{pub: key}
	switch parms.Scheme.Scheme {
	case tpm2.TPMAlgNull:
	case tpm2.TPMAlgECDSA:
		d, err := parms.Scheme.Details.ECDSA()
		if err != nil {
			return nil, fail(AKNotRestricted, err, "ecdsa scheme")
		}
		if k.hash, err = schemeHash(d.HashAlg); err != nil {
			return nil, err
		}
		k.scheme = tpmAlgECDSA
	default:
		return nil, fail(AKNotRestricted, nil, "ecc signing scheme %#04x, want ECDSA", uint16(parms.Scheme.Scheme))
	}
	return k, nil
}

func rsaAK(pub *tpm2.TPMTPublic) (*akKey, error) {
	parms, err := pub.Parameters.RSADetail()
	if err != nil {
		return nil, fail(AKNotRestricted, err, "rsa parameters")
	}
	n, err := pub.Unique.RSA()
	if err != nil {
		return nil, fail(AKNotRestricted, err, "rsa modulus")
	}
	if parms.KeyBits != 2048 || len(n.Buffer) != 256 || n.Buffer[0]&0x80 == 0 {
		return nil, fail(AKNotRestricted, nil, "rsa key of %d bits with a %d-byte modulus, want 2048", parms.KeyBits, len(n.Buffer))
	}
	e := int(parms.Exponent)
	if e == 0 {
		e = 65537 // the TPM's default exponent (Part 2 §12.2.3.5)
	}
	if e < 3 || e%2 == 0 {
		return nil, fail(AKNotRestricted, nil, "rsa exponent %d", e)
	}
	k := &akKey{pub: &rsa.PublicKey{N: new(big.Int).SetBytes(n.Buffer), E: e}}
	switch parms.Scheme.Scheme {
	case tpm2.TPMAlgNull:
	case tpm2.TPMAlgRSASSA:
		d, err := parms.Scheme.Details.RSASSA()
		if err != nil {
			return nil, fail(AKNotRestricted, err, "rsassa scheme")
		}
		if k.hash, err = schemeHash(d.HashAlg); err != nil {
			return nil, err
		}
		k.scheme = tpmAlgRSASSA
	default:
		return nil, fail(AKNotRestricted, nil, "rsa signing scheme %#04x, want RSASSA", uint16(parms.Scheme.Scheme))
	}
	return k, nil
}

func schemeHash(alg tpm2.TPMIAlgHash) (crypto.Hash, error) {
	h, ok := signatureHash(uint16(alg))
	if !ok {
		return 0, fail(AKNotRestricted, nil, "scheme hash %#04x, want SHA-256 or stronger", uint16(alg))
	}
	return h, nil
}

// checkPinned compares the evidence's AK with the one the verifier pins:
// the TPMT_PUBLIC bytes, or the public key.
func checkPinned(opts *VerifyOptions, evPublic []byte, k *akKey) error {
	if opts.AKPublic != nil && !bytes.Equal(opts.AKPublic, evPublic) {
		return fail(AKMismatch, nil, "evidence ak public area differs from the pinned one")
	}
	if opts.AKKey != nil {
		eq, ok := opts.AKKey.(interface{ Equal(crypto.PublicKey) bool })
		if !ok {
			return fail(BadOptions, nil, "pinned ak key of type %T", opts.AKKey)
		}
		if !eq.Equal(k.pub) {
			return fail(AKMismatch, nil, "evidence ak key differs from the pinned key")
		}
	}
	return nil
}

// verifySignature checks sig over msg with the AK. The signature's scheme
// and hash must be the key's own, when the key fixes them.
func verifySignature(k *akKey, sig *signature, msg []byte) error {
	if k.scheme != 0 && (sig.alg != k.scheme || sig.hash != k.hash) {
		return fail(BadSignature, nil, "signature scheme %#04x/%v, the key signs with %#04x/%v", sig.alg, sig.hash, k.scheme, k.hash)
	}
	var buf [64]byte
	digest := sum(sig.hash, msg, buf[:0])
	switch pub := k.pub.(type) {
	case *ecdsa.PublicKey:
		if sig.alg != tpmAlgECDSA {
			return fail(BadSignature, nil, "rsa signature for an ecc key")
		}
		if !ecdsa.VerifyASN1(pub, digest, ecdsaSignatureDER(sig.r, sig.s)) {
			return fail(BadSignature, nil, "ecdsa signature does not verify")
		}
	case *rsa.PublicKey:
		if sig.alg != tpmAlgRSASSA {
			return fail(BadSignature, nil, "ecdsa signature for an rsa key")
		}
		if err := rsa.VerifyPKCS1v15(pub, sig.hash, digest, sig.rsa); err != nil {
			return fail(BadSignature, err, "rsassa signature does not verify")
		}
	default:
		return fail(BadSignature, nil, "unsupported key %T", k.pub)
	}
	return nil
}

// sum appends the h hash of msg to out: with the one-shot functions for
// the quote hashes (no hash state on the heap), else through h.New on a
// copy, so that neither msg nor out escapes to the heap through the hash
// interface (callers pass stack buffers).
func sum(h crypto.Hash, msg, out []byte) []byte {
	switch h {
	case crypto.SHA256:
		d := sha256.Sum256(msg)
		return append(out, d[:]...)
	case crypto.SHA384:
		d := sha512.Sum384(msg)
		return append(out, d[:]...)
	case crypto.SHA512:
		d := sha512.Sum512(msg)
		return append(out, d[:]...)
	}
	d := h.New()
	d.Write(bytes.Clone(msg))
	return append(out, d.Sum(nil)...)
}

// ecdsaSignatureDER encodes the r and s of a TPMS_SIGNATURE_ECDSA as the
// DER SEQUENCE { r INTEGER, s INTEGER } that ecdsa.VerifyASN1 reads, as
// ecdsa.Verify encodes its big.Int arguments: unsigned big-endian values
// without leading zeros (zero as one zero byte, which never verifies).
func ecdsaSignatureDER(r, s []byte) []byte {
	r, s = bytes.TrimLeft(r, "\x00"), bytes.TrimLeft(s, "\x00")
	body := derIntLen(r) + derIntLen(s)
	out := make([]byte, 0, 4+body)
	out = append(out, 0x30)
	out = appendDERLen(out, body)
	return appendDERInt(appendDERInt(out, r), s)
}

// derIntLen is the encoded length of the unsigned integer v (no leading
// zeros) as a DER INTEGER, header included.
func derIntLen(v []byte) int {
	n := len(v)
	if n == 0 || v[0]&0x80 != 0 {
		n++ // a zero, or a sign byte for the high bit
	}
	return 1 + derLenLen(n) + n
}

func appendDERInt(out, v []byte) []byte {
	n := len(v)
	pad := n == 0 || v[0]&0x80 != 0
	if pad {
		n++
	}
	out = appendDERLen(append(out, 0x02), n)
	if pad {
		out = append(out, 0)
	}
	return append(out, v...)
}

func derLenLen(n int) int {
	switch {
	case n < 0x80:
		return 1
	case n < 0x100:
		return 2
	}
	return 3
}

func appendDERLen(out []byte, n int) []byte {
	if n < 0x80 {
		return append(out, byte(n))
	}
	if n < 0x100 {
		return append(out, 0x81, byte(n))
	}
	return append(out, 0x82, byte(n>>8), byte(n))
}
