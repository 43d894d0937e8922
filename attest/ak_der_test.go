package attest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"math/big"
	mrand "math/rand/v2"
	"testing"
)

// TestECDSASignatureDER: the DER the verifier builds from a TPM
// signature's r and s is encoding/asn1's for the same integers, for
// values with leading zeros, high bits, zero and the TPM2B maximum.
func TestECDSASignatureDER(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(3, 4))
	values := [][]byte{{}, {0}, {0, 0}, {1}, {0x7f}, {0x80}, {0, 0x80}, bytes.Repeat([]byte{0xff}, 66), append([]byte{0}, bytes.Repeat([]byte{0x81}, 65)...)}
	for range 200 {
		v := make([]byte, rng.IntN(67))
		for i := range v {
			v[i] = byte(rng.Uint32())
		}
		values = append(values, v)
	}
	for _, r := range values {
		for _, s := range values[:12] {
			want, err := asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(r), new(big.Int).SetBytes(s)})
			if err != nil {
				t.Fatal(err)
			}
			if got := ecdsaSignatureDER(r, s); !bytes.Equal(got, want) {
				t.Fatalf("r %x s %x: %x, want %x", r, s, got, want)
			}
		}
	}
}

// TestECDSAVerifyDER: verifying through the DER gives ecdsa.Verify's
// answer, for good signatures, altered ones and r or s zero or padded.
func TestECDSAVerifyDER(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("quote"))
	for i := range 40 {
		r, s, err := ecdsa.Sign(rand.Reader, key, digest[:])
		if err != nil {
			t.Fatal(err)
		}
		rb, sb := r.Bytes(), s.Bytes()
		switch i % 5 {
		case 1:
			rb = append([]byte{0, 0}, rb...) // a TPM may pad
		case 2:
			sb = slicesWithFlip(sb, i)
		case 3:
			rb = nil
		case 4:
			sb = append(bytes.Clone(sb), 1)
		}
		want := ecdsa.Verify(&key.PublicKey, digest[:], new(big.Int).SetBytes(rb), new(big.Int).SetBytes(sb))
		got := ecdsa.VerifyASN1(&key.PublicKey, digest[:], ecdsaSignatureDER(rb, sb))
		if got != want {
			t.Errorf("case %d: DER verification %v, ecdsa.Verify %v", i, got, want)
		}
		if i%5 == 0 && !got {
			t.Errorf("case %d: a good signature does not verify", i)
		}
	}
}

func slicesWithFlip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i%len(c)] ^= 0x10
	return c
}
