package bootchain_test

import (
	"crypto"
	"errors"
	"slices"
	"testing"

	"github.com/bpfattest/bpfattest/bootchain"
	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
)

// FuzzVerify feeds arbitrary logs to Verify, quoted with the values the log
// itself folds to when the test reader can read it (so that mutated but
// well-formed logs reach the replay, Secure Boot, GRUB and agent code),
// else with reset values. Verify must return a State or a *bootchain.Error,
// never panic. Seeds: the real logs from go-attestation's test data and the
// crashers kept in testdata/fuzz/FuzzVerify.
func FuzzVerify(f *testing.F) {
	for _, b := range readLogs(f) {
		f.Add(b)
	}
	for _, b := range testutil.GoAttestationLogs(f, "short_no_action_eventlog") {
		f.Add(b)
	}
	pcrs := append(slices.Clone(bootPCRs), agentPCR)
	f.Fuzz(func(t *testing.T, b []byte) {
		quoted := map[crypto.Hash]map[int][]byte{crypto.SHA256: {}}
		for _, p := range pcrs {
			quoted[crypto.SHA256][p] = make([]byte, crypto.SHA256.Size())
		}
		if l, err := tpmtest.ParseFirmwareLog(b); err == nil {
			quoted = folded(l, pcrs)
		}
		st, err := bootchain.Verify(b, quoted, bootchain.Options{AllowSHA1: true})
		var e *bootchain.Error
		switch {
		case err == nil && st == nil:
			t.Fatal("no State and no error")
		case err != nil && (st != nil || !errors.As(err, &e)):
			t.Fatalf("%v, %v: want a *bootchain.Error alone", st, err)
		}
	})
}
