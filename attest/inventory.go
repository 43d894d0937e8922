package attest

import (
	"crypto/sha256"
	"fmt"
	"slices"

	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/internal/pmap"
	"github.com/bpfattest/bpfattest/measure"
)

// inventory is what one boot's verified records say is in the kernel: loads
// measured but not yet answered, loads that succeeded and still have
// programs in the kernel, programs no measured load created, loads that
// failed, recoveries, and the latest agent start. It is built by applying
// records in order, and it keeps the records it was built from that still
// matter ("live" records), so that a State can carry it as those records
// and rebuild it exactly.
//
// The live records are a persistent map from record number to entry
// (package pmap), each entry with what its content says, parsed once when
// the record was applied: neither a later verification nor a Result parses
// a kept record again. An inventory is immutable once made: the next
// verification edits a new version of it, which shares every part of the
// map it does not change, so its cost follows the records it applies,
// not the size of the inventory. Parsed values are never modified once
// stored and are shared by every version (Result accessors hand out
// copies); a change replaces an entry rather than modifying what its
// value points to.
//
// Applying a record may also tell a History what happened (a refusal, a
// program that came and went, a crash recovered): Verify collects one for
// the records it verified; rebuilding a State collects none.
type inventory struct {
	live pmap.Map[liveEntry]
	// Counts of the entries of each kind, to size a Result's lists.
	pending, loads, failed, unmeasured int
	// agent is the record number of the live agent-start record, when
	// hasAgent: only the latest start describes the agent now.
	agent    uint64
	hasAgent bool
}

// invEdit is a new version of an inventory being made by applying
// records; done returns it.
type invEdit struct {
	inventory
	edit *pmap.Edit[liveEntry]
	// borrowed lists the records kept with content that still aliases
	// the caller's bytes; done copies the content of those still live. A
	// record kept and dropped within one edit (a program loaded and
	// unloaded between two quotes) is never copied.
	borrowed    []uint64
	borrowedBuf [8]uint64
}

// liveEntry is one live record and what it means now. v is, by typ:
// *measured (BPFMeasurement), *loadEntry or *failedEntry (BPFLoadResult),
// *measure.KernelProgram (BPFUnmeasured), *Recovery (Recovery),
// *cel.AgentStartInfo (AgentStart, the latest only), nil (BPFUnloaded).
type liveEntry struct {
	rn      uint64
	typ     cel.ContentType
	pending bool // a measurement no result answers yet
	// borrowed: content is the caller's (an evidence's log) until the
	// edit that kept the record is done, which copies it.
	borrowed bool
	content  []byte
	v        any
}

// measured is a parsed measurement record and the SHA-256 of its content,
// which its load result must carry.
type measured struct {
	m      *measure.Measurement
	digest [32]byte
}

type loadEntry struct {
	mrec, rrec uint64
	m          *measure.Measurement
	res        *measure.LoadResult
	binding    []string // how the result's programs disagree with the measurement
	gone       []uint32 // ids of its kernel objects recorded as unloaded
	unloads    []uint64 // the records that said so
	// prog is the entry as a Result lists it, computed when the entry is
	// stored.
	prog Program
}

// failedEntry is a load that put nothing in the kernel: refused, failed,
// aborted, mismatched, or (died) a result rolled forward after a crash,
// whose programs died with the agent.
type failedEntry struct {
	mrec, rrec uint64
	m          *measure.Measurement
	res        *measure.LoadResult
	died       bool
}

func newInventory() *inventory { return &inventory{} }

// edit starts a new version of inv; inv does not change.
func (inv *inventory) edit() *invEdit {
	e := &invEdit{inventory: *inv, edit: inv.live.Edit()}
	e.borrowed = e.borrowedBuf[:0]
	return e
}

// done returns the version made, with its own copy of the content of every
// record it keeps.
func (inv *invEdit) done() *inventory {
	for _, rn := range inv.borrowed {
		if e, ok := inv.edit.Get(rn); ok && e.borrowed {
			e.content, e.borrowed = slices.Clone(e.content), false
			inv.edit.Set(rn, e) // the path is this edit's: no copy
		}
	}
	inv.borrowed = inv.borrowed[:0]
	out := inv.inventory
	out.live = inv.edit.Map()
	return &out
}

