package measure

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// The contents of the log records that follow a measurement: the kernel's
// answer to a measured load (LoadResult), a program found in the kernel that
// no measured load created (KernelProgram, for "unmeasured program"), and a
// program that left the kernel (Unloaded). Each has a canonical encoding in
// the measurement's framing (docs/measurement-format.md) behind its own
// magic, so one record's bytes can never be read as another's.

var (
	loadResultMagic = [4]byte{'B', 'P', 'F', 'R'}
	kernelProgMagic = [4]byte{'B', 'P', 'F', 'U'}
	unloadedMagic   = [4]byte{'B', 'P', 'F', 'X'}
	eventsLostMagic = [4]byte{'B', 'P', 'F', 'L'}
	transientMagic  = [4]byte{'B', 'P', 'F', 'T'}
)

// recordVersion is the encoding version of the record kinds here. Version 2
// added the mismatch outcome, the event-driven discoveries of unmeasured
// programs with the loading process, and the events-lost record; readers
// take versions 1 and 2.
const recordVersion = 2

// Outcome says what happened to a measured load.
type Outcome uint8

// Outcomes. The numeric values are part of the canonical encoding.
const (
	OutcomeLoaded      Outcome = 1 // the loader ran and returned 0
	OutcomeRefused     Outcome = 2 // refused by policy after measuring: no bpf() call was made
	OutcomeKernelError Outcome = 3 // a bpf() step failed (Step, Errno)
	OutcomeLoaderError Outcome = 4 // the loader ran and returned a negative errno
	OutcomeAborted     Outcome = 5 // the agent stopped before the load finished (written by recovery)
	// OutcomeMismatch: the programs the loader created disagree with the
	// measurement (count, names, types or kernel tags); the agent released
	// them before recording this, so nothing of the load stays.
	OutcomeMismatch Outcome = 6
)

func (o Outcome) String() string {
	switch o {
	case OutcomeLoaded:
		return "loaded"
	case OutcomeRefused:
		return "refused"
	case OutcomeKernelError:
		return "kernel-error"
	case OutcomeLoaderError:
		return "loader-error"
	case OutcomeAborted:
		return "aborted"
	case OutcomeMismatch:
		return "mismatch"
	}
	return fmt.Sprintf("outcome(%d)", uint8(o))
}

// MarshalText renders the outcome by name.
func (o Outcome) MarshalText() ([]byte, error) { return []byte(o.String()), nil }

// KernelObject is a program or map the kernel created, as the kernel names it.
type KernelObject struct {
	ID   uint32
	Type uint32  // enum bpf_prog_type or enum bpf_map_type
	Tag  [8]byte // programs: bpf_prog_info.tag; maps: zero
	Name string  // the kernel's (truncated) object name
}

// LoadResult is the kernel's answer to one measured load.
type LoadResult struct {
	// MeasurementRecord is the log record number of the measurement this
	// result answers, and MeasurementSHA256 the SHA-256 of its content.
	MeasurementRecord uint64
	MeasurementSHA256 [32]byte
	Outcome           Outcome
	Step              string // the bpf() step that failed, for kernel and loader errors
	Errno             uint32 // the error number, for kernel and loader errors
	Reason            string // for refusals: why, in words
	Loader            *KernelObject
	DataMap           *KernelObject
	Programs          []KernelObject
	Maps              []KernelObject
}

const (
	tagLRRecord   = 1
	tagLRDigest   = 2
	tagLROutcome  = 3
	tagLRStep     = 4
	tagLRErrno    = 5
	tagLRReason   = 6
	tagLRLoader   = 7
	tagLRDataMap  = 8
	tagLRPrograms = 9
	tagLRMaps     = 10

	tagObjID   = 1
	tagObjType = 2
	tagObjTag  = 3
	tagObjName = 4
)

func envelope(magic [4]byte) tlvWriter {
	w := tlvWriter{lastTag: -1}
	w.buf = append(w.buf, magic[:]...)
	w.buf = binary.BigEndian.AppendUint16(w.buf, recordVersion)
	return w
}

func openEnvelope(b []byte, magic [4]byte, what string) (tlvFields, error) {
	if len(b) < 6 || !bytes.Equal(b[:4], magic[:]) {
		return nil, missingMagic(what, magic)
	}
	if v := binary.BigEndian.Uint16(b[4:6]); v != 1 && v != recordVersion {
		return nil, fmt.Errorf("%w: %s: version %d, this reader knows 1 and %d", ErrMalformed, what, v, recordVersion)
	}
	return splitTLV(b[6:], what)
}

