package attest

import (
	"bytes"
	"crypto"
	"slices"

	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/evidence"
)

// VerifyOptions say what the verifier trusts and expects.
type VerifyOptions struct {
	// Nonce is the verifier's fresh nonce for this request
	// (evidence.MinNonceSize to evidence.MaxNonceSize bytes).
	Nonce []byte
	// AKPublic pins the attestation key by its TPMT_PUBLIC bytes, and AKKey
	// by its public key (*ecdsa.PublicKey or *rsa.PublicKey). At least one
	// must be set; the evidence's AK must equal every one that is.
	AKPublic []byte
	AKKey    crypto.PublicKey
	// Banks are the PCR banks the quote must cover, exactly. Empty accepts
	// the banks the quote covers. SHA-1 is refused in either case unless
	// AllowSHA1 is set.
	Banks     []crypto.Hash
	AllowSHA1 bool
	// State is what the previous verification of this agent returned
	// (Result.State); nil verifies the boot's log from record 0.
	State *State
	// StartingValues are the PCR values the verifier expects before a new
	// boot's first record, per bank, when it knows them otherwise than
	// from a firmware log. A bank not listed must start at the PCR's reset
	// value, or, when the evidence's firmware log verified, at the value
	// the log's events on the agent's PCR fold to (shim's MokList events
	// on PCR 14); a bank given here and derived from the log must agree.
	StartingValues map[crypto.Hash][]byte
	// BootPCRs are the PCRs the quote must cover besides the evidence's
	// own, in every quoted bank: DefaultBootPCRs (0 to 9), or nil for the
	// agent's PCR only. The evidence's PCR, if listed, counts once. A
	// firmware log in the evidence is verified against their quoted
	// values (bootchain.Verify) and derives the agent PCR's start; without
	// BootPCRs it is not read.
	BootPCRs []int
}

// Verify checks evidence from an agent and returns what it proves. In
// order: the AK is the pinned one and a restricted signing key; the
// signature over the TPMS_ATTEST verifies; it is a quote whose qualifying
// data answers opts.Nonce under ev.Proof; it selects exactly the agent's
// PCR and opts.BootPCRs in the required banks; the claimed PCR values hash
// to its PCR digest; the TPM counters and clock do not go backwards from
// opts.State; the firmware log, when the evidence carries one, replays to
// the quoted boot PCRs (bootchain.Verify; or, without one, the State's
// chain of the same boot still matches them); the log decodes, continues
// the State's record numbers (or starts a new boot with a boot header),
// every record's digests are the hashes of its content, and the log
// replays from the State's values (or the boot header's, which must be
// the expected starting values, derived from the firmware log when one
// verified) to the quoted value in every quoted bank. Only then are record
// contents interpreted. Any failure is a *VerifyError; no Result is
// returned with it.
//
// Verify with a State gives the same Result and the same new State as
// Verify of the same quote with the whole log from record 0.
func Verify(ev *evidence.Evidence, opts VerifyOptions) (*Result, error) {
	if err := checkOptions(ev, &opts); err != nil {
		return nil, err
	}
	ak, err := stateAK(opts.State, ev.AKPublic)
	if err != nil {
		return nil, err
	}
	if err := checkPinned(&opts, ev.AKPublic, ak); err != nil {
		return nil, err
	}
	sig, err := parseSignature(ev.Signature)
	if err != nil {
		return nil, fail(BadSignature, err, "signature does not parse")
	}
	if err := verifySignature(ak, sig, ev.Attest); err != nil {
		return nil, err
	}
	// From here on, the TPMS_ATTEST bytes are the TPM's own.
	q, err := parseQuote(ev.Attest)
	if err != nil {
		return nil, fail(NotAQuote, err, "")
	}
	ok, err := ev.Proof.Answers(q.extraData, opts.Nonce)
	if err != nil {
		return nil, fail(NonceMismatch, err, "inclusion proof")
	}
	if !ok {
		return nil, fail(NonceMismatch, nil, "qualifying data is not derived from this nonce")
	}
	bootPCRs, err := normalBootPCRs(opts.BootPCRs, ev.PCR)
	if err != nil {
		return nil, err
	}
	banks, err := checkSelection(q, ev.PCR, bootPCRs, &opts)
	if err != nil {
		return nil, err
	}
	all, err := checkPCRDigest(q, ev.PCRs, sig.hash)
	if err != nil {
		return nil, err
	}
	newBoot, err := checkClock(opts.State, q.clock)
	if err != nil {
		return nil, err
	}
	boot, err := checkBootChain(ev, &opts, bootPCRs, all, newBoot)
	if err != nil {
		return nil, err
	}
	// The expected start is checked against a new boot's header, and
	// against a chain verified within a boot; otherwise it is neither
	// used nor able to fail.
	var expect map[crypto.Hash][]byte
	if newBoot || boot.chain != nil {
		if expect, err = expectedStart(ev.PCR, banks, opts.StartingValues, boot); err != nil {
			return nil, err
		}
	}
	rp := replay{ev: ev, opts: &opts, clock: q.clock, banks: banks, quoted: all, newBoot: newBoot, expect: expect}
	st, h, err := rp.run()
	if err != nil {
		return nil, err
	}
	// A chain verified within a boot whose header was verified before: its
	// derived start must be the header's.
	if !newBoot && boot.chain != nil && !boot.fromState && st.boot.start != nil {
		if err := checkStart(st.boot.start, banks, expect); err != nil {
			return nil, err
		}
	}
	st.boot.chain = boot.chain
	st.akPublic, st.ak = bytes.Clone(ev.AKPublic), ak
	res := &Result{
		pcr: ev.PCR, bootID: st.bootID, rebooted: newBoot && opts.State != nil,
		clock: q.clock, quoted: all, bootStep: boot,
		from: ev.FromRecord, next: st.next, state: st, history: h,
	}
	return res, nil
}