// len is the number of live records.
func (inv *inventory) len() int { return inv.live.Len() }

// find returns live record rn.
func (inv *invEdit) find(rn uint64) (liveEntry, bool) { return inv.edit.Get(rn) }

// contentError is a RecordContent failure at record rn.
func contentError(rn uint64, err error, format string, args ...any) error {
	return failAt(RecordContent, rn, err, format, args...)
}

// apply folds one verified BPF, recovery or agent-start record into the
// inventory, and tells h (when not nil) what it means. The content is
// copied by done when the record is still kept then; until then the
// inventory holds content itself (borrowed), so it must not change before
// done. Records are applied in ascending record number order.
// Boot headers are the verifier's business, not the inventory's, and are
// refused here.
func (inv *invEdit) apply(rn uint64, t cel.ContentType, content []byte, h *History) error {
	if last, ok := inv.edit.Max(); ok && rn <= last {
		return contentError(rn, nil, "record applied after record %d", last)
	}
	switch t {
	case cel.BPFMeasurement:
		m, err := measure.ParseMeasurement(content)
		if err != nil {
			return contentError(rn, err, "measurement")
		}
		inv.keep(liveEntry{rn: rn, typ: t, pending: true, content: content, v: &measured{m: m, digest: sha256.Sum256(content)}})
		inv.pending++
	case cel.BPFLoadResult:
		return inv.applyResult(rn, content, h)
	case cel.BPFUnmeasured:
		p, err := measure.ParseKernelProgram(content)
		if err != nil {
			return contentError(rn, err, "unmeasured program")
		}
		h.unmeasured(Unmeasured{Record: rn, Program: p})
		inv.keep(liveEntry{rn: rn, typ: t, content: content, v: p})
		inv.unmeasured++
	case cel.BPFUnloaded:
		return inv.applyUnloaded(rn, content, h)
	case cel.BPFTransient:
		tr, err := measure.ParseTransient(content)
		if err != nil {
			return contentError(rn, err, "transient programs")
		}
		if h != nil {
			for _, p := range tr.Programs {
				h.Transient = append(h.Transient, Transient{Record: rn, Program: p})
			}
		}
	case cel.BPFEventsLost:
		e, err := measure.ParseEventsLost(content)
		if err != nil {
			return contentError(rn, err, "events lost")
		}
		if h != nil {
			h.EventsLost = append(h.EventsLost, EventsLost{Record: rn, Count: e.Count, TimeNS: e.TimeNS})
		}
	case cel.BPFRefusals:
		r, err := measure.ParseRefusals(content)
		if err != nil {
			return contentError(rn, err, "refusals counted")
		}
		if h != nil {
			h.Counted = append(h.Counted, Counted{Record: rn, Requests: *r})
		}
	case cel.Recovery:
		return inv.applyRecovery(rn, content, h)
	case cel.AgentStart:
		a, err := cel.ParseAgentStartInfo(content)
		if err != nil {
			return contentError(rn, err, "agent start")
		}
		if h != nil {
			h.AgentStarts = append(h.AgentStarts, AgentStart{Record: rn, Info: a})
		}
		// Only the latest start describes the agent now.
		if inv.hasAgent {
			inv.edit.Delete(inv.agent)
		}
		inv.agent, inv.hasAgent = rn, true
		inv.keep(liveEntry{rn: rn, typ: t, content: content, v: &a})
	default:
		return contentError(rn, nil, "%v record where a bpf, recovery or agent-start record belongs", t)
	}
	return nil
}

// keep adds a live record whose content is the caller's; its number is
// above every live one (apply's order).
func (inv *invEdit) keep(e liveEntry) {
	e.borrowed = true
	inv.borrowed = append(inv.borrowed, e.rn)
	inv.edit.Set(e.rn, e)
}

// drop forgets live record rn.
func (inv *invEdit) drop(rn uint64) { inv.edit.Delete(rn) }