// missingMagic is openEnvelope's error for a record of another kind. It
// is a function of its own so that magic escapes (to the error) only
// here: openEnvelope allocates nothing.
func missingMagic(what string, magic [4]byte) error {
	return fmt.Errorf("%w: %s: missing %q magic", ErrMalformed, what, magic[:])
}

func encodeObject(o *KernelObject) []byte {
	w := tlvWriter{lastTag: -1}
	w.u32(tagObjID, o.ID)
	w.u32(tagObjType, o.Type)
	if o.Tag != ([8]byte{}) {
		w.field(tagObjTag, o.Tag[:])
	}
	w.optStr(tagObjName, o.Name)
	return w.buf
}

func decodeObject(b []byte, where string, names *strArena) (KernelObject, error) {
	var o KernelObject
	fields, err := splitTLV(b, where)
	if err != nil {
		return o, err
	}
	req := 0
	for f := range fields.all() {
		var err error
		switch f.tag {
		case tagObjID:
			o.ID, err = u32Field(f, where)
			req++
		case tagObjType:
			o.Type, err = u32Field(f, where)
			req++
		case tagObjTag:
			if err = fixedLen(f, 8, where); err == nil {
				copy(o.Tag[:], f.val)
				if o.Tag == ([8]byte{}) {
					err = fmt.Errorf("%w: %s: tag is present but zero", ErrMalformed, where)
				}
			}
		case tagObjName:
			if err = nonEmpty(f, where); err == nil {
				o.Name = names.str(f.val)
			}
		default:
			err = fmt.Errorf("%w: %s: unknown field %d at offset %d", ErrMalformed, where, f.tag, f.off)
		}
		if err != nil {
			return o, err
		}
	}
	if req != 2 {
		return o, fmt.Errorf("%w: %s: id and type are required", ErrMalformed, where)
	}
	return o, nil
}

func encodeObjects(objs []KernelObject) []byte {
	var out []byte
	for i := range objs {
		e := encodeObject(&objs[i])
		out = binary.BigEndian.AppendUint32(out, uint32(len(e)))
		out = append(out, e...)
	}
	return out
}

// maxObjects bounds an object list in one record.
const maxObjects = 4096

// minObjectLen is the length of the smallest object that decodes: an id
// and a type.
const minObjectLen = 2 * 9

// decodeObjects decodes a list of objects, appending them to out (empty,
// with the capacity the caller has for them; nil to allocate).
func decodeObjects(b []byte, what string, out []KernelObject, names *strArena) ([]KernelObject, error) {
	for off := 0; off < len(b); {
		if len(out) >= maxObjects {
			return nil, fmt.Errorf("%w: %s: more than %d objects", ErrMalformed, what, maxObjects)
		}
		where := itemName(what, len(out))
		if len(b)-off < 4 {
			return nil, fmt.Errorf("%w: %s: truncated length at offset %d", ErrMalformed, where, off)
		}
		n := binary.BigEndian.Uint32(b[off:])
		if int64(n) > int64(len(b)-off-4) {
			return nil, fmt.Errorf("%w: %s: length %d exceeds the %d bytes left", ErrMalformed, where, n, len(b)-off-4)
		}
		o, err := decodeObject(b[off+4:off+4+int(n)], where, names)
		if err != nil {
			return nil, err
		}
		out = append(out, o)
		off += 4 + int(n)
	}
	return out, nil
}

// MarshalBinary returns the canonical encoding.
func (r *LoadResult) MarshalBinary() ([]byte, error) {
	if r.Outcome < OutcomeLoaded || r.Outcome > OutcomeMismatch {
		return nil, fmt.Errorf("load result: outcome %d is not defined", r.Outcome)
	}
	w := envelope(loadResultMagic)
	w.u64(tagLRRecord, r.MeasurementRecord)
	w.field(tagLRDigest, r.MeasurementSHA256[:])
	w.u8(tagLROutcome, uint8(r.Outcome))
	w.optStr(tagLRStep, r.Step)
	if r.Errno != 0 {
		w.u32(tagLRErrno, r.Errno)
	}
	w.optStr(tagLRReason, r.Reason)
	if r.Loader != nil {
		w.field(tagLRLoader, encodeObject(r.Loader))
	}
	if r.DataMap != nil {
		w.field(tagLRDataMap, encodeObject(r.DataMap))
	}
	if len(r.Programs) > 0 {
		w.field(tagLRPrograms, encodeObjects(r.Programs))
	}
	if len(r.Maps) > 0 {
		w.field(tagLRMaps, encodeObjects(r.Maps))
	}
	return w.buf, nil
}

