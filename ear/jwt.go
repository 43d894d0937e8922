package ear

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"
)

// Algorithm is a JWS signature algorithm (RFC 7518 §3, RFC 8037 §3.1).
type Algorithm string

// The algorithms Sign and Verify support.
const (
	ES256 Algorithm = "ES256" // ECDSA P-256 with SHA-256
	ES384 Algorithm = "ES384" // ECDSA P-384 with SHA-384
	PS256 Algorithm = "PS256" // RSASSA-PSS with SHA-256
	RS256 Algorithm = "RS256" // RSASSA-PKCS1-v1_5 with SHA-256
	EdDSA Algorithm = "EdDSA" // Ed25519
)

// algorithms are the algorithms Verify accepts, whatever the key: the key
// then decides (an EC key verifies no RSA signature).
var algorithms = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.PS256, jose.RS256, jose.EdDSA}

// MinRSABits is the smallest RSA modulus Sign and Verify accept.
const MinRSABits = 2048

// MaxTokenSize bounds a token Verify reads: a verdict with a long history
// is large, a token past this is refused before any parsing.
const MaxTokenSize = 32 << 20

// ErrSignature is wrapped by every error of a token that is not a JWS in
// compact serialisation signed with the given key by an accepted
// algorithm.
var ErrSignature = errors.New("token signature invalid")

// DefaultAlgorithm returns the algorithm Sign uses for a key when none is
// asked for: ES256 for P-256, ES384 for P-384, PS256 for RSA, EdDSA for
// Ed25519.
func DefaultAlgorithm(pub crypto.PublicKey) (Algorithm, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return ES256, nil
		case elliptic.P384():
			return ES384, nil
		}
		return "", fmt.Errorf("ear: ECDSA curve %s not supported (P-256, P-384)", k.Curve.Params().Name)
	case *rsa.PublicKey:
		if k.N.BitLen() < MinRSABits {
			return "", fmt.Errorf("ear: RSA key of %d bits, want at least %d", k.N.BitLen(), MinRSABits)
		}
		return PS256, nil
	case ed25519.PublicKey:
		return EdDSA, nil
	}
	return "", fmt.Errorf("ear: key type %T not supported (ECDSA P-256/P-384, RSA, Ed25519)", pub)
}

// fits reports whether alg is an algorithm of key pub.
func fits(alg Algorithm, pub crypto.PublicKey) bool {
	def, err := DefaultAlgorithm(pub)
	if err != nil {
		return false
	}
	if def == PS256 {
		return alg == PS256 || alg == RS256
	}
	return alg == def
}

// Sign validates the claims-set and signs it as a JWT with key: a JWS in
// compact serialisation whose protected header has alg, typ "JWT" and, as
// kid, the key's RFC 7638 thumbprint (SHA-256, base64url). alg "" means
// DefaultAlgorithm of the key; an algorithm that is not the key's is an
// error. A crypto.Signer other than the standard library's keys (an HSM's)
// is used through its Sign method.
func Sign(c *Claims, key crypto.Signer, alg Algorithm) (string, error) {
	if err := c.Validate(); err != nil {
		return "", fmt.Errorf("ear/sign: %w", err)
	}
	if key == nil {
		return "", errors.New("ear/sign: no key")
	}
	pub := key.Public()
	if alg == "" {
		var err error
		if alg, err = DefaultAlgorithm(pub); err != nil {
			return "", err
		}
	}
	if !fits(alg, pub) {
		return "", fmt.Errorf("ear/sign: algorithm %s does not fit a %T key", alg, pub)
	}
	kid, err := KeyID(pub)
	if err != nil {
		return "", err
	}
	var sk any = cryptosigner.Opaque(key)
	switch k := key.(type) {
	case *ecdsa.PrivateKey, *rsa.PrivateKey, ed25519.PrivateKey:
		sk = k
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("ear/sign: %w", err)
	}
	opts := (&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), kid)
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: sk}, opts)
	if err != nil {
		return "", fmt.Errorf("ear/sign: %w", err)
	}
	obj, err := s.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("ear/sign: %w", err)
	}
	tok, err := obj.CompactSerialize()
	if err != nil {
		return "", fmt.Errorf("ear/sign: %w", err)
	}
	return tok, nil
}

