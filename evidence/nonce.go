package evidence

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
)

// A quote's qualifying data binds the verifiers' nonces through a Merkle tree
// (RFC 6962 hashing, with domain-separated leaves and nodes), so one TPM quote
// can answer many concurrent verifiers, each with a short inclusion proof. A
// single request is a tree of one leaf with an empty proof.
//
//	leaf  = SHA-256(0x00 ‖ "bpfattest nonce v1" ‖ nonce)
//	node  = SHA-256(0x01 ‖ left ‖ right)
//	qualifyingData = SHA-256("bpfattest quote v1" ‖ 0x00 ‖ root)
const (
	leafLabel  = "bpfattest nonce v1"
	quoteLabel = "bpfattest quote v1"
)

// Nonce limits: a nonce shorter than MinNonceSize cannot make a quote
// unpredictable; a longer one than MaxNonceSize is refused as hostile input.
const (
	MinNonceSize = 16
	MaxNonceSize = 64
	// MaxBatch bounds the nonces coalesced into one quote.
	MaxBatch = 4096
)

// ErrNonce is wrapped by every nonce error.
var ErrNonce = errors.New("invalid nonce")

// CheckNonce validates a verifier's nonce.
func CheckNonce(nonce []byte) error {
	if len(nonce) < MinNonceSize || len(nonce) > MaxNonceSize {
		return fmt.Errorf("%w: %d bytes, want %d to %d", ErrNonce, len(nonce), MinNonceSize, MaxNonceSize)
	}
	return nil
}

// InclusionProof is the path from one nonce's leaf to the batch root: the
// sibling hashes from the leaf upwards, and the leaf's index among Size leaves.
type InclusionProof struct {
	Index    uint32
	Size     uint32
	Siblings [][]byte
}

func leafHash(nonce []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte{0})
	h.Write([]byte(leafLabel))
	h.Write(nonce)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

func nodeHash(l, r []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte{1})
	h.Write(l)
	h.Write(r)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// qualifyingData derives the TPM qualifying data from a batch root.
func qualifyingData(root [32]byte) []byte {
	h := sha256.New()
	h.Write([]byte(quoteLabel))
	h.Write([]byte{0})
	h.Write(root[:])
	return h.Sum(nil)
}

// QualifyingData is the qualifying data of a quote that answers one nonce
// alone (a batch of one).
func QualifyingData(nonce []byte) []byte {
	return qualifyingData(leafHash(nonce))
}

// Batch is a set of nonces coalesced into one quote.
type Batch struct {
	levels [][][32]byte // levels[0] = leaves; last level = root
}

// NewBatch builds the Merkle tree over the nonces, in the order given.
func NewBatch(nonces [][]byte) (*Batch, error) {
	if len(nonces) == 0 || len(nonces) > MaxBatch {
		return nil, fmt.Errorf("batch of %d nonces: want 1 to %d", len(nonces), MaxBatch)
	}
	leaves := make([][32]byte, len(nonces))
	for i, n := range nonces {
		if err := CheckNonce(n); err != nil {
			return nil, fmt.Errorf("nonce %d: %w", i, err)
		}
		leaves[i] = leafHash(n)
	}
	b := &Batch{levels: [][][32]byte{leaves}}
	for lvl := leaves; len(lvl) > 1; {
		next := make([][32]byte, 0, (len(lvl)+1)/2)
		for i := 0; i < len(lvl); i += 2 {
			if i+1 == len(lvl) {
				// An odd node is promoted unchanged (RFC 6962 shape).
				next = append(next, lvl[i])
				continue
			}
			next = append(next, nodeHash(lvl[i][:], lvl[i+1][:]))
		}
		b.levels = append(b.levels, next)
		lvl = next
	}
	return b, nil
}

// QualifyingData is the qualifying data to quote with.
func (b *Batch) QualifyingData() []byte {
	return qualifyingData(b.levels[len(b.levels)-1][0])
}

// Proof returns the inclusion proof of the i-th nonce.
func (b *Batch) Proof(i int) InclusionProof {
	p := InclusionProof{Index: uint32(i), Size: uint32(len(b.levels[0]))}
	for _, lvl := range b.levels[:len(b.levels)-1] {
		sib := i ^ 1
		if sib < len(lvl) {
			s := lvl[sib]
			p.Siblings = append(p.Siblings, s[:])
		}
		i /= 2
	}
	return p
}

// QualifyingData recomputes the qualifying data a quote must carry for
// nonce under the proof. It fails, wrapping ErrNonce, when the proof's shape
// does not fit its size.
func (p InclusionProof) QualifyingData(nonce []byte) ([]byte, error) {
	if p.Size == 0 || p.Size > MaxBatch || p.Index >= p.Size {
		return nil, fmt.Errorf("%w: proof index %d of %d", ErrNonce, p.Index, p.Size)
	}
	cur := leafHash(nonce)
	idx, size := p.Index, p.Size
	used := 0
	for size > 1 {
		sib := idx ^ 1
		if sib < size {
			if used >= len(p.Siblings) {
				return nil, fmt.Errorf("%w: proof too short", ErrNonce)
			}
			s := p.Siblings[used]
			used++
			if len(s) != sha256.Size {
				return nil, fmt.Errorf("%w: proof sibling of %d bytes", ErrNonce, len(s))
			}
			if idx%2 == 0 {
				cur = nodeHash(cur[:], s)
			} else {
				cur = nodeHash(s, cur[:])
			}
		}
		idx /= 2
		size = (size + 1) / 2
	}
	if used != len(p.Siblings) {
		return nil, fmt.Errorf("%w: proof has %d unused siblings", ErrNonce, len(p.Siblings)-used)
	}
	return qualifyingData(cur), nil
}

// Answers reports, in constant time over the digests, whether a quote's
// qualifying data answers nonce under the proof.
func (p InclusionProof) Answers(qualifyingData, nonce []byte) (bool, error) {
	want, err := p.QualifyingData(nonce)
	if err != nil {
		return false, err
	}
	return subtle.ConstantTimeCompare(want, qualifyingData) == 1, nil
}
