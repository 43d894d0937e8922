package tpm_test

import (
	"crypto"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-tpm/tpm2"

	"github.com/bpfattest/bpfattest/internal/tpm"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
)

// TestExtendMatchesSoftware proves that, for every active bank, the PCR
// after Extend is H(old ‖ digest) as computed in Go, over several extends.
func TestExtendMatchesSoftware(t *testing.T) {
	tpmtest.ForEach(t, func(t *testing.T, tg tpmtest.Target) {
		d := tpmtest.Open(t, tg.Spec)
		if len(d.Banks()) == 0 {
			t.Fatal("no active banks")
		}
		want := mustReadPCR(t, d, testPCR)
		for range 5 {
			dg := mustExtend(t, d, testPCR)
			want = extended(want, dg)
			if diff := cmp.Diff(want, mustReadPCR(t, d, testPCR)); diff != "" {
				t.Fatalf("PCR %d after extend (-software +tpm):\n%s", testPCR, diff)
			}
		}
		if len(want) != len(d.Banks()) {
			t.Errorf("ReadPCR returned %d banks, device has %v", len(want), d.Banks())
		}
	})
}

// TestExtendRefusesBadDigests proves that a digest set that does not match
// the active banks exactly is refused with ErrBadDigests and leaves the PCR
// unchanged in every bank.
func TestExtendRefusesBadDigests(t *testing.T) {
	tpmtest.ForEach(t, func(t *testing.T, tg tpmtest.Target) {
		d := tpmtest.Open(t, tg.Spec)
		banks := d.Banks()
		mustExtend(t, d, testPCR) // start from a non-zero value
		before := mustReadPCR(t, d, testPCR)

		cases := map[string]func(m map[crypto.Hash][]byte){
			"missing bank": func(m map[crypto.Hash][]byte) { delete(m, banks[len(banks)-1]) },
			"short digest": func(m map[crypto.Hash][]byte) { m[banks[0]] = m[banks[0]][:len(m[banks[0]])-1] },
			"long digest":  func(m map[crypto.Hash][]byte) { m[banks[0]] = append(m[banks[0]], 0) },
			"unknown bank": func(m map[crypto.Hash][]byte) { m[crypto.SHA3_256] = make([]byte, 32) },
			"empty":        func(m map[crypto.Hash][]byte) { clear(m) },
		}
		for name, mutate := range cases {
			t.Run(name, func(t *testing.T) {
				dg := randomDigests(t, banks)
				mutate(dg)
				err := d.Extend(testPCR, dg)
				if !errors.Is(err, tpm.ErrBadDigests) {
					t.Fatalf("Extend = %v, want ErrBadDigests", err)
				}
				if diff := cmp.Diff(before, mustReadPCR(t, d, testPCR)); diff != "" {
					t.Fatalf("PCR changed by a refused extend:\n%s", diff)
				}
			})
		}
		for _, pcr := range []int{-1, d.PCRCount(), 1000} {
			if err := d.Extend(pcr, randomDigests(t, banks)); !errors.Is(err, tpm.ErrBadPCR) {
				t.Errorf("Extend(%d) = %v, want ErrBadPCR", pcr, err)
			}
			if _, err := d.ReadPCR(pcr); !errors.Is(err, tpm.ErrBadPCR) {
				t.Errorf("ReadPCR(%d) = %v, want ErrBadPCR", pcr, err)
			}
		}
	})
}

// TestExtendInactiveBankRefused proves that on a TPM provisioned with only
// some banks, a digest for an unallocated bank is refused (the TPM would
// silently ignore it) and the discovered banks are exactly the allocated
// ones.
func TestExtendInactiveBankRefused(t *testing.T) {
	s := tpmtest.StartSwtpm(t, tpmtest.SwtpmOptions{PCRBanks: []string{"sha256", "sha384"}})
	d := tpmtest.Open(t, s.Spec())
	if diff := cmp.Diff([]crypto.Hash{crypto.SHA256, crypto.SHA384}, d.Banks()); diff != "" {
		t.Fatalf("Banks (-want +got):\n%s", diff)
	}
	dg := randomDigests(t, []crypto.Hash{crypto.SHA1, crypto.SHA256, crypto.SHA384})
	if err := d.Extend(testPCR, dg); !errors.Is(err, tpm.ErrBadDigests) {
		t.Fatalf("Extend with sha1 on a sha256+sha384 TPM = %v, want ErrBadDigests", err)
	}
	old := mustReadPCR(t, d, testPCR)
	delete(dg, crypto.SHA1)
	if err := d.Extend(testPCR, dg); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(extended(old, dg), mustReadPCR(t, d, testPCR)); diff != "" {
		t.Fatalf("PCR (-software +tpm):\n%s", diff)
	}
}