// ParseLoadResult decodes a load result strictly.
//
// The result and the objects it lists (up to a few) are one allocation,
// its strings another: a verifier keeps one parsed result per live load.
// The result shares no memory with b.
func ParseLoadResult(b []byte) (*LoadResult, error) {
	const what = "load result"
	fields, err := openEnvelope(b, loadResultMagic, what)
	if err != nil {
		return nil, err
	}
	blk := &loadResultBlock{}
	var names strArena
	names.b.Grow(loadResultStringBytes(fields))
	free := blk.objs[:] // for the lists, in the block while they fit
	r := &blk.r
	req := 0
	for f := range fields.all() {
		var err error
		switch f.tag {
		case tagLRRecord:
			if err = fixedLen(f, 8, what); err == nil {
				r.MeasurementRecord = binary.BigEndian.Uint64(f.val)
			}
			req++
		case tagLRDigest:
			if err = fixedLen(f, 32, what); err == nil {
				copy(r.MeasurementSHA256[:], f.val)
			}
			req++
		case tagLROutcome:
			var v uint8
			v, err = enumU8(f, what, uint8(OutcomeLoaded), uint8(OutcomeMismatch))
			r.Outcome = Outcome(v)
			req++
		case tagLRStep:
			if err = nonEmpty(f, what); err == nil {
				r.Step = names.str(f.val)
			}
		case tagLRErrno:
			if r.Errno, err = u32Field(f, what); err == nil && r.Errno == 0 {
				err = fmt.Errorf("%w: %s: errno is present but zero", ErrMalformed, what)
			}
		case tagLRReason:
			if err = nonEmpty(f, what); err == nil {
				r.Reason = names.str(f.val)
			}
		case tagLRLoader:
			blk.loader, err = decodeObject(f.val, "loader", &names)
			r.Loader = &blk.loader
		case tagLRDataMap:
			blk.dataMap, err = decodeObject(f.val, "data map", &names)
			r.DataMap = &blk.dataMap
		case tagLRPrograms:
			if err = nonEmpty(f, what); err == nil {
				r.Programs, err = decodeObjects(f.val, "program", objectSpace(&free, f.val), &names)
			}
		case tagLRMaps:
			if err = nonEmpty(f, what); err == nil {
				r.Maps, err = decodeObjects(f.val, "map", objectSpace(&free, f.val), &names)
			}
		default:
			err = fmt.Errorf("%w: %s: unknown field %d at offset %d", ErrMalformed, what, f.tag, f.off)
		}
		if err != nil {
			return nil, err
		}
	}
	if req != 3 {
		return nil, fmt.Errorf("%w: %s: record, digest and outcome are required", ErrMalformed, what)
	}
	return r, nil
}

// loadResultBlock is a parsed load result and what it points to, in one
// allocation: its loader, its data map and the first objects of its
// lists (a load of one program with one map fits).
type loadResultBlock struct {
	r               LoadResult
	loader, dataMap KernelObject
	objs            [4]KernelObject
}

// objectSpace returns an empty slice with room for the objects of list:
// the start of free when they fit there (free then loses it), a new
// array when they do not, nil when list has no object that could decode.
// The slice's capacity is the room: appending more than that moves the
// list, never into the room of another.
func objectSpace(free *[]KernelObject, list []byte) []KernelObject {
	n := countFrames(list, minObjectLen, maxObjects)
	switch {
	case n == 0:
		return nil
	case n <= len(*free):
		out := (*free)[:0:n]
		*free = (*free)[n:]
		return out
	}
	return make([]KernelObject, 0, n)
}