// stateAK parses the evidence's AK, or takes it from the State when the
// previous verification parsed the same bytes: parseAK is a function of
// the bytes alone, so its answer for them stands. Whether the key is the
// pinned one is checked afresh every time.
func stateAK(prev *State, pub []byte) (*akKey, error) {
	if prev != nil && prev.ak != nil && bytes.Equal(prev.akPublic, pub) {
		return prev.ak, nil
	}
	return parseAK(pub)
}

// checkOptions validates what the caller passed.
func checkOptions(ev *evidence.Evidence, opts *VerifyOptions) error {
	switch {
	case ev == nil:
		return fail(BadOptions, nil, "no evidence")
	case opts.AKPublic == nil && opts.AKKey == nil:
		return fail(BadOptions, nil, "no pinned attestation key")
	case !opts.AllowSHA1 && slices.Contains(opts.Banks, crypto.SHA1):
		return fail(BadOptions, nil, "sha1 bank required but not allowed")
	case opts.State != nil && opts.State.inv == nil:
		return fail(BadOptions, nil, "state was not made by Verify or decoded")
	case opts.State != nil && opts.State.pcr != ev.PCR:
		return fail(WrongPCR, nil, "evidence for pcr %d, state for pcr %d", ev.PCR, opts.State.pcr)
	}
	if err := cel.CheckPCR(ev.PCR); err != nil {
		return fail(PCRSelection, nil, "evidence names %v", err)
	}
	if err := evidence.CheckNonce(opts.Nonce); err != nil {
		return fail(BadOptions, err, "")
	}
	for h, v := range opts.StartingValues {
		if len(v) != h.Size() {
			return fail(BadOptions, nil, "starting %v value of %d bytes", h, len(v))
		}
	}
	return nil
}

