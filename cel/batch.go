package cel

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// A batch record carries several events in one record: one write, one
// fsync and one PCR extend for all of them (group commit,
// docs/crash-safety.md §7). Its content is the events in order, each in
// the nested form a record's content field has: the event's top-level
// content type (u8), u32 length, then its kind (u8), u32 length and its
// content bytes. The record's digests are the hashes of the batch record's
// own content field, as for every record, so a batch is replayed exactly as
// any record is: one extend.
//
// Event numbers are record numbers: a batch record's RecNum is the number
// of its first event, its k events are numbered RecNum … RecNum+k−1, and the
// next record's RecNum is RecNum+k. A log without batches is numbered as
// before, and references from one event to another name event numbers.
//
// Bounds, so that the encoding stays canonical and a reader's work is
// bounded: a batch holds at least 2 events (a batch of one is written as the
// plain record it is) and at most MaxBatchEvents; no event of a batch is a
// batch or a boot header (the boot header is always record 0, alone); the
// batch content is within the record content limit like any content.

// MaxBatchEvents is the most events one batch record may carry.
const MaxBatchEvents = 1024

// minBatchEvents is the fewest: a single event is written as a plain
// record.
const minBatchEvents = 2

// Event is one event of a log: a plain record's content, or one of a batch
// record's events.
type Event struct {
	// RecNum is the event's number: the record's for a plain record, the
	// batch record's plus the event's position in the batch for a batch.
	RecNum uint64
	// Type says what Content is; never Batch.
	Type ContentType
	// Content is the event's content bytes; it aliases the record's.
	Content []byte
}

// ErrBatch reports batch content that is not a well-formed batch: too few
// or too many events, an event header that runs past the content, an
// unknown, nested-batch or boot-header event type.
var ErrBatch = errors.New("malformed batch")

// BatchError reports where and why batch content is malformed.
type BatchError struct {
	// Event is the position of the event found wrong, from 0; -1 when the
	// problem is the batch as a whole (its number of events).
	Event int
	// Offset is the event's byte offset in the batch content.
	Offset int
	// Detail says what is wrong.
	Detail string
}

func (e *BatchError) Error() string {
	if e.Event < 0 {
		return fmt.Sprintf("cel: batch: %s: %v", e.Detail, ErrBatch)
	}
	return fmt.Sprintf("cel: batch event %d at offset %d: %s: %v", e.Event, e.Offset, e.Detail, ErrBatch)
}

func (e *BatchError) Unwrap() error { return ErrBatch }

// EncodeBatch returns the content of a batch record carrying evs in order
// (their RecNum fields are ignored: a batch's events are numbered from the
// record's). It returns a *BatchError for fewer than 2 or more than
// MaxBatchEvents events, or an event of an unknown type, Batch or
// BootHeader, and an error for content over the record content limit.
func EncodeBatch(evs []Event) ([]byte, error) {
	if len(evs) < minBatchEvents || len(evs) > MaxBatchEvents {
		return nil, &BatchError{Event: -1, Detail: fmt.Sprintf("%d events, want %d to %d", len(evs), minBatchEvents, MaxBatchEvents)}
	}
	n := uint64(0)
	for i := range evs {
		if err := checkBatchEvent(evs[i].Type); err != "" {
			return nil, &BatchError{Event: i, Offset: int(min(n, uint64(maxInt))), Detail: err}
		}
		n += contentHdrLen + uint64(len(evs[i].Content))
	}
	if n > maxContentLen {
		return nil, fmt.Errorf("cel: encode batch: content is %d bytes, limit %d", n, maxContentLen)
	}
	b := make([]byte, 0, n)
	var hdr [contentHdrLen]byte
	for i := range evs {
		putContentHeader(hdr[:], evs[i].Type, len(evs[i].Content))
		b = append(b, hdr[:]...)
		b = append(b, evs[i].Content...)
	}
	return b, nil
}

// checkBatchEvent says what is wrong with an event of type t in a batch,
// or "".
func checkBatchEvent(t ContentType) string {
	switch {
	case !t.Known():
		return fmt.Sprintf("unknown content type %#04x", uint16(t))
	case t == Batch:
		return "a batch inside a batch"
	case t == BootHeader:
		return "a boot header inside a batch"
	}
	return ""
}

// ParseBatch decodes the content of a batch record into its events,
// numbered from first. The events' contents alias content. It returns a
// *BatchError for content that is not a well-formed batch; it never
// panics.
func ParseBatch(first uint64, content []byte) ([]Event, error) {
	n, err := batchLen(content)
	if err != nil {
		return nil, err
	}
	if first > ^uint64(0)-uint64(n-1) {
		return nil, &BatchError{Event: -1, Detail: fmt.Sprintf("%d events numbered from %d overflow the record number", n, first)}
	}
	evs := make([]Event, 0, n)
	forBatch(content, func(t ContentType, c []byte) {
		evs = append(evs, Event{RecNum: first + uint64(len(evs)), Type: t, Content: c})
	})
	return evs, nil
}