// applyResult links a load result to its pending measurement: the record
// number it names must hold a measurement with no result yet, and the
// SHA-256 it carries must be that measurement's. A load that stands has
// its programs checked against the measurement (measure.Binding).
func (inv *invEdit) applyResult(rn uint64, content []byte, h *History) error {
	res, err := measure.ParseLoadResult(content)
	if err != nil {
		return contentError(rn, err, "load result")
	}
	me, ok := inv.find(res.MeasurementRecord)
	if !ok || !me.pending {
		return contentError(rn, nil, "load result for record %d, which is no measurement awaiting a result", res.MeasurementRecord)
	}
	p := me.v.(*measured)
	if p.digest != res.MeasurementSHA256 {
		return contentError(rn, nil, "load result carries sha256 %x, measurement record %d has %x", res.MeasurementSHA256[:8], res.MeasurementRecord, p.digest[:8])
	}
	me.pending = false
	inv.edit.Set(me.rn, me)
	inv.pending--
	e := liveEntry{rn: rn, typ: cel.BPFLoadResult, content: content}
	if res.Outcome == measure.OutcomeLoaded {
		le := newLoadEntry(res.MeasurementRecord, rn, p.m, res, measure.Binding(p.m, res.Programs), nil, nil)
		e.v = le
		inv.loads++
		if h != nil {
			h.Loaded = append(h.Loaded, le.prog)
		}
	} else {
		fe := &failedEntry{mrec: res.MeasurementRecord, rrec: rn, m: p.m, res: res}
		e.v = fe
		inv.failed++
		h.attempt(fe)
	}
	inv.keep(e)
	return nil
}

// newLoadEntry makes a present load's entry and the Program a Result lists
// for it.
func newLoadEntry(mrec, rrec uint64, m *measure.Measurement, res *measure.LoadResult, binding []string, gone []uint32, unloads []uint64) *loadEntry {
	e := &loadEntry{mrec: mrec, rrec: rrec, m: m, res: res, binding: binding, gone: gone, unloads: unloads}
	p := Program{Record: mrec, ResultRecord: rrec, Measurement: m, Result: res, Maps: res.Maps, Loader: res.Loader, Binding: binding}
	if len(gone) == 0 {
		// Every program is present: share the parsed list, as Maps does
		// (capacity capped, so nothing appends into it).
		p.Kernel = slices.Clip(res.Programs)
	} else {
		for _, k := range res.Programs {
			if !slices.Contains(gone, k.ID) {
				p.Kernel = append(p.Kernel, k)
			}
		}
	}
	e.prog = p
	return e
}

// applyUnloaded removes a program from the kernel inventory. The record it
// names must be a load result or an unmeasured-program record that lists a
// still-present object with the same id and tag.
func (inv *invEdit) applyUnloaded(rn uint64, content []byte, h *History) error {
	var u measure.Unloaded // needed only here: decoded in place
	if err := u.UnmarshalBinary(content); err != nil {
		return contentError(rn, err, "unloaded")
	}
	target, _ := inv.find(u.Record)
	switch e := target.v.(type) {
	case *measure.KernelProgram:
		if e.ID != u.ID || e.Tag != u.Tag {
			return contentError(rn, nil, "unload of program %d tag %x, record %d is program %d tag %x", u.ID, u.Tag, u.Record, e.ID, e.Tag)
		}
		inv.drop(u.Record)
		inv.unmeasured--
		h.unmeasuredGone(u.Record)
		return nil
	case *failedEntry:
		// A failed load may have left objects behind that have now gone;
		// nothing of it is counted as present.
		if findObject(e.res, u.ID, u.Tag) == nil {
			return contentError(rn, nil, "unload of program %d, which failed load record %d does not list", u.ID, u.Record)
		}
		return nil
	case *loadEntry:
		if findObject(e.res, u.ID, u.Tag) == nil {
			return contentError(rn, nil, "unload of program %d tag %x, which load record %d does not list", u.ID, u.Tag, u.Record)
		}
		if e.res.Loader != nil && e.res.Loader.ID == u.ID {
			return nil // the loader is released when it has run; never present
		}
		if slices.Contains(e.gone, u.ID) {
			return contentError(rn, nil, "program %d of load record %d unloaded twice", u.ID, u.Record)
		}
		if !slices.ContainsFunc(e.prog.Kernel, func(k measure.KernelObject) bool { return k.ID != u.ID }) {
			// Its last program left (every present one, prog.Kernel, has
			// this id; the loader is never present: the agent releases it
			// as soon as it has run): the load leaves the inventory, and
			// no new entry is made for it.
			inv.loads--
			inv.drop(e.mrec)
			inv.drop(e.rrec)
			for _, r := range e.unloads {
				inv.drop(r)
			}
			if h != nil {
				h.Gone = append(h.Gone, e.prog)
			}
			return nil
		}
		ne := newLoadEntry(e.mrec, e.rrec, e.m, e.res, e.binding,
			append(slices.Clone(e.gone), u.ID), append(slices.Clone(e.unloads), rn))
		target.v = ne
		inv.edit.Set(target.rn, target)
		inv.keep(liveEntry{rn: rn, typ: cel.BPFUnloaded, content: content})
		return nil
	}
	return contentError(rn, nil, "unload of program %d names record %d, which is no present load or unmeasured program", u.ID, u.Record)
}

