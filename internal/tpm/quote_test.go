package tpm_test

import (
	"bytes"
	"crypto"
	"errors"
	"slices"
	"testing"

	"github.com/bpfattest/bpfattest/internal/tpm"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
)

var akAlgorithms = []tpm.AKAlgorithm{tpm.AKECCP256, tpm.AKRSA2048}

// TestQuote proves, for both AK types on both TPMs, that a quote verifies
// in Go, carries the qualifying data, that its PCR values are the ones
// ReadPCR sees (selection order: bank, then index), and that its clock
// matches ClockInfo.
func TestQuote(t *testing.T) {
	tpmtest.ForEach(t, func(t *testing.T, tg tpmtest.Target) {
		d := tpmtest.Open(t, tg.Spec)
		mustExtend(t, d, testPCR)
		for _, alg := range akAlgorithms {
			t.Run(alg.String(), func(t *testing.T) {
				ak := mustAK(t, d, tpm.AKOptions{Algorithm: alg, StateDir: t.TempDir()})
				n := nonce(t)
				banks := []crypto.Hash{crypto.SHA384, crypto.SHA256} // out of order on purpose
				q, err := d.Quote(ak, n, []int{testPCR, 0, 7}, banks)
				if err != nil {
					t.Fatal(err)
				}
				verifyQuote(t, ak, q, n)
				var order []tpm.PCRKey
				for _, v := range q.PCRs {
					order = append(order, tpm.PCRKey{Bank: v.Bank, Index: v.Index})
					if want := mustReadPCR(t, d, v.Index)[v.Bank]; !bytes.Equal(v.Digest, want) {
						t.Errorf("%v PCR %d = %x, ReadPCR says %x", v.Bank, v.Index, v.Digest, want)
					}
				}
				wantOrder := []tpm.PCRKey{
					{Bank: crypto.SHA256, Index: 0}, {Bank: crypto.SHA256, Index: 7}, {Bank: crypto.SHA256, Index: testPCR},
					{Bank: crypto.SHA384, Index: 0}, {Bank: crypto.SHA384, Index: 7}, {Bank: crypto.SHA384, Index: testPCR},
				}
				if !slices.Equal(order, wantOrder) {
					t.Errorf("PCR order %v, want %v", order, wantOrder)
				}
				c := mustClock(t, d)
				if q.Clock.ResetCount != c.ResetCount || q.Clock.RestartCount != c.RestartCount || q.Clock.Clock > c.Clock {
					t.Errorf("quote clock %+v, then ClockInfo %+v", q.Clock, c)
				}
			})
		}
	})
}

// TestQuoteAllPCRs proves that a quote over more PCRs than one
// TPM2_PCR_Read returns (24 PCRs in 2 banks) still carries values that
// match its digest.
func TestQuoteAllPCRs(t *testing.T) {
	tpmtest.ForEach(t, func(t *testing.T, tg tpmtest.Target) {
		d := tpmtest.Open(t, tg.Spec)
		ak := mustAK(t, d, tpm.AKOptions{})
		all := make([]int, d.PCRCount())
		for i := range all {
			all[i] = i
		}
		n := nonce(t)
		q, err := d.Quote(ak, n, all, []crypto.Hash{crypto.SHA1, crypto.SHA256})
		if err != nil {
			t.Fatal(err)
		}
		if len(q.PCRs) != 48 {
			t.Fatalf("%d PCR values, want 48", len(q.PCRs))
		}
		verifyQuote(t, ak, q, n)
	})
}

// TestQuoteRefusesBadRequests proves argument checks happen before the TPM
// is asked.
func TestQuoteRefusesBadRequests(t *testing.T) {
	tpmtest.ForEach(t, func(t *testing.T, tg tpmtest.Target) {
		d := tpmtest.Open(t, tg.Spec)
		ak := mustAK(t, d, tpm.AKOptions{})
		sha256 := []crypto.Hash{crypto.SHA256}
		cases := []struct {
			name  string
			qd    []byte
			pcrs  []int
			banks []crypto.Hash
			want  error
		}{
			{"no qualifying data", nil, []int{0}, sha256, tpm.ErrBadQuoteRequest},
			{"qualifying data too long", make([]byte, 67), []int{0}, sha256, tpm.ErrBadQuoteRequest},
			{"no pcrs", []byte{1}, nil, sha256, tpm.ErrBadQuoteRequest},
			{"no banks", []byte{1}, []int{0}, nil, tpm.ErrBadQuoteRequest},
			{"duplicate pcr", []byte{1}, []int{3, 3}, sha256, tpm.ErrBadQuoteRequest},
			{"duplicate bank", []byte{1}, []int{3}, []crypto.Hash{crypto.SHA256, crypto.SHA256}, tpm.ErrBadQuoteRequest},
			{"pcr out of range", []byte{1}, []int{24}, sha256, tpm.ErrBadPCR},
			{"unknown bank", []byte{1}, []int{0}, []crypto.Hash{crypto.SHA3_256}, tpm.ErrBankNotActive},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				if _, err := d.Quote(ak, c.qd, c.pcrs, c.banks); !errors.Is(err, c.want) {
					t.Fatalf("Quote = %v, want %v", err, c.want)
				}
			})
		}
		// The TPM's own limit on qualifying data agrees: 66 bytes pass.
		q, err := d.Quote(ak, make([]byte, 66), []int{0}, sha256)
		if err != nil {
			t.Fatalf("Quote with 66 bytes of qualifying data: %v", err)
		}
		verifyQuote(t, ak, q, make([]byte, 66))
	})
}

// TestQuoteInactiveBank proves a quote over an unallocated bank is refused.
func TestQuoteInactiveBank(t *testing.T) {
	s := tpmtest.StartSwtpm(t, tpmtest.SwtpmOptions{PCRBanks: []string{"sha256"}})
	d := tpmtest.Open(t, s.Spec())
	ak := mustAK(t, d, tpm.AKOptions{})
	if _, err := d.Quote(ak, []byte{1}, []int{0}, []crypto.Hash{crypto.SHA1}); !errors.Is(err, tpm.ErrBankNotActive) {
		t.Fatalf("Quote over sha1 on a sha256-only TPM = %v, want ErrBankNotActive", err)
	}
}
