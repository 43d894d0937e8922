package attest

import (
	"crypto"
	"encoding/binary"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/evidence"
	"github.com/bpfattest/bpfattest/internal/tpm"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
	"github.com/bpfattest/bpfattest/measure"
)

// TestTamperLog proves each way of changing a genuine log is caught by its
// own check, at the record concerned: the quote still verifies, so only
// the log can give the change away.
func TestTamperLog(t *testing.T) {
	a := newTestAgent(t, "sim", tpm.AKECCP256)
	runScenario(a)
	nonce := freshNonce(t, 0)
	ev := a.quote(nonce, 0)
	if _, err := Verify(ev, a.opts(nonce)); err != nil {
		t.Fatal(err)
	}
	const k = 4 // a BPF record in the middle of the log
	cases := []struct {
		name   string
		reason string
		edit   func(recs []cel.Record) []cel.Record
		check  Check
		record uint64
	}{
		{"modified", "content changed, digests left: the digest no longer hashes the content",
			func(r []cel.Record) []cel.Record { r[k].Content[len(r[k].Content)-1] ^= 1; return r }, DigestMismatch, k},
		{"modified and rehashed", "content changed and digests recomputed: the PCR does not contain them",
			func(r []cel.Record) []cel.Record {
				r[k].Content[len(r[k].Content)-1] ^= 1
				return rehash(t, r, k)
			}, ReplayMismatch, 0},
		{"removed", "a record dropped from the middle: the record numbers skip",
			func(r []cel.Record) []cel.Record { return append(r[:k:k], r[k+1:]...) }, RecordGap, k + 1},
		{"reordered", "two records swapped: the record numbers go backwards",
			func(r []cel.Record) []cel.Record { r[k], r[k+1] = r[k+1], r[k]; return r }, RecordGap, k + 1},
		{"inserted", "a record added with its own number: the numbers repeat",
			func(r []cel.Record) []cel.Record {
				return append(append(r[:k+1:k+1], r[k]), r[k+1:]...)
			}, RecordGap, k},
		{"inserted and renumbered", "a record added and the rest renumbered: the PCR does not contain it",
			func(r []cel.Record) []cel.Record {
				out := append(append(r[:k+1:k+1], r[k]), r[k+1:]...)
				for i := range out {
					out[i].RecNum = uint64(i)
				}
				return out
			}, ReplayMismatch, 0},
		{"truncated", "the last record withheld: the PCR contains more than the log",
			func(r []cel.Record) []cel.Record { return r[:len(r)-1] }, ReplayMismatch, 0},
		{"other pcr", "a record claims another PCR",
			func(r []cel.Record) []cel.Record { r[k].PCR = 15; return r }, WrongPCR, k},
		{"bank dropped", "a record carries fewer banks than the others",
			func(r []cel.Record) []cel.Record { r[k].Digests = r[k].Digests[1:]; return r }, BankMismatch, k},
		{"boot header removed", "the boot header dropped and the rest renumbered",
			func(r []cel.Record) []cel.Record {
				r = r[1:]
				for i := range r {
					r[i].RecNum = uint64(i)
				}
				return r
			}, MissingBootHeader, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bad := cloneEvidence(ev)
			bad.Log = encodeLog(t, c.edit(decodeLog(t, ev)))
			_, err := Verify(bad, a.opts(nonce))
			ve := wantCheck(t, err, c.check)
			if c.record != 0 && (!ve.HasRecord || ve.Record != c.record) {
				t.Errorf("%s: error at record %d (has %v), want %d: %v", c.reason, ve.Record, ve.HasRecord, c.record, err)
			}
		})
	}
	t.Run("cut mid-record", func(t *testing.T) {
		bad := cloneEvidence(ev)
		bad.Log = bad.Log[:len(bad.Log)-3]
		_, err := Verify(bad, a.opts(nonce))
		wantCheck(t, err, LogDecode)
	})
}