// loadResultStringBytes is the total length of the strings a load result
// with these fields has.
func loadResultStringBytes(fields tlvFields) int {
	n := 0
	for f := range fields.all() {
		switch f.tag {
		case tagLRStep, tagLRReason:
			n += len(f.val)
		case tagLRLoader, tagLRDataMap:
			n += stringBytes(f.val, tags(tagObjName))
		case tagLRPrograms, tagLRMaps:
			n += listStringBytes(f.val, tags(tagObjName))
		}
	}
	return n
}

// Discovery says how the agent came to know of a program it did not load.
type Discovery uint8

// Discovery values. The numeric values are part of the canonical encoding.
const (
	DiscoveredAtStart   Discovery = 1 // already in the kernel when the agent took over the log (the baseline)
	DiscoveredObserved  Discovery = 2 // found by a sweep of the kernel's program list while the agent ran
	DiscoveredEvent     Discovery = 3 // the kernel announced its load (perf BPF event) and it was still there to read
	DiscoveredAfterLoss Discovery = 4 // found by the sweep that follows lost events
	// DiscoveredContradiction: at start, a program the log said was another
	// one (by id) was found with other properties; this record says what the
	// kernel holds.
	DiscoveredContradiction Discovery = 5
)

func (d Discovery) String() string {
	switch d {
	case DiscoveredAtStart:
		return "present-at-start"
	case DiscoveredObserved:
		return "observed"
	case DiscoveredEvent:
		return "load-event"
	case DiscoveredAfterLoss:
		return "after-lost-events"
	case DiscoveredContradiction:
		return "contradicts-log"
	}
	return fmt.Sprintf("discovery(%d)", uint8(d))
}

// MarshalText renders the value by name.
func (d Discovery) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// KernelProgram describes a program the kernel holds that no measured load
// created: the content of an "unmeasured program" record. (Programs that
// came and went before the agent could read them are in Transient records.)
type KernelProgram struct {
	Discovery    Discovery
	ID           uint32
	Type         uint32
	Name         string
	Tag          [8]byte
	CreatedByUID uint32
	LoadTimeNS   uint64   // boot-relative load time
	XlatedSHA256 []byte   // SHA-256 of the translated instructions, when the kernel exposes them
	MapIDs       []uint32 // maps the program uses
	// PID is the process that loaded the program, from the kernel's
	// event; 0 when no event said. Comm and Exe are that process's name and
	// executable as read when the event was handled (empty if it had
	// already exited).
	PID  uint32
	Comm string
	Exe  string
	// Contradicts is the record whose claim about this program id the
	// kernel contradicted (DiscoveredContradiction).
	Contradicts uint64
}

const (
	tagKPDiscovery   = 1
	tagKPID          = 2
	tagKPType        = 3
	tagKPName        = 4
	tagKPTag         = 5
	tagKPUID         = 6
	tagKPLoadTime    = 7
	tagKPXlated      = 8
	tagKPMapIDs      = 9
	tagKPPID         = 10
	tagKPComm        = 11
	tagKPExe         = 12
	tagKPContradicts = 13
)

// MarshalBinary returns the canonical encoding.
func (p *KernelProgram) MarshalBinary() ([]byte, error) {
	if p.Discovery < DiscoveredAtStart || p.Discovery > DiscoveredContradiction {
		return nil, fmt.Errorf("unmeasured program: discovery %d is not defined", p.Discovery)
	}
	if len(p.XlatedSHA256) != 0 && len(p.XlatedSHA256) != 32 {
		return nil, fmt.Errorf("unmeasured program: xlated digest is %d bytes, want 32", len(p.XlatedSHA256))
	}
	w := envelope(kernelProgMagic)
	w.u8(tagKPDiscovery, uint8(p.Discovery))
	w.u32(tagKPID, p.ID)
	w.u32(tagKPType, p.Type)
	w.optStr(tagKPName, p.Name)
	w.field(tagKPTag, p.Tag[:])
	w.u32(tagKPUID, p.CreatedByUID)
	w.u64(tagKPLoadTime, p.LoadTimeNS)
	w.optBytes(tagKPXlated, p.XlatedSHA256)
	if len(p.MapIDs) > 0 {
		var ids []byte
		for _, id := range p.MapIDs {
			ids = binary.BigEndian.AppendUint32(ids, id)
		}
		w.field(tagKPMapIDs, ids)
	}
	if p.PID != 0 {
		w.u32(tagKPPID, p.PID)
	}
	w.optStr(tagKPComm, p.Comm)
	w.optStr(tagKPExe, p.Exe)
	if p.Discovery == DiscoveredContradiction {
		w.u64(tagKPContradicts, p.Contradicts)
	}
	return w.buf, nil
}

