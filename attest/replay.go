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
	banks   []crypto.Hash                  // quoted banks
	quoted  map[crypto.Hash]map[int][]byte // quoted values, per bank and PCR
	newBoot bool
	expect  map[crypto.Hash][]byte // a new boot's expected starting values, per quoted bank
}

// run decodes the log, checks that it continues the State (or starts a
// boot), replays it to the quoted values, and only then interprets the
// records' contents. The log is scanned three times, each time record by
// record with nothing kept: decoded whole (a malformed record fails the
// log before anything else is checked), replayed, interpreted. Decoding
// again costs a few field headers per record; keeping the records would
// cost allocations that grow with them.
func (r *replay) run() (*State, History, error) {
	n, first, err := r.decode()
	if err != nil {
		return nil, History{}, err
	}
	start, boot, err := r.start(n, &first)
	if err != nil {
		return nil, History{}, err
	}
	// One record for the replay and the interpretation: hashing and
	// interpreting its content keeps the escape analysis from keeping its
	// digests on the stack, so they are one allocation for the whole log.
	var rec cel.Record
	final, err := r.replay(start, &rec)
	if err != nil {
		return nil, History{}, err
	}
	// The records are now the ones the quoted PCR covers.
	st := &State{pcr: r.ev.PCR, clock: r.clock, running: final}
	var inv *invEdit
	sc := cel.NewScanner(r.ev.Log)
	if r.newBoot {
		if err := r.checkBoot(boot); err != nil {
			return nil, History{}, err
		}
		st.bootID, st.next = boot.BootID, 1
		inv = newInventory().edit()
		st.boot = stateBoot{start: cloneValues(boot.Start), kernel: cloneKernel(boot.Kernel)}
		sc.Next(&rec) // the boot header, checked above
	} else {
		prev := r.opts.State
		st.bootID, st.next = prev.bootID, prev.next
		inv = prev.inv.edit()
		st.boot = stateBoot{start: prev.boot.start, kernel: prev.boot.kernel}
	}
	h := History{From: r.ev.FromRecord, Next: st.next}
	if r.newBoot && r.opts.State != nil {
		prev := r.opts.State
		h.PreviousBoot = &PreviousBoot{BootID: prev.bootID, ResetCount: prev.clock.ResetCount, NextRecord: prev.next}
	}
	// Records are interpreted event by event: a batch record's events are
	// applied as the records they stand for would be.
	for sc.Next(&rec) {
		if rec.Type != cel.Batch {
			// A plain record is one event; no closure, nothing on the heap.
			ev := cel.Event{RecNum: rec.RecNum, Type: rec.Type, Content: rec.Content}
			if err := r.interpret(inv, &ev, &h); err != nil {
				return nil, History{}, err
			}
			st.next = rec.RecNum + 1
			continue
		}
		if err := rec.EachEvent(func(ev *cel.Event) error { return r.interpret(inv, ev, &h) }); err != nil {
			return nil, History{}, err
		}
		next, err := rec.NextRecNum()
		if err != nil { // the replay counted the same events
			return nil, History{}, failAt(RecordGap, rec.RecNum, err, "")
		}
		st.next = next
	}
	st.inv = inv.done()
	h.Next = st.next
	return st, h, nil
}

// replay replays the log from start, decoding each record into rec, and
// checks that it ends at the quoted values in every quoted bank; it returns
// the values it ends at in every bank of the log.
func (r *replay) replay(start map[crypto.Hash][]byte, rec *cel.Record) (map[crypto.Hash][]byte, error) {
	var rp cel.Replayer // on the stack: Add keeps no reference to it
	if err := rp.Reset(start); err != nil {
		return nil, failAt(BootMismatch, 0, err, "starting values")
	}
	sc := cel.NewScanner(r.ev.Log)
	for sc.Next(rec) {
		if int(rec.PCR) != r.ev.PCR {
			return nil, failAt(WrongPCR, rec.RecNum, nil, "record for pcr %d, evidence for pcr %d", rec.PCR, r.ev.PCR)
		}
		if err := rp.Add(rec); err != nil {
			return nil, replayError(rec.RecNum, err)
		}
	}
	final := rp.Values()
	for _, h := range r.banks {
		v, ok := final[h]
		if !ok {
			return nil, fail(ReplayMismatch, nil, "the log carries no %s digests", cel.BankName(h))
		}
		if q := r.quoted[h][r.ev.PCR]; !bytes.Equal(v, q) {
			return nil, fail(ReplayMismatch, nil, "%s: log replays to %x, quote has %x", cel.BankName(h), v, q)
		}
	}
	return final, nil
}

// firstRecord is what start needs of a log's first record besides a boot
// header's content, which it decodes again (only a new boot has one).
type firstRecord struct {
	recNum uint64
	typ    cel.ContentType
}

// decode checks that the whole log decodes, and returns its number of
// records and its first record.
func (r *replay) decode() (int, firstRecord, error) {
	var first firstRecord
	n := 0
	var digs [4]cel.Digest
	rec := cel.Record{Digests: digs[:0]}
	sc := cel.NewScanner(r.ev.Log)
	for sc.Next(&rec) {
		if n == 0 {
			first = firstRecord{recNum: rec.RecNum, typ: rec.Type}
		}
		n++
	}
	if err := sc.Err(); err != nil {
		var de *cel.DecodeError
		if errors.As(err, &de) && de.HasRecNum {
			return 0, first, failAt(LogDecode, de.RecNum, err, "")
		}
		return 0, first, fail(LogDecode, err, "")
	}
	return n, first, nil
}

// start returns the PCR values the replay starts from: the State's, or for
// a new boot those the boot header states (checked after the replay). n is
// the number of records in the log and first the first one.
func (r *replay) start(n int, first *firstRecord) (map[crypto.Hash][]byte, *cel.BootInfo, error) {
	if !r.newBoot {
		next := r.opts.State.next
		if r.ev.FromRecord != next {
			return nil, nil, fail(RecordGap, nil, "log from record %d, state continues at %d", r.ev.FromRecord, next)
		}
		if n > 0 && first.recNum != next {
			return nil, nil, failAt(RecordGap, first.recNum, nil, "first record, state continues at %d", next)
		}
		return r.opts.State.running, nil, nil
	}
	reboot := ""
	if r.opts.State != nil {
		reboot = "the tpm was reset since the state; "
	}
	if r.ev.FromRecord != 0 || n == 0 || first.recNum != 0 {
		return nil, nil, fail(MissingBootHeader, nil, "%sa new boot's log must start at record 0 (log from record %d, %d records)", reboot, r.ev.FromRecord, n)
	}
	if first.typ != cel.BootHeader {
		return nil, nil, failAt(MissingBootHeader, 0, nil, "%srecord 0 is %v", reboot, first.typ)
	}
	rec, _, err := cel.DecodeRecord(r.ev.Log) // decoded before: no error
	if err != nil {
		return nil, nil, fail(LogDecode, err, "")
	}
	boot, err := cel.ParseBootInfo(rec.Content)
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
