package evidence

import (
	"bytes"
	"fmt"
	"testing"
)

func testNonces(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = bytes.Repeat([]byte{byte(i), byte(i >> 8)}, 10)
	}
	return out
}

func TestBatchProofs(t *testing.T) {
	for _, n := range []int{1, 2, 3, 4, 5, 7, 8, 9, 64, 100} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			nonces := testNonces(n)
			b, err := NewBatch(nonces)
			if err != nil {
				t.Fatal(err)
			}
			qd := b.QualifyingData()
			if n == 1 && !bytes.Equal(qd, QualifyingData(nonces[0])) {
				t.Fatalf("batch of one differs from QualifyingData")
			}
			for i, nonce := range nonces {
				p := b.Proof(i)
				ok, err := p.Answers(qd, nonce)
				if err != nil || !ok {
					t.Fatalf("nonce %d: ok %v err %v", i, ok, err)
				}
				// Another verifier's nonce never verifies under this proof.
				other := nonces[(i+1)%n]
				if n > 1 {
					if ok, _ := p.Answers(qd, other); ok {
						t.Fatalf("nonce %d's proof accepts nonce %d", i, (i+1)%n)
					}
				}
				// A changed sibling or index breaks the proof.
				if len(p.Siblings) > 0 {
					bad := p
					bad.Siblings = append([][]byte(nil), p.Siblings...)
					bad.Siblings[0] = bytes.Repeat([]byte{0xee}, 32)
					if ok, _ := bad.Answers(qd, nonce); ok {
						t.Fatalf("tampered sibling accepted")
					}
				}
			}
		})
	}
}

func TestNonceLimits(t *testing.T) {
	for _, n := range [][]byte{nil, make([]byte, MinNonceSize-1), make([]byte, MaxNonceSize+1)} {
		if err := CheckNonce(n); err == nil {
			t.Errorf("%d-byte nonce accepted", len(n))
		}
	}
	if _, err := NewBatch(nil); err == nil {
		t.Error("empty batch accepted")
	}
	if _, err := (InclusionProof{Index: 3, Size: 2}).QualifyingData(make([]byte, 16)); err == nil {
		t.Error("proof index past size accepted")
	}
	if _, err := (InclusionProof{Index: 0, Size: 1, Siblings: [][]byte{make([]byte, 32)}}).QualifyingData(make([]byte, 16)); err == nil {
		t.Error("proof with an extra sibling accepted")
	}
}

func FuzzInclusionProof(f *testing.F) {
	f.Add(uint32(0), uint32(1), []byte{}, make([]byte, 16))
	f.Add(uint32(1), uint32(3), make([]byte, 64), make([]byte, 32))
	f.Fuzz(func(t *testing.T, idx, size uint32, sibs, nonce []byte) {
		p := InclusionProof{Index: idx, Size: size}
		for len(sibs) > 0 {
			n := min(len(sibs), 32)
			p.Siblings = append(p.Siblings, sibs[:n])
			sibs = sibs[n:]
		}
		_, _ = p.QualifyingData(nonce) // must not panic
	})
}
