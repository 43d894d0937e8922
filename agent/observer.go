package agent

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/internal/bpfsys"
	"github.com/bpfattest/bpfattest/internal/progevents"
	"github.com/bpfattest/bpfattest/measure"
)

// The observer accounts for every program in the kernel that no measured
// load created. It keeps the set of programs the log says are present
// ("known"): created by a measured load (introduced by its load-result
// record) or reported as unmeasured (introduced by that record).
//
// Its primary source is the kernel's program events (internal/progevents):
// every program load and release, however short-lived, with the task behind
// it. A load of a program outside the set gets an "unmeasured program"
// record, with what the kernel still tells of it (DiscoveredEvent) or, if it
// is already gone, with its id, tag and the loading process only
// (DiscoveredTransient); a release of a program of the set gets a "program
// unloaded" record. Lost events are recorded (BPFEventsLost) and followed by
// a sweep. Where perf events cannot be opened the observer falls back to
// sweeps only, and the agent-start record says which mode ran.
//
// A sweep walks the kernel's program ids: an id outside the set gets an
// "unmeasured program" record, an id of the set that is gone gets a "program
// unloaded" record. Sweeps run at start (the baseline), periodically as a
// safety net, before every quote, and after lost events.
//
// Sweeps and event handling hold the pipeline lock and first wait for the
// loads in flight (admitted, measured, in bpf() or recording their
// results, none holding the pipeline) to finish: a measured load's programs
// join the set together with its result record, before the observer can
// handle their load events or find them in a sweep, so a program of a load
// in flight is never taken for an unmeasured one. The loader program and the
// programs of a failed load are named by the result record but are not
// present (the agent releases them at once): their ids are "accounted", and
// their events are passed over. The set lives in memory and is rebuilt from
// the log when an agent starts; every program the rebuilt set holds is then
// checked against what the kernel reports under its id.
//
// Program ids come from idr_alloc_cyclic (kernel/bpf/syscall.c
// bpf_prog_alloc_id): an id is not handed out again until the id space
// (INT_MAX) wraps, so the set is keyed by id alone.

// origin says which kind of record introduced a known program.
type origin uint8

const (
	fromMeasuredLoad origin = iota + 1
	fromUnmeasured
)

// knownProg is a program the log says is in the kernel.
type knownProg struct {
	record uint64 // the record that introduced it
	tag    [8]byte
	typ    uint32
	name   string
	origin origin
}

// maxAccounted bounds the ids whose events the observer passes over; the
// oldest is forgotten first (its events, if they ever come, would then be
// recorded: more said, never less).
const maxAccounted = 4096

// accountedSet is the ids named by the log that are not present (loaders,
// programs of failed loads, programs recorded as transient or unloaded),
// whose load or release events may still arrive.
type accountedSet struct {
	ids   map[uint32]bool
	order []uint32
}

func (s *accountedSet) add(id uint32) {
	if s.ids == nil {
		s.ids = map[uint32]bool{}
	}
	if s.ids[id] {
		return
	}
	if len(s.order) >= maxAccounted {
		delete(s.ids, s.order[0])
		s.order = s.order[1:]
	}
	s.ids[id] = true
	s.order = append(s.order, id)
}

func (s *accountedSet) has(id uint32) bool { return s.ids[id] }

// forget drops id (its place in the eviction order goes when it comes up).
func (s *accountedSet) forget(id uint32) { delete(s.ids, id) }

// sweep runs one observer pass under the pipeline lock, taken as owner:
// the events first, then the sweep.
func (a *Agent) sweep(ctx context.Context, owner string) error {
	work := pipeObserver
	if owner == ownerQuote {
		work = pipeQuote
	}
	if err := a.lockPipe(ctx, owner, work); err != nil {
		return fmt.Errorf("observer: waiting for the pipeline: %w", err)
	}
	defer a.pipe.unlock()
	if a.closed {
		return ErrClosed
	}
	a.quiesceLocked()
	if err := a.observeEventsLocked(ctx); err != nil {
		return err
	}
	return a.sweepLocked(ctx, measure.DiscoveredObserved)
}

