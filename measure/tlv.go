package measure

import (
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"strings"
)

// The measurement's canonical encoding is a sequence of fields, each
//
//	tag u8 | length u32 big-endian | value [length]byte
//
// with tags strictly increasing, so that one logical measurement has exactly
// one encoding. Nested structures (programs, signer, requester) are fields
// whose value is itself such a sequence. docs/measurement-format.md lists the
// tags.

// maxFieldLen bounds one field; a measurement is small (a few KiB even with
// many programs), so anything near this is hostile input.
const maxFieldLen = 1 << 20

type tlvWriter struct {
	buf     []byte
	lastTag int
}

func (w *tlvWriter) field(tag uint8, v []byte) {
	w.header(tag, len(v))
	w.buf = append(w.buf, v...)
}

// header writes a field's tag and length; its value must follow.
func (w *tlvWriter) header(tag uint8, n int) {
	if int(tag) <= w.lastTag {
		// Programmer error: encoders are written with tags in order.
		panic(fmt.Sprintf("measure: tlv tag %d written after %d", tag, w.lastTag))
	}
	w.lastTag = int(tag)
	if w.buf == nil {
		w.buf = make([]byte, 0, 256)
	}
	w.buf = append(w.buf, tag)
	w.buf = binary.BigEndian.AppendUint32(w.buf, uint32(n))
}

func (w *tlvWriter) u8(tag uint8, v uint8) {
	w.header(tag, 1)
	w.buf = append(w.buf, v)
}

func (w *tlvWriter) u32(tag uint8, v uint32) {
	w.header(tag, 4)
	w.buf = binary.BigEndian.AppendUint32(w.buf, v)
}

func (w *tlvWriter) u64(tag uint8, v uint64) {
	w.header(tag, 8)
	w.buf = binary.BigEndian.AppendUint64(w.buf, v)
}

func (w *tlvWriter) str(tag uint8, v string) {
	w.header(tag, len(v))
	w.buf = append(w.buf, v...)
}

// optBytes writes the field only when v is non-empty: absence and emptiness
// are the same fact, so they must have the same encoding.
func (w *tlvWriter) optBytes(tag uint8, v []byte) {
	if len(v) > 0 {
		w.field(tag, v)
	}
}

func (w *tlvWriter) optStr(tag uint8, v string) {
	if v != "" {
		w.str(tag, v)
	}
}

// ErrMalformed is wrapped by every error decoding a content this package
// encodes: a measurement, a load result, an unmeasured program, an unload.
var ErrMalformed = errors.New("malformed measurement")

type tlvField struct {
	tag uint8
	off int // offset of the tag byte within the enclosing sequence
	val []byte
}

// splitTLV checks that b is a sequence of fields (lengths within bounds,
// tags strictly increasing) and returns it for reading; it allocates
// nothing.
func splitTLV(b []byte, where string) (tlvFields, error) {
	last := -1
	for off := 0; off < len(b); {
		if len(b)-off < 5 {
			return nil, fmt.Errorf("%w: %s: truncated field header at offset %d", ErrMalformed, where, off)
		}
		tag := b[off]
		n := binary.BigEndian.Uint32(b[off+1:])
		if n > maxFieldLen || int(n) > len(b)-off-5 {
			return nil, fmt.Errorf("%w: %s: field %d at offset %d: length %d exceeds the %d bytes left",
				ErrMalformed, where, tag, off, n, len(b)-off-5)
		}
		if int(tag) <= last {
			return nil, fmt.Errorf("%w: %s: field %d at offset %d out of order (after %d)", ErrMalformed, where, tag, off, last)
		}
		last = int(tag)
		off += 5 + int(n)
	}
	return tlvFields(b), nil
}

// tlvFields is a sequence of fields splitTLV checked; empty when it has
// none.
type tlvFields []byte

// all yields the fields in order.
func (fs tlvFields) all() iter.Seq[tlvField] {
	return func(yield func(tlvField) bool) {
		for off := 0; off < len(fs); {
			n := int(binary.BigEndian.Uint32(fs[off+1:]))
			if !yield(tlvField{tag: fs[off], off: off, val: fs[off+5 : off+5+n]}) {
				return
			}
			off += 5 + n
		}
	}
}

