package tpm_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/bpfattest/bpfattest/internal/tpm"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
)

// makeCredential is TPM2_MakeCredential in software (go-tpm), for the
// object name to the EK public area.
func makeCredential(tb testing.TB, ekPublic, name, secret []byte) (blob, enc []byte) {
	tb.Helper()
	pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](ekPublic)
	if err != nil {
		tb.Fatal(err)
	}
	key, err := tpm2.ImportEncapsulationKey(pub)
	if err != nil {
		tb.Fatal(err)
	}
	blob, enc, err = tpm2.CreateCredential(rand.Reader, key, name, secret)
	if err != nil {
		tb.Fatal(err)
	}
	return blob, enc
}

// TestActivateCredential proves, on the simulator, that the AK activates
// a credential made for its name to the default RSA and ECC EKs, and that
// a credential for another name, a corrupted one and one for the other
// EK are ErrCredential; the device keeps no handle afterwards.
func TestActivateCredential(t *testing.T) {
	d := tpmtest.Open(t, "sim")
	ak := mustAK(t, d, tpm.AKOptions{Algorithm: tpm.AKECCP256, StateDir: t.TempDir()})
	other := mustAK(t, d, tpm.AKOptions{Algorithm: tpm.AKRSA2048, StateDir: t.TempDir()})
	secret := []byte("a 32-byte secret for the test!!!")
	for _, kind := range []tpm.EKKind{tpm.EKRSA2048, tpm.EKECCP256} {
		ekPub, err := d.EKPublic(kind)
		if err != nil {
			t.Fatal(err)
		}
		blob, enc := makeCredential(t, ekPub, ak.Name(), secret)
		got, err := d.ActivateCredential(ak, kind, blob, enc)
		if err != nil || !bytes.Equal(got, secret) {
			t.Fatalf("ek %d: %x, %v", kind, got, err)
		}
		otherKind := tpm.EKECCP256
		if kind == tpm.EKECCP256 {
			otherKind = tpm.EKRSA2048
		}
		flipped := bytes.Clone(blob)
		flipped[len(flipped)-1] ^= 1
		for name, c := range map[string]struct {
			ak        *tpm.AK
			kind      tpm.EKKind
			blob, enc []byte
		}{
			"other name": {other, kind, blob, enc},
			"corrupted":  {ak, kind, flipped, enc},
			"other ek":   {ak, otherKind, blob, enc},
		} {
			if _, err := d.ActivateCredential(c.ak, c.kind, c.blob, c.enc); !errors.Is(err, tpm.ErrCredential) {
				t.Errorf("ek %d, %s: %v, want ErrCredential", kind, name, err)
			}
		}
	}
	if hs, err := d.TransientHandles(); err != nil || len(hs) != 0 {
		t.Errorf("transient handles left: %v %v", hs, err)
	}
}
