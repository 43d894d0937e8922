package agent

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"

	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/internal/bpfsys"
	"github.com/bpfattest/bpfattest/measure"
)

// The observer keeps the set of programs the log accounts for: created by a
// measured load (introduced by its load-result record) or reported as
// unmeasured (introduced by that record). A sweep walks the kernel's program
// ids; an id outside the set gets an "unmeasured program" record, an id of
// the set that is gone gets a "program unloaded" record naming the record
// that introduced it. Sweeps and loads hold the pipeline lock, so a measured
// load's programs join the set together with its result record and no sweep
// can see them first. The set lives in memory and is rebuilt from the log
// when an agent starts.
//
// Program ids come from idr_alloc_cyclic (kernel/bpf/syscall.c
// bpf_prog_alloc_id): an id is not handed out again until the id space
// (INT_MAX) wraps, so the set is keyed by id alone.

const (
	discoveredAtStart  = measure.DiscoveredAtStart
	discoveredObserved = measure.DiscoveredObserved
)

// origin says which kind of record introduced a known program.
type origin uint8

const (
	fromMeasuredLoad origin = iota + 1
	fromUnmeasured
)

// knownProg is a program the log accounts for.
type knownProg struct {
	record uint64 // the record that introduced it
	tag    [8]byte
	name   string
	origin origin
}

// sweep runs one observer pass under the pipeline lock.
func (a *Agent) sweep(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return ErrClosed
	}
	return a.sweepLocked(ctx, discoveredObserved)
}

// sweepLocked accounts for every program in the kernel. Findings are
// recorded in id order: first the new programs, then the vanished ones.
// Without kernel access (Config.NoKernel) the observer does not run.
func (a *Agent) sweepLocked(ctx context.Context, how measure.Discovery) error {
	if a.set.NoKernel {
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
		content, err := kernelProgram(info, how).MarshalBinary()
		if err != nil {
			return fmt.Errorf("observe program %d: %w", id, err)
		}
		rec, err := a.appendRecord(ctx, cel.BPFUnmeasured, content)
		if err != nil {
			return fmt.Errorf("observe program %d: %w", id, err)
		}
		a.known[id] = knownProg{record: rec.RecNum, tag: info.Tag, name: info.Name, origin: fromUnmeasured}
		a.metrics.finding("unmeasured")
		a.log.Warn("unmeasured program", "id", id, "name", info.Name, "tag", fmt.Sprintf("%x", info.Tag),
			"type", info.Type.String(), "record", rec.RecNum)
	}
	for _, id := range slices.Sorted(maps.Keys(a.known)) {
		if present[id] {
			continue
		}
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
		a.metrics.finding("unloaded")
		a.log.Info("program unloaded", "id", id, "name", k.name, "introduced_by", k.record, "record", rec.RecNum)
	}
	return nil
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
func (a *Agent) rebuildLocked(ctx context.Context) error {
	// Measurements without a result, by record number, with the digest of
	// their content (all an aborted result needs); the log is walked, not
	// loaded, so start-up memory does not grow with the log.
	type openLoad struct {
		rec    uint64
		digest [32]byte
	}
	var pending []openLoad
	err := a.jr.Walk(0, func(r *cel.Record) error {
		switch r.Type {
		case cel.BPFMeasurement:
			pending = append(pending, openLoad{rec: r.RecNum, digest: sha256.Sum256(r.Content)})
		case cel.BPFLoadResult:
			res, err := measure.ParseLoadResult(r.Content)
			if err != nil {
				return fmt.Errorf("record %d: %w", r.RecNum, err)
			}
			pending = slices.DeleteFunc(pending, func(m openLoad) bool { return m.rec == res.MeasurementRecord })
			for _, p := range res.Programs {
				a.known[p.ID] = knownProg{record: r.RecNum, tag: p.Tag, name: p.Name, origin: fromMeasuredLoad}
			}
		case cel.BPFUnmeasured:
			kp, err := measure.ParseKernelProgram(r.Content)
			if err != nil {
				return fmt.Errorf("record %d: %w", r.RecNum, err)
			}
			a.known[kp.ID] = knownProg{record: r.RecNum, tag: kp.Tag, name: kp.Name, origin: fromUnmeasured}
		case cel.BPFUnloaded:
			u, err := measure.ParseUnloaded(r.Content)
			if err != nil {
				return fmt.Errorf("record %d: %w", r.RecNum, err)
			}
			delete(a.known, u.ID)
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

// counts returns how many known programs came from measured loads and how
// many were reported as unmeasured.
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
