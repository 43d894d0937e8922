package cel

import (
	"crypto"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// Decode decodes a CEL TLV log: records back to back, nothing else. It
// returns the records decoded before any error, and a *DecodeError wrapping
// ErrTruncated (the input ends inside a record) or ErrMalformed. Decoded
// records alias b.
func Decode(b []byte) ([]Record, error) {
	n, digests := count(b)
	recs := make([]Record, 0, n)
	d := decoder{left: digests}
	off := 0
	for off < len(b) {
		r, n, err := d.record(b, off, len(recs))
		if err != nil {
			return recs, err
		}
		recs = append(recs, r)
		off += n
	}
	return recs, nil
}

// DecodeRecord decodes the record at the start of b and returns it with its
// encoded length. Offsets in errors are relative to b.
func DecodeRecord(b []byte) (Record, int, error) {
	var digs [numBanks]Digest
	r, nd, n, err := recordInto(b, 0, 0, &digs)
	if err != nil {
		return Record{}, 0, err
	}
	r.Digests = slices.Clone(digs[:nd])
	return r, n, nil
}

// Scanner reads a CEL TLV log one record at a time, as Decode does, without
// allocating: a verifier that looks at each record once, or scans the log
// again, needs no []Record.
type Scanner struct {
	b     []byte
	off   int
	index int
	err   error
}

// NewScanner returns a Scanner of the log b.
func NewScanner(b []byte) Scanner { return Scanner{b: b} }

// Next decodes the next record into r and reports whether there was one:
// false at the end of the log or at the first error (Err). r's content and
// digest values alias the log. r.Digests is reused when its capacity holds
// the record's digests (never more than four), so a caller that decodes
// every record into one Record allocates nothing.
func (s *Scanner) Next(r *Record) bool {
	if s.err != nil || s.off >= len(s.b) {
		return false
	}
	var digs [numBanks]Digest
	rec, nd, n, err := recordInto(s.b, s.off, s.index, &digs)
	if err != nil {
		s.err = err
		return false
	}
	if cap(r.Digests) < nd {
		r.Digests = make([]Digest, nd, numBanks)
	}
	// Reslicing the field in place, so that the escape analysis does not
	// take r's own array (perhaps on its owner's stack) to escape.
	r.Digests = r.Digests[:nd]
	copy(r.Digests, digs[:nd])
	r.RecNum, r.PCR, r.Type, r.Content = rec.RecNum, rec.PCR, rec.Type, rec.Content
	s.off += n
	s.index++
	return true
}

// Err returns the *DecodeError that stopped Next, or nil.
func (s *Scanner) Err() error { return s.err }

// count returns the number of records in b and of their digests, reading
// only the field headers; for malformed input, what it counted before the
// fault. Decode sizes its allocations with it.
func count(b []byte) (records, digests int) {
	for off := 0; ; records++ {
		var fields [4][]byte
		for i := range fields {
			if len(b)-off < tlvHeaderLen {
				return records, digests
			}
			n := binary.BigEndian.Uint32(b[off+1:])
			if uint64(n) > uint64(len(b)-off-tlvHeaderLen) {
				return records, digests
			}
			fields[i] = b[off+tlvHeaderLen : off+tlvHeaderLen+int(n)]
			off += tlvHeaderLen + int(n)
		}
		for v := fields[2]; len(v) >= tlvHeaderLen; digests++ {
			n := binary.BigEndian.Uint32(v[1:])
			if uint64(n) > uint64(len(v)-tlvHeaderLen) {
				break
			}
			v = v[tlvHeaderLen+int(n):]
		}
	}
}

// decoder hands out Digests slices from a shared backing array so that
// decoding a log does not allocate per record. It allocates arrays of the
// digests count expects (left), at most 256 at a time, so that a short
// log (the few records a verifier resumes with) does not pay for a long
// one's; 16 at a time past what count expected.
type decoder struct {
	pool []Digest
	left int
}

func (d *decoder) digests(n int) []Digest {
	if len(d.pool) < n {
		size := 16
		if d.left > 0 {
			size = min(d.left, 256)
		}
		d.pool = make([]Digest, max(size, n))
		d.left -= len(d.pool)
	}
	s := d.pool[:n:n]
	d.pool = d.pool[n:]
	return s
}

// record decodes the record starting at b[off:]; index is its position.
// Its digests are from d's backing arrays.
func (d *decoder) record(b []byte, off, index int) (Record, int, error) {
	var digs [numBanks]Digest
	r, nd, n, err := recordInto(b, off, index, &digs)
	if err != nil {
		return r, 0, err
	}
	r.Digests = d.digests(nd)
	copy(r.Digests, digs[:nd])
	return r, n, nil
}

// recordInto decodes the record starting at b[off:] (index is its
// position) and returns its encoded length. Its digests go to digs, the
// first nd of them, and not into the Record: the caller attaches them, so
// that digs (often on the caller's stack) need not escape with the
// Record's other fields.
func recordInto(b []byte, off, index int, digs *[numBanks]Digest) (r Record, nd, size int, err error) {
	p := parser{b: b, pos: off, err: DecodeError{Index: index, RecordOffset: int64(off)}}

	v, ok := p.field("recnum", tlvRecNum)
	if !ok {
		return r, 0, 0, p.error()
	}
	if len(v) != recnumLen {
		return r, 0, 0, p.malformed("recnum", p.last, fmt.Sprintf("length %d, want %d", len(v), recnumLen))
	}
	r.RecNum = binary.BigEndian.Uint64(v)
	p.err.RecNum, p.err.HasRecNum = r.RecNum, true

	if v, ok = p.field("pcr", tlvPCR); !ok {
		return r, 0, 0, p.error()
	}
	if len(v) != pcrLen {
		return r, 0, 0, p.malformed("pcr", p.last, fmt.Sprintf("length %d, want %d", len(v), pcrLen))
	}
	r.PCR = v[0]

	if v, ok = p.field("digests", tlvDigests); !ok {
		return r, 0, 0, p.error()
	}
	if nd, err = parseDigests(&p, v, p.pos-len(v), digs); err != nil {
		return r, 0, 0, err
	}

	t, n, ok := p.header("content")
	if !ok {
		return r, 0, 0, p.error()
	}
	if t != tlvBPF && t != tlvAgent {
		return r, 0, 0, p.malformed("content", p.last, fmt.Sprintf("unknown content type %#02x", t))
	}
	if n < tlvHeaderLen {
		return r, 0, 0, p.malformed("content", p.last, fmt.Sprintf("length %d, shorter than the kind header", n))
	}
	if !p.need("content", n) {
		return r, 0, 0, p.error()
	}
	outerEnd := p.pos + n
	kind, inner, ok := p.header("content kind")
	if !ok {
		return r, 0, 0, p.error()
	}
	if inner != n-tlvHeaderLen {
		return r, 0, 0, p.malformed("content kind", p.last, fmt.Sprintf("length %d, want %d to fill the content field", inner, n-tlvHeaderLen))
	}
	r.Type = ContentType(uint16(t)<<8 | uint16(kind))
	if !r.Type.Known() {
		return r, 0, 0, p.malformed("content kind", p.last, fmt.Sprintf("unknown kind %#02x of content type %#02x", kind, t))
	}
	r.Content = b[p.pos:outerEnd:outerEnd]
	if r.Type == Batch {
		// A batch is well formed or not a record: readers number events
		// by it, and the replay's sequence rule counts its events.
		if _, err := batchLen(r.Content); err != nil {
			var be *BatchError
			at, detail := p.pos, err.Error()
			if errors.As(err, &be) {
				at += be.Offset
				detail = be.Detail
				if be.Event >= 0 {
					detail = fmt.Sprintf("event %d: %s", be.Event, be.Detail)
				}
			}
			return r, 0, 0, p.malformed("batch", at, detail)
		}
	}
	return r, nd, outerEnd - off, nil
}

// parseDigests decodes the nested digest entries of a digests field whose
// value v starts at offset base into tmp, and returns how many there are.
// Banks must ascend, so there are at most numBanks.
func parseDigests(p *parser, v []byte, base int, tmp *[numBanks]Digest) (int, error) {
	n := 0
	prev := -1
	q := parser{b: v, pos: 0}
	for q.pos < len(v) {
		start := q.pos
		t, l, ok := q.header("digest")
		if !ok {
			return 0, p.malformed("digests", base+start, "entry header runs past the digests field")
		}
		h, known := HashForAlg(uint16(t))
		if !known {
			return 0, p.malformed("digests", base+start, fmt.Sprintf("unknown algorithm %#04x", t))
		}
		i, _ := bankIndex(h)
		switch {
		case i == prev:
			return 0, p.malformed(digestField(h), base+start, "duplicate bank")
		case i < prev:
			return 0, p.malformed(digestField(h), base+start, "banks not in ascending algorithm order")
		}
		prev = i
		if l != h.Size() {
			return 0, p.malformed(digestField(h), base+start, fmt.Sprintf("length %d, want %d", l, h.Size()))
		}
		if len(v)-q.pos < l {
			return 0, p.malformed(digestField(h), base+start, "value runs past the digests field")
		}
		tmp[n] = Digest{Hash: h, Value: v[q.pos : q.pos+l : q.pos+l]}
		n++
		q.pos += l
	}
	if n == 0 {
		return 0, p.malformed("digests", base, "no digests")
	}
	return n, nil
}

func digestField(h crypto.Hash) string { return "digest " + BankName(h) }

// parser walks TLVs in b and fills err when it stops.
type parser struct {
	b    []byte
	pos  int
	last int // offset of the last header read
	err  DecodeError
}

// header reads one TLV header.
func (p *parser) header(field string) (t byte, n int, ok bool) {
	p.last = p.pos
	if len(p.b)-p.pos < tlvHeaderLen {
		p.fail(field, p.pos, ErrTruncated, fmt.Sprintf("%d bytes left, a field header needs %d", len(p.b)-p.pos, tlvHeaderLen))
		return 0, 0, false
	}
	t = p.b[p.pos]
	l := binary.BigEndian.Uint32(p.b[p.pos+1:])
	p.pos += tlvHeaderLen
	if uint64(l) > uint64(maxInt) {
		p.fail(field, p.last, ErrMalformed, fmt.Sprintf("length %d does not fit", l))
		return 0, 0, false
	}
	return t, int(l), true
}

// need checks that n value bytes follow.
func (p *parser) need(field string, n int) bool {
	if len(p.b)-p.pos < n {
		p.fail(field, p.last, ErrTruncated, fmt.Sprintf("length %d, only %d bytes left", n, len(p.b)-p.pos))
		return false
	}
	return true
}

// field reads one TLV that must have type want and returns its value.
func (p *parser) field(field string, want byte) ([]byte, bool) {
	t, n, ok := p.header(field)
	if !ok {
		return nil, false
	}
	if t != want {
		p.fail(field, p.last, ErrMalformed, fmt.Sprintf("type %d, want %d", t, want))
		return nil, false
	}
	if !p.need(field, n) {
		return nil, false
	}
	v := p.b[p.pos : p.pos+n : p.pos+n]
	p.pos += n
	return v, true
}

func (p *parser) fail(field string, off int, err error, detail string) {
	p.err.Field, p.err.Offset, p.err.Err, p.err.Detail = field, int64(off), err, detail
}

func (p *parser) malformed(field string, off int, detail string) *DecodeError {
	p.fail(field, off, ErrMalformed, detail)
	return p.error()
}

// error returns a copy of the recorded failure, so that the parser itself
// stays on the stack.
func (p *parser) error() *DecodeError {
	e := p.err
	return &e
}

const maxInt = int(^uint(0) >> 1)