// ParseKernelProgram decodes an "unmeasured program" record strictly.
func ParseKernelProgram(b []byte) (*KernelProgram, error) {
	const what = "unmeasured program"
	fields, err := openEnvelope(b, kernelProgMagic, what)
	if err != nil {
		return nil, err
	}
	p := &KernelProgram{}
	var seen tagSet
	for f := range fields.all() {
		seen.add(f.tag)
		var err error
		switch f.tag {
		case tagKPDiscovery:
			var v uint8
			v, err = enumU8(f, what, uint8(DiscoveredAtStart), uint8(DiscoveredContradiction))
			p.Discovery = Discovery(v)
		case tagKPID:
			p.ID, err = u32Field(f, what)
		case tagKPType:
			p.Type, err = u32Field(f, what)
		case tagKPName:
			if err = nonEmpty(f, what); err == nil {
				p.Name = string(f.val)
			}
		case tagKPTag:
			if err = fixedLen(f, 8, what); err == nil {
				copy(p.Tag[:], f.val)
			}
		case tagKPUID:
			p.CreatedByUID, err = u32Field(f, what)
		case tagKPLoadTime:
			if err = fixedLen(f, 8, what); err == nil {
				p.LoadTimeNS = binary.BigEndian.Uint64(f.val)
			}
		case tagKPXlated:
			if err = fixedLen(f, 32, what); err == nil {
				p.XlatedSHA256 = clone(f.val)
			}
		case tagKPMapIDs:
			if len(f.val) == 0 || len(f.val)%4 != 0 || len(f.val)/4 > maxObjects {
				err = fmt.Errorf("%w: %s: map id list of %d bytes", ErrMalformed, what, len(f.val))
				break
			}
			for i := 0; i < len(f.val); i += 4 {
				p.MapIDs = append(p.MapIDs, binary.BigEndian.Uint32(f.val[i:]))
			}
		case tagKPPID:
			if p.PID, err = u32Field(f, what); err == nil && p.PID == 0 {
				err = fmt.Errorf("%w: %s: pid is present but zero", ErrMalformed, what)
			}
		case tagKPComm:
			if err = nonEmpty(f, what); err == nil {
				p.Comm = string(f.val)
			}
		case tagKPExe:
			if err = nonEmpty(f, what); err == nil {
				p.Exe = string(f.val)
			}
		case tagKPContradicts:
			if err = fixedLen(f, 8, what); err == nil {
				p.Contradicts = binary.BigEndian.Uint64(f.val)
			}
		default:
			err = fmt.Errorf("%w: %s: unknown field %d at offset %d", ErrMalformed, what, f.tag, f.off)
		}
		if err != nil {
			return nil, err
		}
	}
	for _, t := range []uint8{tagKPDiscovery, tagKPID, tagKPType, tagKPTag, tagKPUID, tagKPLoadTime} {
		if !seen.has(t) {
			return nil, fmt.Errorf("%w: %s: required field %d missing", ErrMalformed, what, t)
		}
	}
	if seen.has(tagKPContradicts) != (p.Discovery == DiscoveredContradiction) {
		return nil, fmt.Errorf("%w: %s: the contradicted record goes with, and only with, discovery %s", ErrMalformed, what, DiscoveredContradiction)
	}
	return p, nil
}

// Unloaded records that a program the log accounted for left the kernel.
type Unloaded struct {
	ID   uint32
	Tag  [8]byte
	Name string
	// Record is the log record that introduced the program: the load
	// result of a measured load, or the "unmeasured program" record.
	Record uint64
}

const (
	tagULID     = 1
	tagULTag    = 2
	tagULName   = 3
	tagULRecord = 4
)

// MarshalBinary returns the canonical encoding.
func (u *Unloaded) MarshalBinary() ([]byte, error) {
	w := envelope(unloadedMagic)
	w.u32(tagULID, u.ID)
	w.field(tagULTag, u.Tag[:])
	w.optStr(tagULName, u.Name)
	w.u64(tagULRecord, u.Record)
	return w.buf, nil
}

// ParseUnloaded decodes a "program unloaded" record strictly.
func ParseUnloaded(b []byte) (*Unloaded, error) {
	u := &Unloaded{}
	if err := u.UnmarshalBinary(b); err != nil {
		return nil, err
	}
	return u, nil
}

