package tpm_test

import (
	"bytes"
	"crypto"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/bpfattest/bpfattest/internal/tpm"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
)

// TestAKStoredAndReloaded proves, for both key types on both TPMs, that the
// first call creates the AK and stores its blob (mode 0600 in a 0700
// directory, no temporary files left), that a second call loads the same
// key from the blob instead of creating one, and that the loaded key
// quotes. On swtpm the reload also happens from a new Device.
func TestAKStoredAndReloaded(t *testing.T) {
	tpmtest.ForEach(t, func(t *testing.T, tg tpmtest.Target) {
		for _, alg := range akAlgorithms {
			t.Run(alg.String(), func(t *testing.T) {
				dir := filepath.Join(t.TempDir(), "state") // created by LoadOrCreateAK
				opts := tpm.AKOptions{Algorithm: alg, StateDir: dir}
				d := tpmtest.Open(t, tg.Spec)
				ak1 := mustAK(t, d, opts)
				if !ak1.Created() {
					t.Fatal("first call did not create the AK")
				}
				checkStateDir(t, dir, alg)
				checkReloads(t, d, opts, ak1)
				if tg.Swtpm == nil {
					return
				}
				if err := d.Close(); err != nil {
					t.Fatal(err)
				}
				checkReloads(t, tpmtest.Open(t, tg.Spec), opts, ak1)
			})
		}
	})
}

// checkReloads asserts that LoadOrCreateAK loads want from its blob and
// that the loaded key quotes.
func checkReloads(tb testing.TB, d *tpm.Device, opts tpm.AKOptions, want *tpm.AK) {
	tb.Helper()
	ak := mustAK(tb, d, opts)
	if ak.Created() {
		tb.Fatal("created a new AK instead of loading the stored one")
	}
	if !bytes.Equal(ak.PublicArea(), want.PublicArea()) || !bytes.Equal(ak.Name(), want.Name()) {
		tb.Fatal("reloaded AK differs from the created one")
	}
	n := nonce(tb)
	q, err := d.Quote(ak, n, []int{testPCR}, []crypto.Hash{crypto.SHA256})
	if err != nil {
		tb.Fatal(err)
	}
	verifyQuote(tb, want, q, n)
}

// checkStateDir asserts the directory holds exactly the AK blob, mode 0600.
func checkStateDir(tb testing.TB, dir string, alg tpm.AKAlgorithm) {
	tb.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	if len(ents) != 1 || ents[0].Name() != tpm.AKFileName(alg) {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		tb.Fatalf("state dir holds %v, want only %s", names, tpm.AKFileName(alg))
	}
	fi, err := os.Stat(filepath.Join(dir, tpm.AKFileName(alg)))
	if err != nil {
		tb.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		tb.Errorf("AK blob mode %v, want 0600", fi.Mode().Perm())
	}
	di, err := os.Stat(dir)
	if err != nil {
		tb.Fatal(err)
	}
	if di.Mode().Perm() != 0o700 {
		tb.Errorf("state dir mode %v, want 0700", di.Mode().Perm())
	}
}

// TestAKStale proves a stored AK from another TPM (the previous simulator,
// which Close discarded; a second swtpm) is refused with ErrAKStale and the
// file is kept, and that ReplaceStale creates and stores a new one.
func TestAKStale(t *testing.T) {
	t.Run("sim", func(t *testing.T) { testAKStale(t, "sim", "sim") })
	t.Run("swtpm", func(t *testing.T) {
		a := tpmtest.StartSwtpm(t, tpmtest.SwtpmOptions{})
		b := tpmtest.StartSwtpm(t, tpmtest.SwtpmOptions{})
		testAKStale(t, a.Spec(), b.Spec())
	})
}

func testAKStale(t *testing.T, spec1, spec2 string) {
	dir := filepath.Join(t.TempDir(), "state")
	opts := tpm.AKOptions{StateDir: dir}
	d := tpmtest.Open(t, spec1)
	old := mustAK(t, d, opts)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	blob, err := os.ReadFile(filepath.Join(dir, tpm.AKFileName(tpm.AKECCP256)))
	if err != nil {
		t.Fatal(err)
	}

	d = tpmtest.Open(t, spec2) // another TPM
	if _, err := d.LoadOrCreateAK(opts); !errors.Is(err, tpm.ErrAKStale) {
		t.Fatalf("LoadOrCreateAK on another TPM = %v, want ErrAKStale", err)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, tpm.AKFileName(tpm.AKECCP256))); !bytes.Equal(after, blob) {
		t.Fatal("refused load changed the stored blob")
	}
	opts.ReplaceStale = true
	ak := mustAK(t, d, opts)
	if !ak.Created() || bytes.Equal(ak.PublicArea(), old.PublicArea()) {
		t.Fatal("ReplaceStale did not create a new AK")
	}
	opts.ReplaceStale = false
	if again := mustAK(t, d, opts); again.Created() || !bytes.Equal(again.PublicArea(), ak.PublicArea()) {
		t.Fatal("replacement AK was not stored")
	}
	checkStateDir(t, dir, tpm.AKECCP256)
}