// batchLen checks batch content and returns its number of events, without
// allocating.
func batchLen(content []byte) (int, error) {
	pos, n := 0, 0
	for pos < len(content) {
		if n == MaxBatchEvents {
			return 0, &BatchError{Event: n, Offset: pos, Detail: fmt.Sprintf("more than %d events", MaxBatchEvents)}
		}
		left := len(content) - pos
		if left < contentHdrLen {
			return 0, &BatchError{Event: n, Offset: pos, Detail: fmt.Sprintf("%d bytes left, an event header needs %d", left, contentHdrLen)}
		}
		top := content[pos]
		outer := binary.BigEndian.Uint32(content[pos+1:])
		kind := content[pos+tlvHeaderLen]
		inner := binary.BigEndian.Uint32(content[pos+tlvHeaderLen+1:])
		t := ContentType(uint16(top)<<8 | uint16(kind))
		if top != tlvBPF && top != tlvAgent {
			return 0, &BatchError{Event: n, Offset: pos, Detail: fmt.Sprintf("unknown content type %#02x", top)}
		}
		if uint64(outer) != uint64(inner)+tlvHeaderLen {
			return 0, &BatchError{Event: n, Offset: pos, Detail: fmt.Sprintf("content length %d, want the kind's %d plus %d", outer, inner, tlvHeaderLen)}
		}
		if uint64(inner) > uint64(left-contentHdrLen) {
			return 0, &BatchError{Event: n, Offset: pos, Detail: fmt.Sprintf("length %d, only %d bytes left", inner, left-contentHdrLen)}
		}
		if msg := checkBatchEvent(t); msg != "" {
			return 0, &BatchError{Event: n, Offset: pos, Detail: msg}
		}
		pos += contentHdrLen + int(inner)
		n++
	}
	if n < minBatchEvents {
		return 0, &BatchError{Event: -1, Detail: fmt.Sprintf("%d events, want at least %d (one event is a plain record)", n, minBatchEvents)}
	}
	return n, nil
}

// forBatch calls fn with each event of content, which batchLen accepted.
func forBatch(content []byte, fn func(t ContentType, c []byte)) {
	for pos := 0; pos < len(content); {
		t := ContentType(uint16(content[pos])<<8 | uint16(content[pos+tlvHeaderLen]))
		l := int(binary.BigEndian.Uint32(content[pos+tlvHeaderLen+1:]))
		start := pos + contentHdrLen
		fn(t, content[start:start+l:start+l])
		pos = start + l
	}
}

// EventCount returns how many events r carries: 1 for a plain record, the
// number of its events for a batch (a *BatchError if its content is not a
// well-formed batch). It does not allocate.
func (r *Record) EventCount() (int, error) {
	if r.Type != Batch {
		return 1, nil
	}
	return batchLen(r.Content)
}

// NextRecNum returns the number the record after r must carry: r.RecNum
// plus r's number of events.
func (r *Record) NextRecNum() (uint64, error) {
	n, err := r.EventCount()
	if err != nil {
		return 0, err
	}
	if r.RecNum > ^uint64(0)-uint64(n) {
		return 0, fmt.Errorf("cel: record %d with %d events: the next record number overflows", r.RecNum, n)
	}
	return r.RecNum + uint64(n), nil
}

// Events returns r's events: r itself for a plain record, the batch's
// events numbered from r.RecNum for a batch record. Contents alias r's.
func (r *Record) Events() ([]Event, error) {
	if r.Type != Batch {
		return []Event{{RecNum: r.RecNum, Type: r.Type, Content: r.Content}}, nil
	}
	evs, err := ParseBatch(r.RecNum, r.Content)
	if err != nil {
		return nil, fmt.Errorf("cel: record %d: %w", r.RecNum, err)
	}
	return evs, nil
}

// EachEvent calls fn with each of r's events in order, without allocating,
// and stops at fn's first error. A batch whose content is malformed is an
// error before fn is called.
func (r *Record) EachEvent(fn func(ev *Event) error) error {
	if r.Type != Batch {
		ev := Event{RecNum: r.RecNum, Type: r.Type, Content: r.Content}
		return fn(&ev)
	}
	if _, err := r.NextRecNum(); err != nil {
		return fmt.Errorf("cel: record %d: %w", r.RecNum, err)
	}
	var err error
	ev := Event{RecNum: r.RecNum}
	forBatch(r.Content, func(t ContentType, c []byte) {
		if err != nil {
			return
		}
		ev.Type, ev.Content = t, c
		err = fn(&ev)
		ev.RecNum++
	})
	return err
}
