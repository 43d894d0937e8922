package attest

import (
	"bytes"
	"crypto"
	"errors"

	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/evidence"
)

// replay checks the evidence's log against the verified quote and builds
// the next State.
type replay struct {
	ev      *evidence.Evidence
	opts    *VerifyOptions
	clock   cel.ClockInfo
	banks   []crypto.Hash          // quoted banks
	quoted  map[crypto.Hash][]byte // quoted values of the agent's PCR
	newBoot bool
	expect  map[crypto.Hash][]byte // a new boot's expected starting values, per quoted bank
}

// run decodes the log, checks that it continues the State (or starts a
// boot), replays it to the quoted values, and only then interprets the
// records' contents.
func (r *replay) run() (*State, *History, error) {
	recs, err := cel.Decode(r.ev.Log)
	if err != nil {
		var de *cel.DecodeError
		if errors.As(err, &de) && de.HasRecNum {
			return nil, nil, failAt(LogDecode, de.RecNum, err, "")
		}
		return nil, nil, fail(LogDecode, err, "")
	}
	start, boot, err := r.start(recs)
	if err != nil {
		return nil, nil, err
	}
	rp, err := cel.NewReplayer(start)
	if err != nil {
		return nil, nil, failAt(BootMismatch, 0, err, "starting values")
	}
	for i := range recs {
		rec := &recs[i]
		if int(rec.PCR) != r.ev.PCR {
			return nil, nil, failAt(WrongPCR, rec.RecNum, nil, "record for pcr %d, evidence for pcr %d", rec.PCR, r.ev.PCR)
		}
		if err := rp.Add(rec); err != nil {
			return nil, nil, replayError(rec.RecNum, err)
		}
	}
	final := rp.Values()
	for _, h := range r.banks {
		v, ok := final[h]
		if !ok {
			return nil, nil, fail(ReplayMismatch, nil, "the log carries no %s digests", cel.BankName(h))
		}
		if !bytes.Equal(v, r.quoted[h]) {
			return nil, nil, fail(ReplayMismatch, nil, "%s: log replays to %x, quote has %x", cel.BankName(h), v, r.quoted[h])
		}
	}
	// The records are now the ones the quoted PCR covers.
	st := &State{pcr: r.ev.PCR, clock: r.clock, running: final}
	first := 0
	var inv *invEdit
	if r.newBoot {
		if err := r.checkBoot(boot); err != nil {
			return nil, nil, err
		}
		st.bootID, st.next = boot.BootID, 1
		inv = newInventory().edit()
		st.boot = stateBoot{start: cloneValues(boot.Start), kernel: cloneKernel(boot.Kernel)}
		first = 1
	} else {
		prev := r.opts.State
		st.bootID, st.next = prev.bootID, prev.next
		inv = prev.inv.edit()
		st.boot = stateBoot{start: prev.boot.start, kernel: prev.boot.kernel}
	}
	h := &History{From: r.ev.FromRecord, Next: st.next}
	if r.newBoot && r.opts.State != nil {
		prev := r.opts.State
		h.PreviousBoot = &PreviousBoot{BootID: prev.bootID, ResetCount: prev.clock.ResetCount, NextRecord: prev.next}
	}
	// Records are interpreted event by event: a batch record's events are
	// applied as the records they stand for would be.
	for i := first; i < len(recs); i++ {
		rec := &recs[i]
		if rec.Type != cel.Batch {
			// A plain record is one event; no closure, nothing on the heap.
			ev := cel.Event{RecNum: rec.RecNum, Type: rec.Type, Content: rec.Content}
			if err := r.interpret(inv, &ev, h); err != nil {
				return nil, nil, err
			}
			st.next = rec.RecNum + 1
			continue
		}
		if err := rec.EachEvent(func(ev *cel.Event) error { return r.interpret(inv, ev, h) }); err != nil {
			return nil, nil, err
		}
		next, err := rec.NextRecNum()
		if err != nil { // the replay counted the same events
			return nil, nil, failAt(RecordGap, rec.RecNum, err, "")
		}
		st.next = next
	}
	st.inv = inv.done()
	h.Next = st.next
	return st, h, nil
}

