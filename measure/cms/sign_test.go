package cms

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// TestSignKernelMatchesBpftool proves Sign(SchemeKernel) is byte-identical
// to bpftool's opts_sig for every signed fixture.
func TestSignKernelMatchesBpftool(t *testing.T) {
	key, cert := fixtureKey(t), fixtureCert(t)
	for _, n := range signedFixtures {
		t.Run(n, func(t *testing.T) {
			f := loadFixture(t, n)
			got, err := Sign(f.insn, key, cert, SignOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, f.sig) {
				t.Fatalf("Sign differs from bpftool's opts_sig\n got %x\nwant %x", got, f.sig)
			}
		})
	}
}

func TestSignRejectsBadOptions(t *testing.T) {
	key, cert := fixtureKey(t), fixtureCert(t)
	other, _ := newSelfSigned(t, "other")
	cases := map[string]struct {
		opts SignOptions
		cert any
	}{
		"kernel with map hashes": {opts: SignOptions{MapHashes: []MapHash{{Index: 0}}}},
		"kernel with time":       {opts: SignOptions{SigningTime: time.Unix(1, 0)}},
		"index 128":              {opts: SignOptions{Scheme: SchemeHornet, MapHashes: []MapHash{{Index: 128}}}},
		"repeated index":         {opts: SignOptions{Scheme: SchemeHornet, MapHashes: []MapHash{{Index: 1}, {Index: 1}}}},
		"short hash":             {opts: SignOptions{Scheme: SchemeHornet, MapHashes: []MapHash{{Index: 1, SHA256: []byte{1}}}}},
		"unknown scheme":         {opts: SignOptions{Scheme: 9}},
		"key of another cert":    {cert: other},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			ct := cert
			if c.cert != nil {
				ct = other
			}
			_, err := Sign([]byte("x"), key, ct, c.opts)
			if !errors.Is(err, ErrSign) {
				t.Fatalf("err = %v, want ErrSign", err)
			}
		})
	}
	too := make([]MapHash, MaxHornetMaps+1)
	for i := range too {
		too[i].Index = uint8(i)
	}
	if _, err := Sign([]byte("x"), key, cert, SignOptions{Scheme: SchemeHornet, MapHashes: too}); !errors.Is(err, ErrSign) {
		t.Fatalf("64 map hashes: err = %v, want ErrSign", err)
	}
}