// observing reports whether the observer records anything: not without
// kernel access, and not while the log refuses appends because it no
// longer replays to the PCR.
func (a *Agent) observing() bool {
	return !a.set.NoKernel && a.jr.Mismatch() == nil
}

// sweepLocked accounts for every program in the kernel. Findings are
// recorded in id order: first the new programs, then the vanished ones.
func (a *Agent) sweepLocked(ctx context.Context, how measure.Discovery) error {
	if !a.observing() {
		return nil
	}
	ids, err := bpfsys.ProgramIDs()
	if err != nil {
		return fmt.Errorf("observe: %w", err)
	}
	present := make(map[uint32]bool, len(ids))
	for _, id := range ids {
		present[id] = true
		if _, ok := a.known[id]; ok {
			continue
		}
		info, err := bpfsys.ProgramInfoByID(id)
		if errors.Is(err, fs.ErrNotExist) {
			delete(present, id) // gone since the walk
			continue
		}
		if err != nil {
			return fmt.Errorf("observe program %d: %w", id, err)
		}
		if err := a.recordUnmeasured(ctx, kernelProgram(info, how)); err != nil {
			return err
		}
	}
	for _, id := range slices.Sorted(maps.Keys(a.known)) {
		if !present[id] {
			if err := a.recordUnloaded(ctx, id); err != nil {
				return err
			}
		}
	}
	return nil
}

// recordUnmeasured appends an "unmeasured program" record and adds the
// program to the known set.
func (a *Agent) recordUnmeasured(ctx context.Context, kp *measure.KernelProgram) error {
	content, err := kp.MarshalBinary()
	if err != nil {
		return fmt.Errorf("observe program %d: %w", kp.ID, err)
	}
	rec, err := a.appendRecord(ctx, cel.BPFUnmeasured, content)
	if err != nil {
		return fmt.Errorf("observe program %d: %w", kp.ID, err)
	}
	a.known[kp.ID] = knownProg{record: rec.RecNum, tag: kp.Tag, typ: kp.Type, name: kp.Name, origin: fromUnmeasured}
	a.metrics.finding("unmeasured")
	a.log.Warn("unmeasured program", "id", kp.ID, "name", kp.Name, "tag", fmt.Sprintf("%x", kp.Tag),
		"type", kp.Type, "discovery", kp.Discovery.String(), "loader_pid", kp.PID, "comm", kp.Comm, "record", rec.RecNum)
	return nil
}

// recordUnloaded appends a "program unloaded" record for known program id.
func (a *Agent) recordUnloaded(ctx context.Context, id uint32) error {
	k := a.known[id]
	u := measure.Unloaded{ID: id, Tag: k.tag, Name: k.name, Record: k.record}
	content, err := u.MarshalBinary()
	if err != nil {
		return fmt.Errorf("observe program %d: %w", id, err)
	}
	rec, err := a.appendRecord(ctx, cel.BPFUnloaded, content)
	if err != nil {
		return fmt.Errorf("observe program %d: %w", id, err)
	}
	delete(a.known, id)
	a.accounted.add(id) // its release event may still be on its way
	a.metrics.finding("unloaded")
	a.log.Info("program unloaded", "id", id, "name", k.name, "introduced_by", k.record, "record", rec.RecNum)
	return nil
}