// start returns the PCR values the replay starts from: the State's, or for
// a new boot those the boot header states (checked after the replay).
func (r *replay) start(recs []cel.Record) (map[crypto.Hash][]byte, *cel.BootInfo, error) {
	if !r.newBoot {
		next := r.opts.State.next
		if r.ev.FromRecord != next {
			return nil, nil, fail(RecordGap, nil, "log from record %d, state continues at %d", r.ev.FromRecord, next)
		}
		if len(recs) > 0 && recs[0].RecNum != next {
			return nil, nil, failAt(RecordGap, recs[0].RecNum, nil, "first record, state continues at %d", next)
		}
		return r.opts.State.running, nil, nil
	}
	reboot := ""
	if r.opts.State != nil {
		reboot = "the tpm was reset since the state; "
	}
	if r.ev.FromRecord != 0 || len(recs) == 0 || recs[0].RecNum != 0 {
		return nil, nil, fail(MissingBootHeader, nil, "%sa new boot's log must start at record 0 (log from record %d, %d records)", reboot, r.ev.FromRecord, len(recs))
	}
	if recs[0].Type != cel.BootHeader {
		return nil, nil, failAt(MissingBootHeader, 0, nil, "%srecord 0 is %v", reboot, recs[0].Type)
	}
	boot, err := cel.ParseBootInfo(recs[0].Content)
	if err != nil {
		return nil, nil, failAt(MissingBootHeader, 0, err, "boot header does not parse")
	}
	return boot.Start, &boot, nil
}

// replayError maps a cel replay failure to its Check.
func replayError(rn uint64, err error) error {
	c := DigestMismatch
	switch {
	case errors.Is(err, cel.ErrSequence):
		c = RecordGap
	case errors.Is(err, cel.ErrBanks), errors.Is(err, cel.ErrUnknownBank):
		c = BankMismatch
	case errors.Is(err, cel.ErrPCRIndex):
		c = WrongPCR
	}
	return failAt(c, rn, err, "")
}

// checkBoot checks a new boot's header against the quote and the starting
// values the verifier expects.
func (r *replay) checkBoot(b *cel.BootInfo) error {
	switch {
	case int(b.PCR) != r.ev.PCR:
		return failAt(BootMismatch, 0, nil, "boot header for pcr %d, evidence for pcr %d", b.PCR, r.ev.PCR)
	case b.ResetCount != r.clock.ResetCount:
		return failAt(BootMismatch, 0, nil, "boot header for resetCount %d, quote has %d", b.ResetCount, r.clock.ResetCount)
	case b.RestartCount > r.clock.RestartCount:
		return failAt(RestartRegressed, 0, nil, "boot header at restartCount %d, quote has %d", b.RestartCount, r.clock.RestartCount)
	case b.Clock > r.clock.Clock:
		return failAt(ClockRegressed, 0, nil, "boot header at clock %d ms, quote has %d ms", b.Clock, r.clock.Clock)
	}
	return checkStart(b.Start, r.banks, r.expect)
}

// resetValue is a PCR's value after TPM2_Startup(CLEAR): all ones for the
// dynamic-launch PCRs 17 to 22, zeros for the others (TCG PC Client
// Platform TPM Profile, PCR attributes).
func resetValue(pcr int, h crypto.Hash) []byte {
	v := make([]byte, h.Size())
	if pcr >= 17 && pcr <= 22 {
		for i := range v {
			v[i] = 0xff
		}
	}
	return v
}

// interpret applies one verified event to the new State's inventory, and
// checks agent-start events against the boot and the quote.
func (r *replay) interpret(inv *invEdit, rec *cel.Event, h *History) error {
	switch rec.Type {
	case cel.BootHeader:
		return contentError(rec.RecNum, nil, "boot header after record 0")
	case cel.AgentStart:
		a, err := cel.ParseAgentStartInfo(rec.Content)
		if err != nil {
			return contentError(rec.RecNum, err, "agent start")
		}
		switch {
		case a.ResetCount != r.clock.ResetCount:
			return failAt(BootMismatch, rec.RecNum, nil, "agent started at resetCount %d, quote has %d", a.ResetCount, r.clock.ResetCount)
		case a.RestartCount > r.clock.RestartCount:
			return failAt(RestartRegressed, rec.RecNum, nil, "agent started at restartCount %d, quote has %d", a.RestartCount, r.clock.RestartCount)
		case a.Clock > r.clock.Clock:
			return failAt(ClockRegressed, rec.RecNum, nil, "agent started at clock %d ms, quote has %d ms", a.Clock, r.clock.Clock)
		}
	}
	return inv.apply(rec.RecNum, rec.Type, rec.Content, h)
}