// TestAKBadBlob proves a corrupted or foreign blob file is refused with
// ErrBadAKBlob (not replaced, even with ReplaceStale), one past the size
// limit is refused before it is parsed, and a blob of the other algorithm
// is refused too.
func TestAKBadBlob(t *testing.T) {
	tpmtest.ForEach(t, func(t *testing.T, tg tpmtest.Target) {
		d := tpmtest.Open(t, tg.Spec)
		dir := t.TempDir()
		mustAK(t, d, tpm.AKOptions{StateDir: dir, Algorithm: tpm.AKECCP256})
		path := filepath.Join(dir, tpm.AKFileName(tpm.AKECCP256))
		good, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for name, data := range map[string][]byte{
			"truncated": good[:len(good)-1],
			"trailing":  append(bytes.Clone(good), 0),
			"magic":     append([]byte("XXXXXXXX"), good[8:]...),
			"empty":     nil,
			"oversized": append(bytes.Clone(good), make([]byte, 64<<10)...),
		} {
			t.Run(name, func(t *testing.T) {
				if err := os.WriteFile(path, data, 0o600); err != nil {
					t.Fatal(err)
				}
				_, err := d.LoadOrCreateAK(tpm.AKOptions{StateDir: dir, ReplaceStale: true})
				if !errors.Is(err, tpm.ErrBadAKBlob) {
					t.Fatalf("LoadOrCreateAK = %v, want ErrBadAKBlob", err)
				}
			})
		}
		// An ECC blob under the RSA file name.
		if err := os.WriteFile(filepath.Join(dir, tpm.AKFileName(tpm.AKRSA2048)), good, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := d.LoadOrCreateAK(tpm.AKOptions{StateDir: dir, Algorithm: tpm.AKRSA2048}); !errors.Is(err, tpm.ErrBadAKBlob) {
			t.Fatalf("ECC blob loaded as RSA: %v, want ErrBadAKBlob", err)
		}
	})
}

// TestAKTamperedPrivate proves the TPM's integrity check on the wrapped
// private part is what stands behind a reload: a flipped byte in it is
// refused as ErrAKStale.
func TestAKTamperedPrivate(t *testing.T) {
	tpmtest.ForEach(t, func(t *testing.T, tg tpmtest.Target) {
		d := tpmtest.Open(t, tg.Spec)
		dir := t.TempDir()
		mustAK(t, d, tpm.AKOptions{StateDir: dir})
		path := filepath.Join(dir, tpm.AKFileName(tpm.AKECCP256))
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)-5] ^= 1 // inside the private area, the last field
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := d.LoadOrCreateAK(tpm.AKOptions{StateDir: dir}); !errors.Is(err, tpm.ErrAKStale) {
			t.Fatalf("LoadOrCreateAK with tampered private = %v, want ErrAKStale", err)
		}
	})
}

// TestParentMismatch proves a foreign key at the parent handle is left
// alone and reported as ErrParentMismatch, and a non-persistent handle is
// refused.
func TestParentMismatch(t *testing.T) {
	tpmtest.ForEach(t, func(t *testing.T, tg tpmtest.Target) {
		d := tpmtest.Open(t, tg.Spec)
		const foreign = 0x81010123
		tp := d.Transport()
		cp, err := tpm2.CreatePrimary{
			PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHEndorsement, Auth: tpm2.PasswordAuth(nil)},
			InPublic:      tpm2.New2B(tpm2.ECCEKTemplate),
		}.Execute(tp)
		if err != nil {
			t.Fatal(err)
		}
		_, err = tpm2.EvictControl{
			Auth:             tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
			ObjectHandle:     &tpm2.NamedHandle{Handle: cp.ObjectHandle, Name: cp.Name},
			PersistentHandle: foreign,
		}.Execute(tp)
		if _, ferr := (tpm2.FlushContext{FlushHandle: cp.ObjectHandle}).Execute(tp); ferr != nil {
			t.Fatal(ferr)
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.LoadOrCreateAK(tpm.AKOptions{ParentHandle: foreign}); !errors.Is(err, tpm.ErrParentMismatch) {
			t.Fatalf("LoadOrCreateAK under an EK = %v, want ErrParentMismatch", err)
		}
		if _, err := d.LoadOrCreateAK(tpm.AKOptions{ParentHandle: 0x80000001}); err == nil {
			t.Fatal("a transient handle was accepted as the parent handle")
		}
	})
}