// rehash recomputes record k's digests from its (changed) content.
func rehash(t *testing.T, recs []cel.Record, k int) []cel.Record {
	t.Helper()
	r, err := cel.NewRecord(recs[k].RecNum, recs[k].PCR, recs[k].Banks(), recs[k].Type, recs[k].Content)
	if err != nil {
		t.Fatal(err)
	}
	recs[k] = r
	return recs
}

// TestTamperQuote proves each way of changing the quote side of genuine
// evidence is caught by its own check.
func TestTamperQuote(t *testing.T) {
	a := newTestAgent(t, "sim", tpm.AKECCP256)
	runScenario(a)
	nonce := freshNonce(t, 0)
	ev := a.quote(nonce, 0)
	other, err := a.dev.LoadOrCreateAK(tpm.AKOptions{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("wrong nonce", func(t *testing.T) {
		// The verifier asked with another nonce than the quote answers.
		_, err := Verify(ev, a.opts(freshNonce(t, 1)))
		wantCheck(t, err, NonceMismatch)
	})
	t.Run("replayed old quote", func(t *testing.T) {
		// An old quote served again to a verifier with a fresh nonce, with
		// a State from that very quote.
		res, err := Verify(ev, a.opts(nonce))
		if err != nil {
			t.Fatal(err)
		}
		opts := a.opts(freshNonce(t, 2))
		opts.State = res.State()
		replayed := cloneEvidence(ev)
		replayed.Log, replayed.FromRecord = nil, res.NextRecord()
		_, err = Verify(replayed, opts)
		wantCheck(t, err, NonceMismatch)
	})
	t.Run("pcr value lies", func(t *testing.T) {
		// The agent claims another PCR value than the quote signed.
		bad := cloneEvidence(ev)
		bad.PCRs[0].Digest[0] ^= 1
		_, err := Verify(bad, a.opts(nonce))
		wantCheck(t, err, PCRDigest)
	})
	t.Run("swapped ak", func(t *testing.T) {
		// Evidence names another AK of the same TPM than the pinned one.
		bad := cloneEvidence(ev)
		bad.AKPublic = other.PublicArea()
		_, err := Verify(bad, a.opts(nonce))
		wantCheck(t, err, AKMismatch)
		// Pinning that other AK does not make the real AK's quote verify.
		opts := a.opts(nonce)
		opts.AKPublic = other.PublicArea()
		_, err = Verify(bad, opts)
		wantCheck(t, err, BadSignature)
	})
	t.Run("signature flipped", func(t *testing.T) {
		bad := cloneEvidence(ev)
		bad.Signature[len(bad.Signature)-1] ^= 1
		_, err := Verify(bad, a.opts(nonce))
		wantCheck(t, err, BadSignature)
	})
	t.Run("attest flipped", func(t *testing.T) {
		bad := cloneEvidence(ev)
		bad.Attest[len(bad.Attest)-1] ^= 1
		_, err := Verify(bad, a.opts(nonce))
		wantCheck(t, err, BadSignature)
	})
	t.Run("not restricted", func(t *testing.T) {
		// An AK that would sign any digest (restricted cleared) is refused
		// even when pinned: it could sign a forged TPMS_ATTEST.
		pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](ev.AKPublic)
		if err != nil {
			t.Fatal(err)
		}
		pub.ObjectAttributes.Restricted = false
		bad := cloneEvidence(ev)
		bad.AKPublic = tpm2.Marshal(pub)
		opts := a.opts(nonce)
		opts.AKPublic = bad.AKPublic
		_, err = Verify(bad, opts)
		wantCheck(t, err, AKNotRestricted)
	})
	t.Run("other pcr selected", func(t *testing.T) {
		// The quote covers PCR 0 as well as the agent's.
		q, err := a.dev.Quote(a.ak, evidence.QualifyingData(nonce), []int{0, 14}, []crypto.Hash{crypto.SHA256})
		if err != nil {
			t.Fatal(err)
		}
		bad := evidenceOf(a.ak, q, 14)
		bad.Log = ev.Log
		_, err = Verify(bad, a.opts(nonce))
		wantCheck(t, err, PCRSelection)
	})
	t.Run("other bank selected", func(t *testing.T) {
		// The verifier requires sha256; the quote covers sha384 only.
		q, err := a.dev.Quote(a.ak, evidence.QualifyingData(nonce), []int{14}, []crypto.Hash{crypto.SHA384})
		if err != nil {
			t.Fatal(err)
		}
		bad := evidenceOf(a.ak, q, 14)
		bad.Log = ev.Log
		_, err = Verify(bad, a.opts(nonce))
		wantCheck(t, err, PCRSelection)
	})
	t.Run("evidence names another pcr", func(t *testing.T) {
		bad := cloneEvidence(ev)
		bad.PCR = 15
		_, err := Verify(bad, a.opts(nonce))
		wantCheck(t, err, PCRSelection)
	})
}

// TestTamperClockSim proves an older quote cannot be verified against a
// newer State of the same boot: the TPM clock went backwards.
func TestTamperClockSim(t *testing.T) {
	a := newTestAgent(t, "sim", tpm.AKECCP256)
	runScenario(a)
	n1, n2 := freshNonce(t, 1), freshNonce(t, 2)
	old := a.quote(n1, 0)
	oldClock := quoteClock(t, old)
	waitClock(t, a.dev, oldClock.Clock)
	newer := a.quote(n2, 0)
	res, err := Verify(newer, a.opts(n2))
	if err != nil {
		t.Fatal(err)
	}
	opts := a.opts(n1)
	opts.State = res.State()
	stale := cloneEvidence(old)
	stale.Log, stale.FromRecord = nil, res.NextRecord()
	_, err = Verify(stale, opts)
	wantCheck(t, err, ClockRegressed)
}

func quoteClock(t *testing.T, ev *evidence.Evidence) cel.ClockInfo {
	t.Helper()
	q, err := parseQuote(ev.Attest)
	if err != nil {
		t.Fatal(err)
	}
	return q.clock
}

// waitClock polls the TPM until its clock passes ms: a condition, not a
// timed sleep.
func waitClock(t *testing.T, dev *tpm.Device, ms uint64) {
	t.Helper()
	for {
		c, err := dev.ClockInfo()
		if err != nil {
			t.Fatal(err)
		}
		if c.Clock > ms {
			return
		}
	}
}

// TestTamperReboot runs on swtpm, whose resets are real platform resets
// (resetCount grows, PCRs clear). It proves: a legitimate reboot verifies
// from the new boot's header with Rebooted set; a new boot's log served
// without its header (continuing the old State's numbering) is
// MissingBootHeader; and a quote from the earlier boot against the later
// State is ResetRegressed.
func TestTamperReboot(t *testing.T) {
	sw := tpmtest.StartSwtpm(t, tpmtest.SwtpmOptions{})
	a := newTestAgent(t, sw.Spec(), tpm.AKECCP256)
	runScenario(a)
	n0 := freshNonce(t, 0)
	boot1 := a.quote(n0, 0)
	res1, err := Verify(boot1, a.opts(n0))
	if err != nil {
		t.Fatal(err)
	}

	a.close()
	if err := sw.Reboot(); err != nil {
		t.Fatal(err)
	}
	a.bootID = "6a1c0f2e-1b2c-4d3e-8f40-000000000002"
	a.open()
	for range 12 { // enough records that the old NextRecord lands inside the new log
		a.load(fixtureMeasurement(t, "counter.signed.lskel.h", measure.KernelCheckUnavailable), measure.OutcomeLoaded)
	}

	n1 := freshNonce(t, 1)
	t.Run("no boot header", func(t *testing.T) {
		ev := a.quote(n1, res1.NextRecord())
		opts := a.opts(n1)
		opts.State = res1.State()
		_, err := Verify(ev, opts)
		wantCheck(t, err, MissingBootHeader)
	})
	var res2 *Result
	t.Run("reboot", func(t *testing.T) {
		ev := a.quote(n1, 0)
		opts := a.opts(n1)
		opts.State = res1.State()
		res2, err = Verify(ev, opts)
		if err != nil {
			t.Fatal(err)
		}
		if !res2.Rebooted() || res2.BootID() == res1.BootID() || res2.Clock().ResetCount != res1.Clock().ResetCount+1 {
			t.Errorf("rebooted %v boot %q reset %d (was %q, %d)", res2.Rebooted(), res2.BootID(), res2.Clock().ResetCount, res1.BootID(), res1.Clock().ResetCount)
		}
		if n := len(res2.Programs()); n != 12 {
			t.Errorf("%d programs after reboot, want the new boot's 12", n)
		}
		// The verdict says what of the previous boot was never verified.
		pb := res2.History().PreviousBoot
		if pb == nil || pb.BootID != res1.BootID() || pb.ResetCount != res1.Clock().ResetCount || pb.NextRecord != res1.NextRecord() {
			t.Errorf("previous boot %+v, want boot %q reset %d unverified from record %d", pb, res1.BootID(), res1.Clock().ResetCount, res1.NextRecord())
		}
	})
	t.Run("reset count regressed", func(t *testing.T) {
		if res2 == nil {
			t.Skip("reboot case failed")
		}
		opts := a.opts(n0)
		opts.State = res2.State()
		_, err := Verify(boot1, opts)
		wantCheck(t, err, ResetRegressed)
	})
	t.Run("forged boot header", func(t *testing.T) {
		// A log whose header claims the old boot's resetCount.
		ev := a.quote(n1, 0)
		recs := decodeLog(t, ev)
		bi, err := cel.ParseBootInfo(recs[0].Content)
		if err != nil {
			t.Fatal(err)
		}
		bi.ResetCount--
		recs[0].Content, err = bi.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		ev.Log = encodeLog(t, rehash(t, recs, 0))
		_, err = Verify(ev, a.opts(n1))
		wantCheck(t, err, ReplayMismatch)
	})
}

// TestTamperRestartRegressed proves restartCount cannot go backwards
// within a boot, using a State whose clock is ahead of the quote's.
func TestTamperRestartRegressed(t *testing.T) {
	a := newTestAgent(t, "sim", tpm.AKECCP256)
	a.load(fixtureMeasurement(t, "counter.signed.lskel.h", measure.KernelCheckUnavailable), measure.OutcomeLoaded)
	nonce := freshNonce(t, 0)
	ev := a.quote(nonce, 0)
	res, err := Verify(ev, a.opts(nonce))
	if err != nil {
		t.Fatal(err)
	}
	ahead := *res.State()
	ahead.clock.RestartCount++
	opts := a.opts(nonce)
	opts.State = &ahead
	stale := cloneEvidence(ev)
	stale.Log, stale.FromRecord = nil, res.NextRecord()
	_, err = Verify(stale, opts)
	wantCheck(t, err, RestartRegressed)
}

// TestParseQuoteRefuses proves the TPMS_ATTEST reader names what is wrong:
// another structure type, a wrong magic, trailing bytes and truncation.
func TestParseQuoteRefuses(t *testing.T) {
	a := newTestAgent(t, "sim", tpm.AKECCP256)
	ev := a.quote(freshNonce(t, 0), 0)
	if _, err := parseQuote(ev.Attest); err != nil {
		t.Fatal(err)
	}
	certify := append([]byte(nil), ev.Attest...)
	binary.BigEndian.PutUint16(certify[4:], 0x8017) // TPM_ST_ATTEST_CERTIFY
	magic := append([]byte(nil), ev.Attest...)
	magic[0] ^= 1
	for name, b := range map[string][]byte{
		"certify":   certify,
		"magic":     magic,
		"trailing":  append(append([]byte(nil), ev.Attest...), 0),
		"truncated": ev.Attest[:len(ev.Attest)-1],
	} {
		if _, err := parseQuote(b); err == nil {
			t.Errorf("%s: parsed", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}
