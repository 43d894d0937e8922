package progevents

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrNotSupported is returned where the platform has no perf events.
var ErrNotSupported = errors.New("perf events not supported on this platform")

// ErrMalformed is wrapped by every error about a record the kernel wrote
// that does not parse.
var ErrMalformed = errors.New("malformed perf record")

// Kind says whether a program came or went.
type Kind uint16

// Kinds, numbered as enum perf_bpf_event_type.
const (
	Load   Kind = 1 // PERF_BPF_EVENT_PROG_LOAD
	Unload Kind = 2 // PERF_BPF_EVENT_PROG_UNLOAD
)

func (k Kind) String() string {
	switch k {
	case Load:
		return "load"
	case Unload:
		return "unload"
	}
	return fmt.Sprintf("kind(%d)", uint16(k))
}

// Event is one program load or release.
type Event struct {
	Kind Kind
	ID   uint32
	// Tag is the program's tag as bpf_prog_info reports it.
	Tag [8]byte
	// PID and TID are the process and thread that loaded the program, or
	// that dropped its last reference, in the watcher's pid namespace (0
	// for a kernel context).
	PID, TID uint32
	// Time is CLOCK_BOOTTIME in nanoseconds when the kernel wrote the
	// record.
	Time uint64
	CPU  uint32
}

// Batch is what one Read returns: the events in time order, and whether
// events were lost. Lost counts the records the kernel reported dropped
// because a ring was full, plus one for each ring found full (the kernel
// reports a drop only when it can write again); it is an estimate, and any
// value above zero means some program events were missed.
type Batch struct {
	Events []Event
	Lost   uint64
}

// Record types (enum perf_event_type) and the event's sample_type.
const (
	recordLost     = 2  // PERF_RECORD_LOST
	recordBPFEvent = 18 // PERF_RECORD_BPF_EVENT

	sampleTID  = 1 << 1 // PERF_SAMPLE_TID
	sampleTime = 1 << 2 // PERF_SAMPLE_TIME
	sampleCPU  = 1 << 7 // PERF_SAMPLE_CPU

	// sampleType is what every watched event asks the kernel to append
	// (struct sample_id, in this order: pid/tid, time, cpu/res).
	sampleType = sampleTID | sampleTime | sampleCPU
	sampleSize = 8 + 8 + 8

	headerSize = 8 // struct perf_event_header
)

// parsed is one record: a program event, a count of lost records, or
// neither (a record type the watcher did not ask for).
type parsed struct {
	event *Event
	lost  uint64
}

// parseRecord decodes one record: struct perf_event_header (u32 type, u16
// misc, u16 size) and its body, in the machine's byte order. rec is exactly
// header.size bytes.
func parseRecord(rec []byte) (parsed, error) {
	if len(rec) < headerSize {
		return parsed{}, fmt.Errorf("%w: %d bytes, shorter than a header", ErrMalformed, len(rec))
	}
	typ := binary.NativeEndian.Uint32(rec[0:])
	size := int(binary.NativeEndian.Uint16(rec[6:]))
	if size != len(rec) {
		return parsed{}, fmt.Errorf("%w: header says %d bytes, record has %d", ErrMalformed, size, len(rec))
	}
	body := rec[headerSize:]
	switch typ {
	case recordBPFEvent:
		// u16 type, u16 flags, u32 id, u8 tag[8], struct sample_id.
		if len(body) < 16+sampleSize {
			return parsed{}, fmt.Errorf("%w: bpf event of %d bytes", ErrMalformed, len(rec))
		}
		ev := &Event{
			Kind: Kind(binary.NativeEndian.Uint16(body[0:])),
			ID:   binary.NativeEndian.Uint32(body[4:]),
		}
		copy(ev.Tag[:], body[8:16])
		parseSampleID(ev, body[16:])
		if ev.Kind != Load && ev.Kind != Unload {
			// Other bpf event types are not program lifetimes.
			return parsed{}, nil
		}
		return parsed{event: ev}, nil
	case recordLost:
		// u64 id, u64 lost, struct sample_id.
		if len(body) < 16+sampleSize {
			return parsed{}, fmt.Errorf("%w: lost record of %d bytes", ErrMalformed, len(rec))
		}
		return parsed{lost: binary.NativeEndian.Uint64(body[8:])}, nil
	}
	return parsed{}, nil
}

// parseSampleID reads struct sample_id as sampleType lays it out.
func parseSampleID(ev *Event, b []byte) {
	ev.PID = binary.NativeEndian.Uint32(b[0:])
	ev.TID = binary.NativeEndian.Uint32(b[4:])
	ev.Time = binary.NativeEndian.Uint64(b[8:])
	ev.CPU = binary.NativeEndian.Uint32(b[16:])
}
