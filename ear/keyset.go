package ear

import (
	"bytes"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"

	jose "github.com/go-jose/go-jose/v4"
)

// Key sets. A verifier that signs EARs publishes its public key as a JSON
// Web Key Set (RFC 7517 §5): the fleet service at GET /api/v1/ear/keys. A
// receiver of its EARs reads the set and verifies each token with the key
// the token's kid names (VerifyWithKeySet), so that a key rotation is a
// new entry in the set, not a new file on every receiver.

// KeySetMediaType is the media type of a served key set (RFC 7517 §8.5.1).
const KeySetMediaType = "application/jwk-set+json"

// MaxKeySetSize bounds a key set ParseKeySet reads; MaxKeySetKeys the
// keys in it. A verifier publishes one key, or a few during a rotation.
const (
	MaxKeySetSize = 1 << 20
	MaxKeySetKeys = 64
)

// ErrKeySet is wrapped by every error of ParseKeySet and of a token whose
// kid names no key of the set.
var ErrKeySet = errors.New("key set")

// PublicKey is a verifier's public key with the algorithm it signs with,
// as a key set lists it.
type PublicKey struct {
	Key       crypto.PublicKey
	Algorithm Algorithm
}

// MarshalKeySet returns the JWK Set of keys: each with kid its RFC 7638
// thumbprint (KeyID, what Sign puts in a token's header), its alg and use
// "sig". alg "" means DefaultAlgorithm of the key.
func MarshalKeySet(keys ...PublicKey) ([]byte, error) {
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{}}
	for _, k := range keys {
		alg := k.Algorithm
		if alg == "" {
			var err error
			if alg, err = DefaultAlgorithm(k.Key); err != nil {
				return nil, fmt.Errorf("ear/key set: %w", err)
			}
		}
		if !fits(alg, k.Key) {
			return nil, fmt.Errorf("ear/key set: algorithm %s does not fit the %T key", alg, k.Key)
		}
		kid, err := KeyID(k.Key)
		if err != nil {
			return nil, fmt.Errorf("ear/key set: %w", err)
		}
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.Key, KeyID: kid, Algorithm: string(alg), Use: "sig"})
	}
	b, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("ear/key set: %w", err)
	}
	return b, nil
}

// KeySet is a parsed key set: public keys by kid.
type KeySet struct {
	keys map[string]PublicKey
}

// ParseKeySet reads a JWK Set of at most MaxKeySetSize bytes and
// MaxKeySetKeys keys. Every key must be a public key Verify supports with
// a kid of its own; a key without "use" or with "sig" is taken, one for
// encryption is refused, as is a private key (a set that carries one was
// published by mistake, and using it would hide that).
func ParseKeySet(b []byte) (*KeySet, error) {
	if len(b) > MaxKeySetSize {
		return nil, fmt.Errorf("ear: %w: %d bytes, limit %d", ErrKeySet, len(b), MaxKeySetSize)
	}
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("ear: %w: %v", ErrKeySet, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("ear: %w: data after the set", ErrKeySet)
	}
	if len(raw.Keys) == 0 {
		return nil, fmt.Errorf("ear: %w: no keys", ErrKeySet)
	}
	if len(raw.Keys) > MaxKeySetKeys {
		return nil, fmt.Errorf("ear: %w: %d keys, limit %d", ErrKeySet, len(raw.Keys), MaxKeySetKeys)
	}
	s := &KeySet{keys: map[string]PublicKey{}}
	for i, r := range raw.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(r); err != nil {
			return nil, fmt.Errorf("ear: %w: key %d: %v", ErrKeySet, i, err)
		}
		switch {
		case k.KeyID == "":
			return nil, fmt.Errorf("ear: %w: key %d has no kid", ErrKeySet, i)
		case !k.IsPublic():
			return nil, fmt.Errorf("ear: %w: key %q is a private key", ErrKeySet, k.KeyID)
		case k.Use != "" && k.Use != "sig":
			return nil, fmt.Errorf("ear: %w: key %q is for %q, not signatures", ErrKeySet, k.KeyID, k.Use)
		}
		if _, dup := s.keys[k.KeyID]; dup {
			return nil, fmt.Errorf("ear: %w: kid %q twice", ErrKeySet, k.KeyID)
		}
		if _, err := DefaultAlgorithm(k.Key); err != nil {
			return nil, fmt.Errorf("ear: %w: key %q: %v", ErrKeySet, k.KeyID, err)
		}
		alg := Algorithm(k.Algorithm)
		if alg != "" && !fits(alg, k.Key) {
			return nil, fmt.Errorf("ear: %w: key %q: algorithm %s does not fit its %T key", ErrKeySet, k.KeyID, alg, k.Key)
		}
		s.keys[k.KeyID] = PublicKey{Key: k.Key, Algorithm: alg}
	}
	return s, nil
}

// Len is the number of keys in the set.
func (s *KeySet) Len() int { return len(s.keys) }

// Key returns the key whose kid is kid.
func (s *KeySet) Key(kid string) (PublicKey, bool) {
	k, ok := s.keys[kid]
	return k, ok
}

// VerifyWithKeySet verifies a token with the key of set that its header's
// kid names, as Verify does; when that key states an algorithm, the
// token's must be it. The header is read before the signature is checked
// only to choose the key.
func VerifyWithKeySet(token string, set *KeySet, opts VerifyOptions) (*Token, error) {
	_, h, err := parseJWS(token)
	if err != nil {
		return nil, err
	}
	k, ok := set.Key(h.KeyID)
	if !ok {
		return nil, fmt.Errorf("ear/verify: %w: no key with kid %q in the set", ErrKeySet, h.KeyID)
	}
	if k.Algorithm != "" && Algorithm(h.Algorithm) != k.Algorithm {
		return nil, fmt.Errorf("ear/verify: %w: algorithm %s, the key %q is for %s", ErrSignature, h.Algorithm, h.KeyID, k.Algorithm)
	}
	return Verify(token, k.Key, opts)
}