// checkSelection checks that the quote selects exactly ev.PCR and the boot
// PCRs in every bank it covers, that those banks are the required ones,
// and returns them in selection order.
func checkSelection(q *quoteInfo, pcr int, boot []int, opts *VerifyOptions) ([]crypto.Hash, error) {
	want := slices.Sorted(slices.Values(append(slices.Clone(boot), pcr)))
	var banks []crypto.Hash
	for _, s := range q.selection {
		if slices.Contains(banks, s.bank) {
			return nil, fail(PCRSelection, nil, "bank %v selected twice", s.bank)
		}
		if !slices.Equal(s.pcrs, want) {
			return nil, fail(PCRSelection, nil, "bank %v selects pcrs %v, want %v", s.bank, s.pcrs, want)
		}
		banks = append(banks, s.bank)
	}
	if len(banks) == 0 {
		return nil, fail(PCRSelection, nil, "quote selects no pcr")
	}
	if !opts.AllowSHA1 && slices.Contains(banks, crypto.SHA1) {
		return nil, fail(PCRSelection, nil, "quote covers the sha1 bank, which is not allowed")
	}
	if len(opts.Banks) > 0 {
		want := slices.Compact(slices.Sorted(slices.Values(opts.Banks)))
		got := slices.Sorted(slices.Values(banks))
		if !slices.Equal(want, got) {
			return nil, fail(PCRSelection, nil, "quote covers banks %v, verifier requires %v", got, want)
		}
	}
	return banks, nil
}

// checkPCRDigest checks the claimed PCR values against the selection (in
// its order: banks as selected, PCRs ascending) and the quote's digest
// (computed with the signature's hash, TPM 2.0 Part 3 §18.4), and returns
// them per bank and PCR.
func checkPCRDigest(q *quoteInfo, vals []evidence.PCRValue, h crypto.Hash) (map[crypto.Hash]map[int][]byte, error) {
	n := 0
	for _, s := range q.selection {
		n += len(s.pcrs)
	}
	if len(vals) != n {
		return nil, fail(PCRDigest, nil, "%d pcr values claimed, quote selects %d", len(vals), n)
	}
	var buf [evidence.MaxPCRsPerBank * 64]byte
	cat := buf[:0] // the values in selection order, the digest's input
	out := make(map[crypto.Hash]map[int][]byte, len(q.selection))
	i := 0
	for _, s := range q.selection {
		out[s.bank] = make(map[int][]byte, len(s.pcrs))
		for _, p := range s.pcrs {
			v := vals[i]
			if v.Bank != s.bank || v.Index != p {
				return nil, fail(PCRDigest, nil, "value %d is %v pcr %d, quote selects %v pcr %d", i, v.Bank, v.Index, s.bank, p)
			}
			if len(v.Digest) != s.bank.Size() {
				return nil, fail(PCRDigest, nil, "%v value of %d bytes", v.Bank, len(v.Digest))
			}
			cat = append(cat, v.Digest...)
			out[v.Bank][p] = bytes.Clone(v.Digest)
			i++
		}
	}
	var sumBuf [64]byte
	if !bytes.Equal(sum(h, cat, sumBuf[:0]), q.pcrDigest) {
		return nil, fail(PCRDigest, nil, "claimed pcr values do not hash to the quote's pcr digest")
	}
	return out, nil
}

// checkClock compares the quote's clock information with the State's and
// reports whether the quote is from a new boot (no State, or a TPM reset
// since). resetCount never decreases; within a boot neither restartCount
// nor the clock does.
func checkClock(prev *State, c cel.ClockInfo) (newBoot bool, err error) {
	if prev == nil {
		return true, nil
	}
	p := prev.clock
	switch {
	case c.ResetCount < p.ResetCount:
		return false, fail(ResetRegressed, nil, "resetCount %d, state has %d", c.ResetCount, p.ResetCount)
	case c.ResetCount > p.ResetCount:
		return true, nil
	case c.RestartCount < p.RestartCount:
		return false, fail(RestartRegressed, nil, "restartCount %d, state has %d", c.RestartCount, p.RestartCount)
	case c.Clock < p.Clock:
		return false, fail(ClockRegressed, nil, "clock %d ms, state has %d ms", c.Clock, p.Clock)
	}
	return false, nil
}