// TestBanksDiscovered proves bank discovery against the known allocations:
// the simulator and a bare swtpm allocate all four SHA banks.
func TestBanksDiscovered(t *testing.T) {
	tpmtest.ForEach(t, func(t *testing.T, tg tpmtest.Target) {
		d := tpmtest.Open(t, tg.Spec)
		want := []crypto.Hash{crypto.SHA1, crypto.SHA256, crypto.SHA384, crypto.SHA512}
		if diff := cmp.Diff(want, d.Banks()); diff != "" {
			t.Errorf("Banks (-want +got):\n%s", diff)
		}
		if d.PCRCount() != 24 {
			t.Errorf("PCRCount = %d, want 24", d.PCRCount())
		}
		b := d.Banks()
		b[0] = 0
		if d.Banks()[0] == 0 {
			t.Error("Banks returned the device's own slice")
		}
	})
}

// TestNonZeroStartReadable proves that a PCR that was extended before this
// Device existed (by another client, or before a reopen) reads back as that
// value, not as zero.
func TestNonZeroStartReadable(t *testing.T) {
	t.Run("sim/other client", func(t *testing.T) {
		d := tpmtest.Open(t, "sim")
		// Another writer on the same TPM, through go-tpm directly.
		_, err := tpm2.PCRExtend{
			PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(testPCR), Auth: tpm2.PasswordAuth(nil)},
			Digests: tpm2.TPMLDigestValues{Digests: []tpm2.TPMTHA{
				{HashAlg: tpm2.TPMAlgSHA256, Digest: make([]byte, 32)},
			}},
		}.Execute(d.Transport())
		if err != nil {
			t.Fatal(err)
		}
		got := mustReadPCR(t, d, testPCR)
		zero := make([]byte, 64)
		want := crypto.SHA256.New()
		want.Write(zero[:32])
		want.Write(zero[:32])
		if !slices.Equal(got[crypto.SHA256], want.Sum(nil)) {
			t.Errorf("sha256 PCR = %x, want %x", got[crypto.SHA256], want.Sum(nil))
		}
		if !slices.Equal(got[crypto.SHA1], zero[:20]) {
			t.Errorf("sha1 PCR = %x, want zeros (not extended)", got[crypto.SHA1])
		}
	})
	t.Run("swtpm/reopen", func(t *testing.T) {
		s := tpmtest.StartSwtpm(t, tpmtest.SwtpmOptions{})
		d := tpmtest.Open(t, s.Spec())
		mustExtend(t, d, testPCR)
		want := mustReadPCR(t, d, testPCR)
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		d2 := tpmtest.Open(t, s.Spec())
		if diff := cmp.Diff(want, mustReadPCR(t, d2, testPCR)); diff != "" {
			t.Fatalf("PCR after reopen (-before +after):\n%s", diff)
		}
	})
}

// TestConcurrentUse proves the Device serialises concurrent callers: many
// goroutines extend the same digest (so order does not matter) while others
// read, and the final value equals the software replay.
func TestConcurrentUse(t *testing.T) {
	tpmtest.ForEach(t, func(t *testing.T, tg tpmtest.Target) {
		d := tpmtest.Open(t, tg.Spec)
		old := mustReadPCR(t, d, testPCR)
		dg := randomDigests(t, d.Banks())
		const n = 16
		var wg sync.WaitGroup
		errs := make(chan error, 2*n)
		for range n {
			wg.Go(func() { errs <- d.Extend(testPCR, dg) })
			wg.Go(func() {
				_, err := d.ReadPCR(testPCR)
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		want := old
		for range n {
			want = extended(want, dg)
		}
		if diff := cmp.Diff(want, mustReadPCR(t, d, testPCR)); diff != "" {
			t.Fatalf("PCR (-software +tpm):\n%s", diff)
		}
	})
}

// TestClosedDevice proves use after Close is ErrClosed, not a crash.
func TestClosedDevice(t *testing.T) {
	tpmtest.ForEach(t, func(t *testing.T, tg tpmtest.Target) {
		d := tpmtest.Open(t, tg.Spec) // its Cleanup tolerates ErrClosed
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := d.ReadPCR(testPCR); !errors.Is(err, tpm.ErrClosed) {
			t.Errorf("ReadPCR after Close = %v, want ErrClosed", err)
		}
		if _, err := d.Transport().Send([]byte{0x80, 1, 0, 0, 0, 10, 0, 0, 1, 0x7b}); !errors.Is(err, tpm.ErrClosed) {
			t.Errorf("Transport().Send after Close = %v, want ErrClosed", err)
		}
		if err := d.Close(); !errors.Is(err, tpm.ErrClosed) {
			t.Errorf("second Close = %v, want ErrClosed", err)
		}
	})
}

// TestOpenSpecs proves malformed and unreachable specs fail cleanly.
func TestOpenSpecs(t *testing.T) {
	for _, spec := range []string{"", "bogus", "swtpm:", "swtpm:unix:", "swtpm:udp:x"} {
		if _, err := tpm.Open(t.Context(), spec); !errors.Is(err, tpm.ErrBadSpec) {
			t.Errorf("Open(%q) = %v, want ErrBadSpec", spec, err)
		}
	}
	for _, spec := range []string{"swtpm:unix:" + t.TempDir() + "/absent.sock", "/dev/bpfattest-absent-tpm"} {
		if _, err := tpm.Open(t.Context(), spec); err == nil {
			t.Errorf("Open(%q) succeeded", spec)
		}
	}
}
