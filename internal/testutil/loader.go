package testutil

import (
	"crypto"
	"crypto/x509"
	"encoding/binary"
	"os"
	"testing"
)

// RemoveInsns drops loader instructions and re-targets every jump so that a
// jump to a dropped instruction lands on the next kept one, as if the
// dropped code had never been emitted. An ld_imm64 is kept or dropped as a
// whole, by its first slot.
func RemoveInsns(tb testing.TB, insns []byte, drop func(i int) bool) []byte {
	tb.Helper()
	n := len(insns) / 8
	newIdx := make([]int, n+1)
	k := 0
	for i := 0; i < n; i++ {
		newIdx[i] = k
		if !drop(i) {
			k++
		}
	}
	newIdx[n] = k
	var out []byte
	for i := 0; i < n; i++ {
		if drop(i) {
			continue
		}
		in := append([]byte{}, insns[i*8:i*8+8]...)
		op := in[0]
		if op == 0x18 { // ld_imm64: copy both slots untouched
			out = append(out, in...)
			out = append(out, insns[(i+1)*8:(i+2)*8]...)
			i++
			continue
		}
		isJump := op&0x07 == 0x05 && op != 0x85 && op != 0x95 || op&0x07 == 0x06 && op != 0x06 && op&0xf0 != 0x80 && op&0xf0 != 0x90
		if isJump {
			target := i + 1 + int(int16(binary.LittleEndian.Uint16(in[2:])))
			if target < 0 || target > n {
				tb.Fatalf("insn %d jumps outside the program", i)
			}
			binary.LittleEndian.PutUint16(in[2:], uint16(int16(newIdx[target]-newIdx[i]-1)))
		}
		out = append(out, in...)
	}
	return out
}

// HashPrologueInsns is the length of the data-hash prologue of the signed
// fixture loaders (libbpf 34e3ebf0: exclusivity check plus four 7-insn
// digest comparisons).
const HashPrologueInsns = 33

// WithoutHashPrologue returns a signed fixture loader without its data-hash
// prologue, which starts where the jump at insn 6 lands: the loader libbpf
// debb5e82 and later generate for the same object, whose data map only the
// kernel binds (docs/research lskel-blob §5.4 and §7).
func WithoutHashPrologue(tb testing.TB, signedInsns []byte) []byte {
	tb.Helper()
	if len(signedInsns) < 7*8 || signedInsns[6*8] != 0x05 {
		tb.Fatal("not a gen_loader loader: no ja at insn 6")
	}
	p := 7 + int(int16(binary.LittleEndian.Uint16(signedInsns[6*8+2:])))
	return RemoveInsns(tb, signedInsns, func(i int) bool { return i >= p && i < p+HashPrologueInsns })
}

// LskelSigner returns the fixtures' TEST-ONLY signing key and certificate.
func LskelSigner(tb testing.TB) (crypto.Signer, *x509.Certificate) {
	tb.Helper()
	kb, err := os.ReadFile(LskelFile(tb, "keys/TEST_ONLY_signing_key.der"))
	if err != nil {
		tb.Fatal(err)
	}
	k, err := x509.ParsePKCS8PrivateKey(kb)
	if err != nil {
		if k, err = x509.ParsePKCS1PrivateKey(kb); err != nil {
			tb.Fatal(err)
		}
	}
	key, ok := k.(crypto.Signer)
	if !ok {
		tb.Fatalf("fixture key %T is not a crypto.Signer", k)
	}
	cb, err := os.ReadFile(LskelFile(tb, "keys/TEST_ONLY_signing_cert.der"))
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(cb)
	if err != nil {
		tb.Fatal(err)
	}
	return key, cert
}
