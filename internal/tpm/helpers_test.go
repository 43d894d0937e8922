package tpm_test

import (
	"crypto"
	"crypto/rand"
	"testing"

	"github.com/bpfattest/bpfattest/internal/tpm"
)

// testPCR is the PCR the tests extend: the agent's default. Every TPM the
// tests use is a throwaway simulator or swtpm.
const testPCR = 14

// randomDigests returns a random digest for every bank.
func randomDigests(tb testing.TB, banks []crypto.Hash) map[crypto.Hash][]byte {
	tb.Helper()
	m := make(map[crypto.Hash][]byte, len(banks))
	for _, h := range banks {
		d := make([]byte, h.Size())
		if _, err := rand.Read(d); err != nil {
			tb.Fatal(err)
		}
		m[h] = d
	}
	return m
}

// extended computes H(old ‖ digest) per bank in software.
func extended(old, digests map[crypto.Hash][]byte) map[crypto.Hash][]byte {
	out := make(map[crypto.Hash][]byte, len(old))
	for h, v := range old {
		w := h.New()
		w.Write(v)
		w.Write(digests[h])
		out[h] = w.Sum(nil)
	}
	return out
}

func mustReadPCR(tb testing.TB, d *tpm.Device, pcr int) map[crypto.Hash][]byte {
	tb.Helper()
	v, err := d.ReadPCR(pcr)
	if err != nil {
		tb.Fatalf("ReadPCR(%d): %v", pcr, err)
	}
	return v
}

func mustExtend(tb testing.TB, d *tpm.Device, pcr int) map[crypto.Hash][]byte {
	tb.Helper()
	dg := randomDigests(tb, d.Banks())
	if err := d.Extend(pcr, dg); err != nil {
		tb.Fatalf("Extend(%d): %v", pcr, err)
	}
	return dg
}

func mustClock(tb testing.TB, d *tpm.Device) tpm.ClockInfo {
	tb.Helper()
	c, err := d.ClockInfo()
	if err != nil {
		tb.Fatalf("ClockInfo: %v", err)
	}
	return c
}

func mustAK(tb testing.TB, d *tpm.Device, opts tpm.AKOptions) *tpm.AK {
	tb.Helper()
	ak, err := d.LoadOrCreateAK(opts)
	if err != nil {
		tb.Fatalf("LoadOrCreateAK(%v): %v", opts.Algorithm, err)
	}
	return ak
}

func nonce(tb testing.TB) []byte {
	tb.Helper()
	n := make([]byte, 32)
	if _, err := rand.Read(n); err != nil {
		tb.Fatal(err)
	}
	return n
}