// applyRecovery keeps a recovery record. A load result it rolled forward
// (extended on behalf of an agent that died after writing it) cannot have
// live programs: an agent extends a result before its objects may outlive
// it, so they died with it. Such a load leaves the inventory; whatever now
// holds those ids is the observer's to report.
func (inv *invEdit) applyRecovery(rn uint64, content []byte, h *History) error {
	info, err := cel.ParseRecoveryInfo(content)
	if err != nil {
		return contentError(rn, err, "recovery")
	}
	if h != nil {
		h.Recoveries = append(h.Recoveries, Recovery{Record: rn, Info: info})
	}
	inv.keep(liveEntry{rn: rn, typ: cel.Recovery, content: content, v: &Recovery{Record: rn, Info: info}})
	if info.Action != cel.RolledForward {
		return nil
	}
	// The record rolled forward ends right before this recovery (start-up
	// appends it next): every event of a rolled-forward batch is treated
	// as the rolled-forward record is.
	last := info.RecNum
	if rn > info.RecNum && rn-info.RecNum <= cel.MaxBatchEvents {
		last = rn - 1
	}
	for target := info.RecNum; ; target++ {
		inv.diedWithAgent(target, h)
		if target == last {
			return nil
		}
	}
}

// diedWithAgent turns the load whose result is live record rn, if there is
// one, into a failed load whose programs died with the agent.
func (inv *invEdit) diedWithAgent(rn uint64, h *History) {
	target, ok := inv.find(rn)
	if !ok {
		return
	}
	le, ok := target.v.(*loadEntry)
	if !ok {
		return
	}
	for _, r := range le.unloads {
		inv.drop(r)
	}
	fe := &failedEntry{mrec: le.mrec, rrec: le.rrec, m: le.m, res: le.res, died: true}
	target.v = fe
	inv.edit.Set(target.rn, target)
	inv.loads--
	inv.failed++
	h.attempt(fe)
}

// findObject returns the loader or program of res with this id and tag.
func findObject(res *measure.LoadResult, id uint32, tag [8]byte) *measure.KernelObject {
	if res.Loader != nil && res.Loader.ID == id && res.Loader.Tag == tag {
		return res.Loader
	}
	for i := range res.Programs {
		if res.Programs[i].ID == id && res.Programs[i].Tag == tag {
			return &res.Programs[i]
		}
	}
	return nil
}

// rebuild makes an inventory from live records, as a State carries them.
func rebuild(recs []numberedRecord) (*inventory, error) {
	inv := newInventory().edit()
	for _, r := range recs {
		if err := inv.apply(r.rn, r.typ, r.content, nil); err != nil {
			return nil, fmt.Errorf("rebuild: %w", err)
		}
	}
	// Every record kept must still be live after the rebuild: a State
	// carrying dead weight was not made by this package.
	if n := inv.edit.Len(); n != len(recs) {
		return nil, fmt.Errorf("rebuild: %d records given, %d live", len(recs), n)
	}
	return inv.done(), nil
}

type numberedRecord struct {
	rn      uint64
	typ     cel.ContentType
	content []byte
}