// UnmarshalBinary decodes a "program unloaded" record strictly into u, as
// ParseUnloaded does (same checks, same errors), without allocating one:
// a verifier needs the record only while it applies it. On error u is
// left in an unspecified state.
func (u *Unloaded) UnmarshalBinary(b []byte) error {
	const what = "program unloaded"
	fields, err := openEnvelope(b, unloadedMagic, what)
	if err != nil {
		return err
	}
	*u = Unloaded{}
	req := 0
	for f := range fields.all() {
		var err error
		switch f.tag {
		case tagULID:
			u.ID, err = u32Field(f, what)
			req++
		case tagULTag:
			if err = fixedLen(f, 8, what); err == nil {
				copy(u.Tag[:], f.val)
			}
			req++
		case tagULName:
			if err = nonEmpty(f, what); err == nil {
				u.Name = string(f.val)
			}
		case tagULRecord:
			if err = fixedLen(f, 8, what); err == nil {
				u.Record = binary.BigEndian.Uint64(f.val)
			}
			req++
		default:
			err = fmt.Errorf("%w: %s: unknown field %d at offset %d", ErrMalformed, what, f.tag, f.off)
		}
		if err != nil {
			return err
		}
	}
	if req != 3 {
		return fmt.Errorf("%w: %s: id, tag and record are required", ErrMalformed, what)
	}
	return nil
}

// EventsLost records that the kernel dropped program events because the
// agent did not read them in time: programs may have come and gone
// unseen. The agent sweeps the kernel's program list right after and
// records what it finds (DiscoveredAfterLoss).
type EventsLost struct {
	// Count is at least the number of events dropped (the kernel's
	// PERF_RECORD_LOST counts, plus one per ring found full).
	Count uint64
	// TimeNS is CLOCK_BOOTTIME when the agent noticed.
	TimeNS uint64
}

const (
	tagELCount = 1
	tagELTime  = 2
)

// MarshalBinary returns the canonical encoding.
func (e *EventsLost) MarshalBinary() ([]byte, error) {
	if e.Count == 0 {
		return nil, fmt.Errorf("events lost: count is zero")
	}
	w := envelope(eventsLostMagic)
	w.u64(tagELCount, e.Count)
	w.u64(tagELTime, e.TimeNS)
	return w.buf, nil
}

// ParseEventsLost decodes an "events lost" record strictly.
func ParseEventsLost(b []byte) (*EventsLost, error) {
	const what = "events lost"
	fields, err := openEnvelope(b, eventsLostMagic, what)
	if err != nil {
		return nil, err
	}
	e := &EventsLost{}
	req := 0
	for f := range fields.all() {
		var err error
		switch f.tag {
		case tagELCount:
			if err = fixedLen(f, 8, what); err == nil {
				e.Count = binary.BigEndian.Uint64(f.val)
				if e.Count == 0 {
					err = fmt.Errorf("%w: %s: count is zero", ErrMalformed, what)
				}
			}
			req++
		case tagELTime:
			if err = fixedLen(f, 8, what); err == nil {
				e.TimeNS = binary.BigEndian.Uint64(f.val)
			}
			req++
		default:
			err = fmt.Errorf("%w: %s: unknown field %d at offset %d", ErrMalformed, what, f.tag, f.off)
		}
		if err != nil {
			return nil, err
		}
	}
	if req != 2 {
		return nil, fmt.Errorf("%w: %s: count and time are required", ErrMalformed, what)
	}
	return e, nil
}

// Transient records programs that came and went before the agent could
// read what the kernel says of them: the kernel announced their load and
// release (or only the release) between two reads of its program events.
// One record holds every such program of one batch of events, so a host
// where programs churn does not cost a log record each; nothing is left
// out.
type Transient struct {
	Programs []TransientProgram
}

// TransientProgram is one program of a Transient record: what the kernel's
// events said of it.
type TransientProgram struct {
	ID  uint32
	Tag [8]byte
	// PID is the process that loaded it, or that released it when its
	// load event was not read (Released); 0 for a kernel context. Comm and
	// Exe as in KernelProgram.
	PID      uint32
	Comm     string
	Exe      string
	Released bool
}

