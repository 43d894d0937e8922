package cms

import (
	"crypto"
	"crypto/sha256"
	"crypto/sha3"
	"crypto/sha512"
	"hash"
)

// hashFor returns the hash for a kernel digest name. SHA-1 is refused on
// purpose (stricter than the kernel, see docs/cms-verification.md); SM3
// and Streebog are not in the Go standard library.
func hashFor(name string) (crypto.Hash, func() hash.Hash, bool) {
	switch name {
	case "sha224":
		return crypto.SHA224, sha256.New224, true
	case "sha256":
		return crypto.SHA256, sha256.New, true
	case "sha384":
		return crypto.SHA384, sha512.New384, true
	case "sha512":
		return crypto.SHA512, sha512.New, true
	case "sha3-256":
		return crypto.SHA3_256, func() hash.Hash { return sha3.New256() }, true
	case "sha3-384":
		return crypto.SHA3_384, func() hash.Hash { return sha3.New384() }, true
	case "sha3-512":
		return crypto.SHA3_512, func() hash.Hash { return sha3.New512() }, true
	}
	return 0, nil, false
}

func sum(newHash func() hash.Hash, parts ...[]byte) []byte {
	h := newHash()
	for _, p := range parts {
		h.Write(p)
	}
	return h.Sum(nil)
}
