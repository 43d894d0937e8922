package cel

import (
	"crypto"
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"
)

// The management contents are a sequence of nested TLV fields (tag u8,
// length u32 big-endian, value) in strictly ascending tag order, every field
// present exactly once, integers big-endian at their fixed width. That makes
// the encoding of a value unique.

// fieldWriter appends fields.
type fieldWriter struct{ b []byte }

func (w *fieldWriter) bytes(tag byte, v []byte) {
	w.b = appendTLVHeader(w.b, tag, len(v))
	w.b = append(w.b, v...)
}

func (w *fieldWriter) u8(tag, v byte) { w.bytes(tag, []byte{v}) }

func (w *fieldWriter) u16(tag byte, v uint16) {
	w.bytes(tag, binary.BigEndian.AppendUint16(nil, v))
}

func (w *fieldWriter) u32(tag byte, v uint32) {
	w.bytes(tag, binary.BigEndian.AppendUint32(nil, v))
}

func (w *fieldWriter) u64(tag byte, v uint64) {
	w.bytes(tag, binary.BigEndian.AppendUint64(nil, v))
}

func (w *fieldWriter) str(tag byte, s string) { w.bytes(tag, []byte(s)) }

// pcrValues writes a digest list: entries typed by TPM_ALG_ID in ascending
// order, like a record's digests field.
func (w *fieldWriter) pcrValues(tag byte, vals map[crypto.Hash][]byte) error {
	hs := make([]crypto.Hash, 0, len(vals))
	for h := range vals {
		hs = append(hs, h)
	}
	sorted, ok := SortBanks(hs)
	if !ok {
		return fmt.Errorf("%w in %v", ErrUnknownBank, hs)
	}
	if len(sorted) == 0 {
		return errors.New("no pcr values")
	}
	var inner []byte
	for _, h := range sorted {
		v := vals[h]
		if len(v) != h.Size() {
			return fmt.Errorf("%s value is %d bytes, want %d", BankName(h), len(v), h.Size())
		}
		id, _ := AlgID(h)
		inner = appendTLVHeader(inner, byte(id), len(v))
		inner = append(inner, v...)
	}
	w.bytes(tag, inner)
	return nil
}

// fieldReader reads fields in order and records the first error.
type fieldReader struct {
	b    []byte
	pos  int
	what string // the content being parsed, for errors
	err  error
}

// FieldError reports a management content that is not canonical.
type FieldError struct {
	// Content names the structure ("boot_header").
	Content string
	// Field names the field, or "" for the structure as a whole.
	Field string
	// Offset is the byte offset within the content bytes.
	Offset int
	Detail string
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("cel: parse %s at offset %d: %s", e.Content, e.Offset, e.Detail)
	}
	return fmt.Sprintf("cel: parse %s: field %s at offset %d: %s", e.Content, e.Field, e.Offset, e.Detail)
}

// Unwrap returns ErrMalformed.
func (e *FieldError) Unwrap() error { return ErrMalformed }

func (r *fieldReader) fail(field string, off int, format string, args ...any) {
	if r.err == nil {
		r.err = &FieldError{Content: r.what, Field: field, Offset: off, Detail: fmt.Sprintf(format, args...)}
	}
}

// at reports whether the next field is an (optional) field with tag.
func (r *fieldReader) at(tag byte) bool {
	return r.err == nil && r.pos < len(r.b) && r.b[r.pos] == tag
}

// next reads the field that must come next, with tag and name.
func (r *fieldReader) next(tag byte, name string) []byte {
	if r.err != nil {
		return nil
	}
	start := r.pos
	if len(r.b)-r.pos < tlvHeaderLen {
		r.fail(name, start, "missing (%d bytes left)", len(r.b)-r.pos)
		return nil
	}
	t := r.b[r.pos]
	n := binary.BigEndian.Uint32(r.b[r.pos+1:])
	if t != tag {
		r.fail(name, start, "found tag %d, want %d", t, tag)
		return nil
	}
	r.pos += tlvHeaderLen
	if uint64(n) > uint64(len(r.b)-r.pos) {
		r.fail(name, start, "length %d, only %d bytes left", n, len(r.b)-r.pos)
		return nil
	}
	v := r.b[r.pos : r.pos+int(n)]
	r.pos += int(n)
	return v
}

func (r *fieldReader) fixed(tag byte, name string, size int) []byte {
	start := r.pos
	v := r.next(tag, name)
	if r.err == nil && len(v) != size {
		r.fail(name, start, "length %d, want %d", len(v), size)
		return nil
	}
	return v
}

func (r *fieldReader) u8(tag byte, name string) byte {
	if v := r.fixed(tag, name, 1); v != nil {
		return v[0]
	}
	return 0
}

func (r *fieldReader) u16(tag byte, name string) uint16 {
	if v := r.fixed(tag, name, 2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (r *fieldReader) u32(tag byte, name string) uint32 {
	if v := r.fixed(tag, name, 4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (r *fieldReader) u64(tag byte, name string) uint64 {
	if v := r.fixed(tag, name, 8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func (r *fieldReader) str(tag byte, name string) string {
	start := r.pos
	v := r.next(tag, name)
	if r.err == nil && !utf8.Valid(v) {
		r.fail(name, start, "not valid UTF-8")
	}
	return string(v)
}

func (r *fieldReader) pcrValues(tag byte, name string) map[crypto.Hash][]byte {
	start := r.pos
	v := r.next(tag, name)
	if r.err != nil {
		return nil
	}
	base := start + tlvHeaderLen
	out := make(map[crypto.Hash][]byte)
	prev := -1
	for pos := 0; pos < len(v); {
		if len(v)-pos < tlvHeaderLen {
			r.fail(name, base+pos, "entry header runs past the field")
			return nil
		}
		h, ok := HashForAlg(uint16(v[pos]))
		if !ok {
			r.fail(name, base+pos, "unknown algorithm %#04x", v[pos])
			return nil
		}
		i, _ := bankIndex(h)
		if i <= prev {
			r.fail(name, base+pos, "%s: duplicate or out of order", BankName(h))
			return nil
		}
		prev = i
		n := binary.BigEndian.Uint32(v[pos+1:])
		pos += tlvHeaderLen
		if uint64(n) != uint64(h.Size()) || len(v)-pos < h.Size() {
			r.fail(name, base+pos-tlvHeaderLen, "%s: length %d, want %d", BankName(h), n, h.Size())
			return nil
		}
		out[h] = append([]byte(nil), v[pos:pos+h.Size()]...)
		pos += h.Size()
	}
	if len(out) == 0 {
		r.fail(name, start, "no values")
		return nil
	}
	return out
}

// done checks that nothing follows the last field.
func (r *fieldReader) done() error {
	if r.err == nil && r.pos != len(r.b) {
		r.fail("", r.pos, "%d trailing bytes after the last field", len(r.b)-r.pos)
	}
	return r.err
}
