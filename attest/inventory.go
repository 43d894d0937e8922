package attest

import (
	"crypto/sha256"
	"fmt"
	"maps"
	"slices"

	"github.com/bpfattest/bpfattest/measure"
	"github.com/bpfattest/bpfattest/measure/cel"
)

// inventory is what one boot's verified records say is in the kernel: loads
// measured but not yet answered, loads that succeeded and still have
// programs in the kernel, programs no measured load created, and loads that
// failed. It is built by applying records in order, and it keeps the
// records it was built from that still matter ("live" records), so that a
// State can carry it as those records and rebuild it exactly.
//
// An inventory is copy-on-write: clone copies the maps, and entries are
// never modified once stored (a change stores a new entry).
type inventory struct {
	live       map[uint64]liveRecord
	pending    map[uint64]*pendingLoad     // by measurement record
	loads      map[uint64]*loadEntry       // by load result record
	unmeasured map[uint64]*unmeasuredEntry // by its own record
	failed     map[uint64]*failedEntry     // by load result record
	recoveries []uint64                    // recovery records, in order
}

type liveRecord struct {
	typ     cel.ContentType
	content []byte
}

type pendingLoad struct {
	content []byte // the measurement's canonical bytes
	digest  [32]byte
}

type loadEntry struct {
	mrec, rrec uint64
	res        *measure.LoadResult
	gone       []uint32 // ids of its kernel objects recorded as unloaded
	unloads    []uint64 // the records that said so
}

type unmeasuredEntry struct {
	prog *measure.KernelProgram
}

type failedEntry struct {
	mrec, rrec uint64
}

func newInventory() *inventory {
	return &inventory{
		live:       map[uint64]liveRecord{},
		pending:    map[uint64]*pendingLoad{},
		loads:      map[uint64]*loadEntry{},
		unmeasured: map[uint64]*unmeasuredEntry{},
		failed:     map[uint64]*failedEntry{},
	}
}

func (inv *inventory) clone() *inventory {
	return &inventory{
		live:       maps.Clone(inv.live),
		pending:    maps.Clone(inv.pending),
		loads:      maps.Clone(inv.loads),
		unmeasured: maps.Clone(inv.unmeasured),
		failed:     maps.Clone(inv.failed),
		recoveries: slices.Clone(inv.recoveries),
	}
}

// contentError is a RecordContent failure at record rn.
func contentError(rn uint64, err error, format string, args ...any) error {
	return failAt(RecordContent, rn, err, format, args...)
}

// apply folds one verified BPF or recovery record into the inventory. The
// content is copied when kept. Boot headers and agent-start records are the
// verifier's business, not the inventory's, and are refused here.
func (inv *inventory) apply(rn uint64, t cel.ContentType, content []byte) error {
	switch t {
	case cel.BPFMeasurement:
		if _, err := measure.ParseMeasurement(content); err != nil {
			return contentError(rn, err, "measurement")
		}
		c := slices.Clone(content)
		inv.pending[rn] = &pendingLoad{content: c, digest: sha256.Sum256(c)}
		inv.keep(rn, t, c)
	case cel.BPFLoadResult:
		return inv.applyResult(rn, content)
	case cel.BPFUnmeasured:
		p, err := measure.ParseKernelProgram(content)
		if err != nil {
			return contentError(rn, err, "unmeasured program")
		}
		inv.unmeasured[rn] = &unmeasuredEntry{prog: p}
		inv.keep(rn, t, slices.Clone(content))
	case cel.BPFUnloaded:
		return inv.applyUnloaded(rn, content)
	case cel.Recovery:
		if _, err := cel.ParseRecoveryInfo(content); err != nil {
			return contentError(rn, err, "recovery")
		}
		inv.recoveries = append(inv.recoveries, rn)
		inv.keep(rn, t, slices.Clone(content))
	default:
		return contentError(rn, nil, "%v record where a bpf or recovery record belongs", t)
	}
	return nil
}

func (inv *inventory) keep(rn uint64, t cel.ContentType, content []byte) {
	inv.live[rn] = liveRecord{typ: t, content: content}
}