// KeyID returns the RFC 7638 JWK thumbprint (SHA-256, base64url without
// padding) of a public key: the kid Sign writes.
func KeyID(pub crypto.PublicKey) (string, error) {
	tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("ear: key id: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// VerifyOptions configure Verify. The zero value checks exp against the
// current time.
type VerifyOptions struct {
	// Now is the time exp is checked against; nil means time.Now.
	Now func() time.Time
}

// Token is a verified EAR: its claims and the protected header's
// algorithm and key id.
type Token struct {
	Algorithm Algorithm
	KeyID     string
	Claims    *Claims
}

// Verify checks a token: a JWS in compact serialisation of at most
// MaxTokenSize bytes, signed by key (an *ecdsa.PublicKey, *rsa.PublicKey
// or ed25519.PublicKey, as ParsePublicKey returns) with an accepted
// algorithm of that key, and no critical header; then its payload, which
// must be a claims-set that passes Validate and, when it has exp, is not
// past it. A bad token, signature or algorithm wraps ErrSignature; claims
// that do not conform wrap ErrClaims. Nothing of the payload is read
// before the signature verified.
func Verify(token string, key crypto.PublicKey, opts VerifyOptions) (*Token, error) {
	if _, err := DefaultAlgorithm(key); err != nil {
		return nil, fmt.Errorf("ear/verify: %w", err)
	}
	obj, h, err := parseJWS(token)
	if err != nil {
		return nil, err
	}
	alg := Algorithm(h.Algorithm)
	if !fits(alg, key) {
		return nil, fmt.Errorf("ear/verify: %w: algorithm %s does not fit the %T key", ErrSignature, alg, key)
	}
	payload, err := obj.Verify(key)
	if err != nil {
		return nil, fmt.Errorf("ear/verify: %w: %v", ErrSignature, err)
	}
	c, err := ParseClaims(payload)
	if err != nil {
		return nil, fmt.Errorf("ear/verify: %w", err)
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	if c.Expires != 0 && now().Unix() >= c.Expires {
		return nil, fmt.Errorf("ear/verify: %w: expired at %s", ErrClaims, time.Unix(c.Expires, 0).UTC().Format(time.RFC3339))
	}
	return &Token{Algorithm: alg, KeyID: h.KeyID, Claims: c}, nil
}

// parseJWS parses a token as a JWS in compact serialisation with one
// signature by an accepted algorithm; the signature is not checked.
func parseJWS(token string) (*jose.JSONWebSignature, jose.Header, error) {
	if len(token) > MaxTokenSize {
		return nil, jose.Header{}, fmt.Errorf("ear/verify: %w: %d bytes, limit %d", ErrSignature, len(token), MaxTokenSize)
	}
	obj, err := jose.ParseSignedCompact(token, algorithms)
	if err != nil {
		return nil, jose.Header{}, fmt.Errorf("ear/verify: %w: %v", ErrSignature, err)
	}
	if len(obj.Signatures) != 1 {
		return nil, jose.Header{}, fmt.Errorf("ear/verify: %w: %d signatures", ErrSignature, len(obj.Signatures))
	}
	return obj, obj.Signatures[0].Protected, nil
}

// ParseClaims decodes a JWT payload as a claims-set and validates it.
// Numbers that are not integers (a floating-point iat or exp, which the
// draft forbids) and claims out of the int8 range are errors; unknown
// claims are ignored, as the draft requires.
func ParseClaims(payload []byte) (*Claims, error) {
	dec := json.NewDecoder(bytes.NewReader(payload))
	var c Claims
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrClaims, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: data after the claims-set", ErrClaims)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// ParsePublicKey reads a verifier's public key: PEM or DER, a
// SubjectPublicKeyInfo ("PUBLIC KEY") or an X.509 certificate (its key).
// The key must be one Verify supports.
func ParsePublicKey(b []byte) (crypto.PublicKey, error) {
	der := b
	if blk, _ := pem.Decode(b); blk != nil {
		if blk.Type != "PUBLIC KEY" && blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("ear: PEM block %q, want PUBLIC KEY or CERTIFICATE", blk.Type)
		}
		der = blk.Bytes
	}
	var pub crypto.PublicKey
	if k, err := x509.ParsePKIXPublicKey(der); err == nil {
		pub = k
	} else if cert, cerr := x509.ParseCertificate(der); cerr == nil {
		pub = cert.PublicKey
	} else {
		return nil, fmt.Errorf("ear: neither a public key nor a certificate: %v", err)
	}
	if _, err := DefaultAlgorithm(pub); err != nil {
		return nil, err
	}
	return pub, nil
}

// ParsePrivateKey reads a verifier's signing key: PEM or DER, PKCS#8,
// PKCS#1 (RSA) or SEC 1 (EC). The key must be one Sign supports (P-256,
// P-384, RSA of at least MinRSABits, Ed25519).
func ParsePrivateKey(b []byte) (crypto.Signer, error) {
	der := b
	if blk, _ := pem.Decode(b); blk != nil {
		switch blk.Type {
		case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY":
		default:
			return nil, fmt.Errorf("ear: PEM block %q, want PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY", blk.Type)
		}
		der = blk.Bytes
	}
	var key crypto.Signer
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("ear: a %T cannot sign", k)
		}
		key = s
	} else if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		key = k
	} else if k, err := x509.ParseECPrivateKey(der); err == nil {
		key = k
	} else {
		return nil, errors.New("ear: not a PKCS#8, PKCS#1 or SEC 1 private key")
	}
	if _, err := DefaultAlgorithm(key.Public()); err != nil {
		return nil, err
	}
	return key, nil
}