// observeEventsLocked handles the program events written since the last
// time, in time order, as one batch: a release of a program of the set
// is recorded as unloaded; a program that is still there when its load
// event is handled gets an "unmeasured program" record with what the kernel
// says of it; programs that came and went within the batch (or whose
// release came before their load was read) share one "transient programs"
// record, so that churn costs a record per batch rather than two per
// program, and nothing is left out. Lost events are recorded, then a sweep
// looks for what they would have said.
func (a *Agent) observeEventsLocked(ctx context.Context) error {
	if a.events == nil || !a.observing() {
		return nil
	}
	b, err := a.events.Poll()
	if err != nil {
		return fmt.Errorf("observe events: %w", err)
	}
	if err := a.observeBatch(ctx, b.Events); err != nil {
		return err
	}
	if b.Lost == 0 {
		return nil
	}
	lost := measure.EventsLost{Count: b.Lost, TimeNS: bpfsys.BootTimeNS()}
	content, err := lost.MarshalBinary()
	if err != nil {
		return fmt.Errorf("observe events: %w", err)
	}
	rec, err := a.appendRecord(ctx, cel.BPFEventsLost, content)
	if err != nil {
		return fmt.Errorf("observe events: %w", err)
	}
	a.metrics.finding("events_lost")
	a.log.Warn("program events lost; sweeping the kernel's programs", "lost", b.Lost, "record", rec.RecNum)
	return a.sweepLocked(ctx, measure.DiscoveredAfterLoss)
}

// lifetime is what one batch of events says of one program id.
type lifetime struct {
	load, unload *progevents.Event
}

// observeBatch records what a batch of events says, program by program in
// the order they first appear.
func (a *Agent) observeBatch(ctx context.Context, events []progevents.Event) error {
	var order []uint32
	seen := map[uint32]*lifetime{}
	for i := range events {
		e := &events[i]
		l := seen[e.ID]
		if l == nil {
			l = &lifetime{}
			seen[e.ID] = l
			order = append(order, e.ID)
		}
		switch {
		case e.Kind == progevents.Load && l.load == nil:
			l.load = e
		case e.Kind == progevents.Unload && l.unload == nil:
			l.unload = e
		}
	}
	var transient []measure.TransientProgram
	for _, id := range order {
		if a.accounted.has(id) {
			continue // the log already names it, and it is not present
		}
		l := seen[id]
		k, known := a.known[id]
		switch {
		case known && l.unload != nil && k.tag == l.unload.Tag:
			if err := a.recordUnloaded(ctx, id); err != nil {
				return err
			}
			continue
		case known:
			continue // a measured load's program, or already recorded
		case l.unload == nil:
			info, err := bpfsys.ProgramInfoByID(id)
			if err == nil && info.Tag == l.load.Tag {
				kp := kernelProgram(info, measure.DiscoveredEvent)
				kp.PID, kp.Comm, kp.Exe = loaderProcess(l.load.PID)
				if err := a.recordUnmeasured(ctx, kp); err != nil {
					return err
				}
				continue
			}
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("observe program %d: %w", id, err)
			}
		}
		// It came and went (or the id now holds another program).
		e, released := l.load, false
		if e == nil {
			e, released = l.unload, true
		}
		tp := measure.TransientProgram{ID: id, Tag: e.Tag, Released: released}
		tp.PID, tp.Comm, tp.Exe = loaderProcess(e.PID)
		transient = append(transient, tp)
	}
	for len(transient) > 0 {
		n := min(len(transient), measure.MaxTransientPrograms)
		if err := a.recordTransient(ctx, transient[:n]); err != nil {
			return err
		}
		transient = transient[n:]
	}
	return nil
}

// recordTransient records programs that came and went: one record for
// them all.
func (a *Agent) recordTransient(ctx context.Context, progs []measure.TransientProgram) error {
	t := measure.Transient{Programs: progs}
	content, err := t.MarshalBinary()
	if err != nil {
		return fmt.Errorf("observe events: %w", err)
	}
	rec, err := a.appendRecord(ctx, cel.BPFTransient, content)
	if err != nil {
		return fmt.Errorf("observe events: %w", err)
	}
	for _, p := range progs {
		a.accounted.add(p.ID) // a late event of theirs is passed over
	}
	a.metrics.findings("transient", len(progs))
	a.log.Warn("programs came and went without a measured load", "count", len(progs), "first_id", progs[0].ID,
		"first_pid", progs[0].PID, "record", rec.RecNum)
	return nil
}