// count returns the number of fields.
func (fs tlvFields) count() int {
	n := 0
	for range fs.all() {
		n++
	}
	return n
}

// first returns the first field; fs must have one.
func (fs tlvFields) first() tlvField {
	for f := range fs.all() {
		return f
	}
	panic("measure: first field of an empty sequence")
}

// itemName names item i of a list for errors ("program 3"), without
// formatting for the first items of the lists records carry: every
// decoded record names its items, few ever fail.
func itemName(what string, i int) string {
	if i < 4 {
		switch what {
		case "program":
			return [...]string{"program 0", "program 1", "program 2", "program 3"}[i]
		case "map":
			return [...]string{"map 0", "map 1", "map 2", "map 3"}[i]
		}
	}
	return fmt.Sprintf("%s %d", what, i)
}

// tagSet is a set of field tags.
type tagSet [4]uint64

func (s *tagSet) add(t uint8)      { s[t>>6] |= 1 << (t & 63) }
func (s *tagSet) has(t uint8) bool { return s[t>>6]&(1<<(t&63)) != 0 }

func fixedLen(f tlvField, n int, where string) error {
	if len(f.val) != n {
		return fmt.Errorf("%w: %s: field %d is %d bytes, want %d", ErrMalformed, where, f.tag, len(f.val), n)
	}
	return nil
}

func nonEmpty(f tlvField, where string) error {
	if len(f.val) == 0 {
		return fmt.Errorf("%w: %s: field %d is present but empty", ErrMalformed, where, f.tag)
	}
	return nil
}

// strArena hands out copies of byte strings that share one allocation:
// a parsed record's strings are one allocation, not one each. Each string
// is written once and never changes after (a later write appends past
// it, or moves to a new buffer and leaves it), so sharing is not
// observable. The zero value is ready; grow it to the total first.
type strArena struct{ b strings.Builder }

// str returns a copy of v as a string; "" for empty v, as string(v).
func (a *strArena) str(v []byte) string {
	if len(v) == 0 {
		return ""
	}
	n := a.b.Len()
	a.b.Write(v)
	return a.b.String()[n:]
}

// stringBytes returns the total length of the values of the fields with
// a tag in tags of the TLV sequence b: a size hint for their copies,
// computed before b is checked. It stops where b is malformed and never
// exceeds len(b).
func stringBytes(b []byte, tags tagSet) int {
	n := 0
	for off := 0; len(b)-off >= 5; {
		l := uint64(binary.BigEndian.Uint32(b[off+1:]))
		if l > uint64(len(b)-off-5) {
			break
		}
		if tags.has(b[off]) {
			n += int(l)
		}
		off += 5 + int(l)
	}
	return n
}

// listStringBytes is stringBytes summed over the length-prefixed frames
// of list, each a TLV sequence.
func listStringBytes(list []byte, tags tagSet) int {
	n := 0
	for o := 0; len(list)-o >= 4; {
		l := uint64(binary.BigEndian.Uint32(list[o:]))
		if l > uint64(len(list)-o-4) {
			break
		}
		n += stringBytes(list[o+4:o+4+int(l)], tags)
		o += 4 + int(l)
	}
	return n
}

// countFrames returns the number of length-prefixed frames of at least
// minLen bytes in list, stopping where its framing breaks and at most
// limit: a size hint for the decoded list, that a list of small frames
// (all of them too small to decode) cannot inflate.
func countFrames(list []byte, minLen, limit int) int {
	n := 0
	for o := 0; len(list)-o >= 4 && n < limit; {
		fl := uint64(binary.BigEndian.Uint32(list[o:]))
		if fl > uint64(len(list)-o-4) {
			break
		}
		if int(fl) >= minLen {
			n++
		}
		o += 4 + int(fl)
	}
	return n
}

func tags(ts ...uint8) tagSet {
	var s tagSet
	for _, t := range ts {
		s.add(t)
	}
	return s
}
