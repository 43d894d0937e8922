package journal

import (
	"encoding/binary"
	"fmt"
	"io"
)

// indexStride is how many records one offset of a recordIndex covers.
const indexStride = 64

// recordIndex says where the records of a log file start while keeping
// only every indexStride-th offset: a log of 100,000 records costs 1,563
// offsets (12.5 KB) instead of one per record (800 KB). The start of any
// other record is found by reading its block of the file (at most
// indexStride records, in the page cache) and stepping over the records
// before it.
type recordIndex struct {
	n     int     // records indexed
	marks []int64 // marks[k] is where record k*indexStride starts
}

// add indexes the next record, which starts at off.
func (x *recordIndex) add(off int64) {
	if x.n%indexStride == 0 {
		x.marks = append(x.marks, off)
	}
	x.n++
}

// truncate keeps the first n records.
func (x *recordIndex) truncate(n int) {
	if n >= x.n {
		return
	}
	x.n = n
	x.marks = x.marks[:(n+indexStride-1)/indexStride]
}

// offset returns where record i (0 ≤ i < x.n) starts in r, whose indexed
// records end at end.
func (x *recordIndex) offset(r io.ReaderAt, i int, end int64) (int64, error) {
	if i < 0 || i >= x.n {
		return 0, fmt.Errorf("record %d of %d", i, x.n)
	}
	k := i / indexStride
	start, skip := x.marks[k], i%indexStride
	if skip == 0 {
		return start, nil
	}
	blockEnd := end
	if k+1 < len(x.marks) {
		blockEnd = x.marks[k+1]
	}
	b := make([]byte, blockEnd-start)
	if _, err := r.ReadAt(b, start); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, fmt.Errorf("read back records %d to %d: %w", k*indexStride, i, err)
	}
	pos := 0
	for j := range skip {
		n, err := recordLen(b[pos:])
		if err != nil {
			return 0, fmt.Errorf("record %d at %d: %w", k*indexStride+j, start+int64(pos), err)
		}
		pos += n
	}
	return start + int64(pos), nil
}

// offsets returns where each record of log starts, and len(log) last: log
// must hold exactly n whole records (read back from the file, they were
// decoded strictly when they were committed; anything else means the file
// changed).
func offsets(log []byte, n int) ([]int, error) {
	out := make([]int, 0, n+1)
	pos := 0
	for pos < len(log) && len(out) < n {
		out = append(out, pos)
		l, err := recordLen(log[pos:])
		if err != nil {
			return nil, fmt.Errorf("record at %d: %w", pos, err)
		}
		pos += l
	}
	if len(out) != n || pos != len(log) {
		return nil, fmt.Errorf("%d bytes hold %d records ending at %d, want %d", len(log), len(out), pos, n)
	}
	return append(out, pos), nil
}

// recordLen returns the length of the CEL TLV record at the start of b
// from its framing alone (docs/event-log.md §2): recnum (8 bytes), pcr (1
// byte), then the digests' and the content's TLV headers give the rest. It
// checks the framing, not the values: it steps over records that were
// decoded strictly when they were written.
func recordLen(b []byte) (int, error) {
	const fixed = 5 + 8 + 5 + 1 // recnum and pcr TLVs
	if len(b) < fixed+5 {
		return 0, fmt.Errorf("%d bytes, not a record", len(b))
	}
	if b[0] != 0x00 || binary.BigEndian.Uint32(b[1:]) != 8 || b[13] != 0x01 || binary.BigEndian.Uint32(b[14:]) != 1 || b[19] != 0x03 {
		return 0, fmt.Errorf("not a record's framing")
	}
	n := uint64(fixed+5) + uint64(binary.BigEndian.Uint32(b[20:]))
	if uint64(len(b)) < n+5 {
		return 0, fmt.Errorf("%d bytes, record needs more than %d", len(b), n+5)
	}
	if b[n] != 0xB0 && b[n] != 0xB1 {
		return 0, fmt.Errorf("not a record's framing")
	}
	n += 5 + uint64(binary.BigEndian.Uint32(b[n+1:]))
	if uint64(len(b)) < n {
		return 0, fmt.Errorf("%d bytes, record needs %d", len(b), n)
	}
	return int(n), nil
}