// loaderProcess reads the name and executable of the process behind an
// event, if it still runs (it may not: the record says "as read when the
// event was handled"). pid 0 is a kernel context.
func loaderProcess(pid uint32) (uint32, string, string) {
	if pid == 0 {
		return 0, "", ""
	}
	dir := "/proc/" + strconv.FormatUint(uint64(pid), 10)
	comm, _ := os.ReadFile(dir + "/comm")
	exe, _ := os.Readlink(dir + "/exe")
	return pid, strings.TrimSpace(string(comm)), exe
}

// kernelProgram is the content of an "unmeasured program" record.
func kernelProgram(info *bpfsys.ProgInfo, how measure.Discovery) *measure.KernelProgram {
	kp := &measure.KernelProgram{
		Discovery:    how,
		ID:           info.ID,
		Type:         uint32(info.Type),
		Name:         info.Name,
		Tag:          info.Tag,
		CreatedByUID: info.CreatedByUID,
		LoadTimeNS:   uint64(info.LoadTime),
		MapIDs:       slices.Clone(info.MapIDs),
	}
	if info.XlatedDumped {
		kp.XlatedSHA256 = info.XlatedDigest[:]
	}
	return kp
}

// rebuildLocked rebuilds the known set from the current boot's log, then
// settles measurements that have no result: an earlier agent stopped between
// recording the measurement and recording the kernel's answer. Each gets an
// "aborted" result now; whatever that load may have created is found by the
// start-up sweep that follows (normally nothing: the objects lived only in
// the dead process's descriptors).
//
// A load result that start-up reconciliation rolled forward (extended on
// the previous agent's behalf: it was durable, not extended, when that
// agent died) cannot have live programs: the agent extends a result before
// it lets its objects outlive it (pins come after), so they died with it.
// Its programs do not join the set; a program under one of their ids now is
// something else, and the start-up sweep reports it.
//
// The log is read event by event: a batch record's events are applied as
// the records they stand for would be, and every event of a rolled-forward
// batch is treated as a rolled-forward record is.
func (a *Agent) rebuildLocked(ctx context.Context) error {
	// Measurements without a result, by record number, with the digest of
	// their content (all an aborted result needs); the log is walked, not
	// loaded, so start-up memory does not grow with the log.
	type openLoad struct {
		rec    uint64
		digest [32]byte
	}
	var pending []openLoad
	introduced := map[uint64][]uint32{} // load result record -> its programs
	err := a.jr.WalkEvents(0, func(r *cel.Event) error {
		switch r.Type {
		case cel.BPFMeasurement:
			pending = append(pending, openLoad{rec: r.RecNum, digest: sha256.Sum256(r.Content)})
		case cel.BPFLoadResult:
			res, err := measure.ParseLoadResult(r.Content)
			if err != nil {
				return fmt.Errorf("record %d: %w", r.RecNum, err)
			}
			pending = slices.DeleteFunc(pending, func(m openLoad) bool { return m.rec == res.MeasurementRecord })
			if res.Outcome != measure.OutcomeLoaded {
				return nil
			}
			for _, p := range res.Programs {
				a.known[p.ID] = knownProg{record: r.RecNum, tag: p.Tag, typ: p.Type, name: p.Name, origin: fromMeasuredLoad}
				introduced[r.RecNum] = append(introduced[r.RecNum], p.ID)
			}
		case cel.BPFUnmeasured:
			kp, err := measure.ParseKernelProgram(r.Content)
			if err != nil {
				return fmt.Errorf("record %d: %w", r.RecNum, err)
			}
			a.known[kp.ID] = knownProg{record: r.RecNum, tag: kp.Tag, typ: kp.Type, name: kp.Name, origin: fromUnmeasured}
		case cel.BPFUnloaded:
			u, err := measure.ParseUnloaded(r.Content)
			if err != nil {
				return fmt.Errorf("record %d: %w", r.RecNum, err)
			}
			delete(a.known, u.ID)
		case cel.Recovery:
			ri, err := cel.ParseRecoveryInfo(r.Content)
			if err != nil {
				return fmt.Errorf("record %d: %w", r.RecNum, err)
			}
			if ri.Action != cel.RolledForward {
				return nil
			}
			// The record rolled forward is the one right before this
			// recovery: a batch's events run up to it.
			for _, rn := range rolledForward(ri.RecNum, r.RecNum) {
				for _, id := range introduced[rn] {
					if k, ok := a.known[id]; ok && k.record == rn {
						delete(a.known, id)
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("rebuild: %w", err)
	}
	for _, m := range pending {
		res := measure.LoadResult{
			MeasurementRecord: m.rec,
			MeasurementSHA256: m.digest,
			Outcome:           measure.OutcomeAborted,
			Reason:            "the agent stopped before the kernel's answer was recorded",
		}
		content, err := res.MarshalBinary()
		if err != nil {
			return fmt.Errorf("rebuild: %w", err)
		}
		if _, err := a.appendRecord(ctx, cel.BPFLoadResult, content); err != nil {
			return fmt.Errorf("rebuild: settle record %d: %w", m.rec, err)
		}
		a.log.Warn("load settled as aborted", "measurement_record", m.rec)
	}
	return nil
}

// checkKnownLocked holds the rebuilt set against the kernel: a program the
// log says is present must be what the kernel reports under its id (type,
// name and tag). Where the kernel holds another program (the log was
// written by someone else, or an id was reused), the recorded one is
// recorded unloaded and the one the kernel holds is recorded as unmeasured,
// naming the record it contradicts. Gone programs are left to the sweep.
func (a *Agent) checkKnownLocked(ctx context.Context) error {
	if !a.observing() {
		return nil
	}
	for _, id := range slices.Sorted(maps.Keys(a.known)) {
		k := a.known[id]
		info, err := bpfsys.ProgramInfoByID(id)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("check program %d: %w", id, err)
		}
		if info.Tag == k.tag && uint32(info.Type) == k.typ && info.Name == k.name {
			continue
		}
		a.log.Error("the kernel contradicts the log", "id", id, "record", k.record,
			"log_tag", fmt.Sprintf("%x", k.tag), "kernel_tag", fmt.Sprintf("%x", info.Tag),
			"log_name", k.name, "kernel_name", info.Name)
		if err := a.recordUnloaded(ctx, id); err != nil {
			return err
		}
		kp := kernelProgram(info, measure.DiscoveredContradiction)
		kp.Contradicts = k.record
		if err := a.recordUnmeasured(ctx, kp); err != nil {
			return err
		}
		a.accounted.forget(id) // it is known again, under its real identity
	}
	return nil
}

// countsLocked returns how many known programs came from measured loads and
// how many were reported as unmeasured.
func (a *Agent) countsLocked() (loaded, unmeasured int) {
	for _, k := range a.known {
		if k.origin == fromMeasuredLoad {
			loaded++
		} else {
			unmeasured++
		}
	}
	return loaded, unmeasured
}

// rolledForward returns the event numbers of the record a rolled_forward
// recovery numbered at names (at most cel.MaxBatchEvents of them): the
// record starts at event first and ends right before the recovery, which
// start-up appends right after rolling the record forward. A recovery that
// names a later event, or one more than a batch's worth back, names just
// first.
func rolledForward(first, at uint64) []uint64 {
	if at <= first || at-first > cel.MaxBatchEvents {
		return []uint64{first}
	}
	out := make([]uint64, 0, at-first)
	for rn := first; rn < at; rn++ {
		out = append(out, rn)
	}
	return out
}
