package tpm_test

import (
	"bytes"
	"crypto"
	"testing"

	"github.com/bpfattest/bpfattest/internal/tpm"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
)

// TestSwtpmReboot proves that Reboot is a new boot: PCRs read as zero again,
// ClockInfo's resetCount grows by one, a quote's clock shows the new count,
// and the stored AK reloads (not recreated) and quotes.
func TestSwtpmReboot(t *testing.T) {
	s := tpmtest.StartSwtpm(t, tpmtest.SwtpmOptions{})
	d := tpmtest.Open(t, s.Spec())
	opts := tpm.AKOptions{StateDir: t.TempDir()}
	ak := mustAK(t, d, opts)
	mustExtend(t, d, testPCR)
	before := mustClock(t, d)
	checkNonZero(t, mustReadPCR(t, d, testPCR))

	if err := s.Reboot(); err != nil {
		t.Fatal(err)
	}
	// The same Device keeps working: the swtpm transport connects per command.
	checkZero(t, mustReadPCR(t, d, testPCR))
	after := mustClock(t, d)
	if after.ResetCount != before.ResetCount+1 {
		t.Errorf("resetCount %d after reboot, was %d", after.ResetCount, before.ResetCount)
	}
	checkReloads(t, d, opts, ak)
	q, err := d.Quote(mustAK(t, d, opts), nonce(t), []int{testPCR}, []crypto.Hash{crypto.SHA256})
	if err != nil {
		t.Fatal(err)
	}
	if q.Clock.ResetCount != after.ResetCount {
		t.Errorf("quote resetCount %d, ClockInfo %d", q.Clock.ResetCount, after.ResetCount)
	}
}

// TestSwtpmRestart proves the TPM-goes-away story: while the swtpm process
// is gone, operations fail with an error (no hang, no panic); after it
// comes back on the same state, the same Device works again, PCRs are
// reset, resetCount grew, and the AK reloads from its blob, also through a
// fresh Device.
func TestSwtpmRestart(t *testing.T) {
	s := tpmtest.StartSwtpm(t, tpmtest.SwtpmOptions{})
	d := tpmtest.Open(t, s.Spec())
	opts := tpm.AKOptions{Algorithm: tpm.AKRSA2048, StateDir: t.TempDir()}
	ak := mustAK(t, d, opts)
	mustExtend(t, d, testPCR)
	before := mustClock(t, d)

	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ReadPCR(testPCR); err == nil {
		t.Fatal("ReadPCR succeeded with the TPM process gone")
	}
	if err := d.Extend(testPCR, randomDigests(t, d.Banks())); err == nil {
		t.Fatal("Extend succeeded with the TPM process gone")
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	checkZero(t, mustReadPCR(t, d, testPCR))
	if c := mustClock(t, d); c.ResetCount <= before.ResetCount {
		t.Errorf("resetCount %d after restart, was %d", c.ResetCount, before.ResetCount)
	}
	checkReloads(t, d, opts, ak)
	checkReloads(t, tpmtest.Open(t, s.Spec()), opts, ak)
}

func checkZero(tb testing.TB, pcrs map[crypto.Hash][]byte) {
	tb.Helper()
	for h, v := range pcrs {
		if !bytes.Equal(v, make([]byte, h.Size())) {
			tb.Errorf("%v PCR = %x, want zeros", h, v)
		}
	}
}

func checkNonZero(tb testing.TB, pcrs map[crypto.Hash][]byte) {
	tb.Helper()
	for h, v := range pcrs {
		if bytes.Equal(v, make([]byte, h.Size())) {
			tb.Errorf("%v PCR is zero", h)
		}
	}
}