// MaxTransientPrograms bounds the programs of one Transient record; the
// agent writes more records for more.
const MaxTransientPrograms = 1024

const (
	tagTRPrograms = 1

	tagTPID       = 1
	tagTPTag      = 2
	tagTPPID      = 3
	tagTPComm     = 4
	tagTPExe      = 5
	tagTPReleased = 6
)

// MarshalBinary returns the canonical encoding.
func (t *Transient) MarshalBinary() ([]byte, error) {
	if n := len(t.Programs); n == 0 || n > MaxTransientPrograms {
		return nil, fmt.Errorf("transient programs: %d programs, want 1 to %d", n, MaxTransientPrograms)
	}
	var list []byte
	for i := range t.Programs {
		p := &t.Programs[i]
		e := tlvWriter{lastTag: -1}
		e.u32(tagTPID, p.ID)
		e.field(tagTPTag, p.Tag[:])
		if p.PID != 0 {
			e.u32(tagTPPID, p.PID)
		}
		e.optStr(tagTPComm, p.Comm)
		e.optStr(tagTPExe, p.Exe)
		if p.Released {
			e.u8(tagTPReleased, 1)
		}
		list = binary.BigEndian.AppendUint32(list, uint32(len(e.buf)))
		list = append(list, e.buf...)
	}
	w := envelope(transientMagic)
	w.field(tagTRPrograms, list)
	return w.buf, nil
}

// ParseTransient decodes a "transient programs" record strictly.
func ParseTransient(b []byte) (*Transient, error) {
	const what = "transient programs"
	fields, err := openEnvelope(b, transientMagic, what)
	if err != nil {
		return nil, err
	}
	if fields.count() != 1 || fields.first().tag != tagTRPrograms {
		return nil, fmt.Errorf("%w: %s: want exactly the program list", ErrMalformed, what)
	}
	t := &Transient{}
	list := fields.first().val
	for off := 0; off < len(list); {
		if len(t.Programs) >= MaxTransientPrograms {
			return nil, fmt.Errorf("%w: %s: more than %d programs", ErrMalformed, what, MaxTransientPrograms)
		}
		where := itemName("transient program", len(t.Programs))
		if len(list)-off < 4 {
			return nil, fmt.Errorf("%w: %s: truncated length at offset %d", ErrMalformed, where, off)
		}
		n := binary.BigEndian.Uint32(list[off:])
		if int64(n) > int64(len(list)-off-4) {
			return nil, fmt.Errorf("%w: %s: length %d exceeds the %d bytes left", ErrMalformed, where, n, len(list)-off-4)
		}
		p, err := decodeTransientProgram(list[off+4:off+4+int(n)], where)
		if err != nil {
			return nil, err
		}
		t.Programs = append(t.Programs, p)
		off += 4 + int(n)
	}
	if len(t.Programs) == 0 {
		return nil, fmt.Errorf("%w: %s: empty list", ErrMalformed, what)
	}
	return t, nil
}

func decodeTransientProgram(b []byte, where string) (TransientProgram, error) {
	var p TransientProgram
	fields, err := splitTLV(b, where)
	if err != nil {
		return p, err
	}
	req := 0
	for f := range fields.all() {
		var err error
		switch f.tag {
		case tagTPID:
			p.ID, err = u32Field(f, where)
			req++
		case tagTPTag:
			if err = fixedLen(f, 8, where); err == nil {
				copy(p.Tag[:], f.val)
			}
			req++
		case tagTPPID:
			if p.PID, err = u32Field(f, where); err == nil && p.PID == 0 {
				err = fmt.Errorf("%w: %s: pid is present but zero", ErrMalformed, where)
			}
		case tagTPComm:
			if err = nonEmpty(f, where); err == nil {
				p.Comm = string(f.val)
			}
		case tagTPExe:
			if err = nonEmpty(f, where); err == nil {
				p.Exe = string(f.val)
			}
		case tagTPReleased:
			var v uint8
			v, err = enumU8(f, where, 1, 1)
			p.Released = v == 1
		default:
			err = fmt.Errorf("%w: %s: unknown field %d at offset %d", ErrMalformed, where, f.tag, f.off)
		}
		if err != nil {
			return p, err
		}
	}
	if req != 2 {
		return p, fmt.Errorf("%w: %s: id and tag are required", ErrMalformed, where)
	}
	return p, nil
}