// applyResult links a load result to its pending measurement: the record
// number it names must hold a measurement with no result yet, and the
// SHA-256 it carries must be that measurement's.
func (inv *inventory) applyResult(rn uint64, content []byte) error {
	res, err := measure.ParseLoadResult(content)
	if err != nil {
		return contentError(rn, err, "load result")
	}
	p, ok := inv.pending[res.MeasurementRecord]
	if !ok {
		return contentError(rn, nil, "load result for record %d, which is no measurement awaiting a result", res.MeasurementRecord)
	}
	if p.digest != res.MeasurementSHA256 {
		return contentError(rn, nil, "load result carries sha256 %x, measurement record %d has %x", res.MeasurementSHA256[:8], res.MeasurementRecord, p.digest[:8])
	}
	delete(inv.pending, res.MeasurementRecord)
	if res.Outcome == measure.OutcomeLoaded {
		inv.loads[rn] = &loadEntry{mrec: res.MeasurementRecord, rrec: rn, res: res}
	} else {
		inv.failed[rn] = &failedEntry{mrec: res.MeasurementRecord, rrec: rn}
	}
	inv.keep(rn, cel.BPFLoadResult, slices.Clone(content))
	return nil
}

// applyUnloaded removes a program from the kernel inventory. The record it
// names must be a load result or an unmeasured-program record that lists a
// still-present object with the same id and tag.
func (inv *inventory) applyUnloaded(rn uint64, content []byte) error {
	u, err := measure.ParseUnloaded(content)
	if err != nil {
		return contentError(rn, err, "unloaded")
	}
	if e, ok := inv.unmeasured[u.Record]; ok {
		if e.prog.ID != u.ID || e.prog.Tag != u.Tag {
			return contentError(rn, nil, "unload of program %d tag %x, record %d is program %d tag %x", u.ID, u.Tag, u.Record, e.prog.ID, e.prog.Tag)
		}
		delete(inv.unmeasured, u.Record)
		delete(inv.live, u.Record)
		return nil
	}
	if e, ok := inv.failed[u.Record]; ok {
		// A failed load may have left objects behind that have now gone;
		// nothing of it is counted as present.
		res, _ := measure.ParseLoadResult(inv.live[e.rrec].content)
		if res == nil || findObject(res, u.ID, u.Tag) == nil {
			return contentError(rn, nil, "unload of program %d, which failed load record %d does not list", u.ID, u.Record)
		}
		return nil
	}
	e, ok := inv.loads[u.Record]
	if !ok {
		return contentError(rn, nil, "unload of program %d names record %d, which is no present load or unmeasured program", u.ID, u.Record)
	}
	if findObject(e.res, u.ID, u.Tag) == nil {
		return contentError(rn, nil, "unload of program %d tag %x, which load record %d does not list", u.ID, u.Tag, u.Record)
	}
	if slices.Contains(e.gone, u.ID) {
		return contentError(rn, nil, "program %d of load record %d unloaded twice", u.ID, u.Record)
	}
	ne := &loadEntry{mrec: e.mrec, rrec: e.rrec, res: e.res,
		gone:    append(slices.Clone(e.gone), u.ID),
		unloads: append(slices.Clone(e.unloads), rn)}
	if ne.present() == 0 {
		delete(inv.loads, u.Record)
		delete(inv.live, e.mrec)
		delete(inv.live, e.rrec)
		for _, r := range e.unloads {
			delete(inv.live, r)
		}
		return nil
	}
	inv.loads[u.Record] = ne
	inv.keep(rn, cel.BPFUnloaded, slices.Clone(content))
	return nil
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

// present counts the entry's loader and programs not yet unloaded.
func (e *loadEntry) present() int {
	n := 0
	if e.res.Loader != nil && !slices.Contains(e.gone, e.res.Loader.ID) {
		n++
	}
	for _, p := range e.res.Programs {
		if !slices.Contains(e.gone, p.ID) {
			n++
		}
	}
	return n
}

// liveNumbers returns the live record numbers in ascending order.
func (inv *inventory) liveNumbers() []uint64 {
	return slices.Sorted(maps.Keys(inv.live))
}

// rebuild makes an inventory from live records, as a State carries them.
func rebuild(recs []numberedRecord) (*inventory, error) {
	inv := newInventory()
	for _, r := range recs {
		if err := inv.apply(r.rn, r.typ, r.content); err != nil {
			return nil, fmt.Errorf("rebuild: %w", err)
		}
	}
	// Every record kept must still be live after the rebuild: a State
	// carrying dead weight was not made by this package.
	if len(inv.live) != len(recs) {
		return nil, fmt.Errorf("rebuild: %d records given, %d live", len(recs), len(inv.live))
	}
	return inv, nil
}

type numberedRecord struct {
	rn      uint64
	typ     cel.ContentType
	content []byte
}
