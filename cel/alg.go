package cel

import (
	"crypto"
	_ "crypto/sha1" // registers crypto.SHA1 for the SHA-1 bank
	_ "crypto/sha256"
	_ "crypto/sha512" // registers crypto.SHA384 and crypto.SHA512
)

// TPM_ALG_ID values of the hash algorithms a PCR bank can use (TCG
// Algorithm Registry; TPM 2.0 Library Part 2 §6.3). In the TLV encoding the
// id is the type byte of a digest entry, so only ids below 256 can appear.
const (
	algSHA1   = 0x0004
	algSHA256 = 0x000B
	algSHA384 = 0x000C
	algSHA512 = 0x000D
)

// AlgID returns the TPM_ALG_ID of a PCR bank's hash, and false for a hash
// that no supported bank uses.
func AlgID(h crypto.Hash) (uint16, bool) {
	switch h {
	case crypto.SHA1:
		return algSHA1, true
	case crypto.SHA256:
		return algSHA256, true
	case crypto.SHA384:
		return algSHA384, true
	case crypto.SHA512:
		return algSHA512, true
	}
	return 0, false
}

// HashForAlg returns the hash of a TPM_ALG_ID, and false for an id that is
// not a supported PCR bank.
func HashForAlg(id uint16) (crypto.Hash, bool) {
	switch id {
	case algSHA1:
		return crypto.SHA1, true
	case algSHA256:
		return crypto.SHA256, true
	case algSHA384:
		return crypto.SHA384, true
	case algSHA512:
		return crypto.SHA512, true
	}
	return 0, false
}

// BankName returns the CEL-JSON and TPM name of a bank ("sha256"), or the
// Go name for an unsupported hash.
func BankName(h crypto.Hash) string {
	switch h {
	case crypto.SHA1:
		return "sha1"
	case crypto.SHA256:
		return "sha256"
	case crypto.SHA384:
		return "sha384"
	case crypto.SHA512:
		return "sha512"
	}
	return h.String()
}

// SortBanks returns the supported banks of hs in canonical order (ascending
// TPM_ALG_ID), without duplicates, and false if any hash is not a supported
// bank.
func SortBanks(hs []crypto.Hash) ([]crypto.Hash, bool) {
	var seen [numBanks]bool
	for _, h := range hs {
		i, ok := bankIndex(h)
		if !ok {
			return nil, false
		}
		seen[i] = true
	}
	out := make([]crypto.Hash, 0, len(hs))
	for i, h := range canonicalBanks() {
		if seen[i] {
			out = append(out, h)
		}
	}
	return out, true
}

// numBanks is the number of supported banks.
const numBanks = 4

// canonicalBanks lists the supported banks in ascending TPM_ALG_ID order.
func canonicalBanks() [numBanks]crypto.Hash {
	return [4]crypto.Hash{crypto.SHA1, crypto.SHA256, crypto.SHA384, crypto.SHA512}
}

func bankIndex(h crypto.Hash) (int, bool) {
	for i, b := range canonicalBanks() {
		if b == h {
			return i, true
		}
	}
	return 0, false
}
