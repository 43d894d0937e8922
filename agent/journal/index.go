package journal

import (
	"encoding/binary"
	"fmt"
	"io"
	"sort"
)

// indexStride is how many records one offset of a recordIndex covers.
const indexStride = 64

// recordIndex says where the records of a log file start while keeping
// only every indexStride-th offset: a log of 100,000 records costs 1,563
// offsets (12.5 KB) instead of one per record (800 KB). The start of any
// other record is found by reading its block of the file (at most
// indexStride records, in the page cache) and stepping over the records
// before it.
//
// Records are indexed by position (the k-th record of the file); a record's
// number (recnum) is its first event's number, which runs ahead of its
// position once a batch record carries several events (cel/batch.go).
// Readers name events by number: locate finds the record holding one.
type recordIndex struct {
	n     int      // records indexed
	marks []int64  // marks[k] is where record k*indexStride starts
	nums  []uint64 // nums[k] is record k*indexStride's recnum
}

// add indexes the next record, which starts at off and has number rn.
func (x *recordIndex) add(off int64, rn uint64) {
	if x.n%indexStride == 0 {
		x.marks = append(x.marks, off)
		x.nums = append(x.nums, rn)
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
	x.nums = x.nums[:len(x.marks)]
}

// locate returns the position of the record holding event number rn and
// where it starts in r, whose indexed records end at end: the last record
// whose number is at most rn. The caller checks that rn is below the next
// record number.
func (x *recordIndex) locate(r io.ReaderAt, rn uint64, end int64) (int, int64, error) {
	if x.n == 0 {
		return 0, 0, fmt.Errorf("record holding event %d: no records", rn)
	}
	k := sort.Search(len(x.nums), func(k int) bool { return x.nums[k] > rn }) - 1
	if k < 0 {
		return 0, 0, fmt.Errorf("record holding event %d: the first record is %d", rn, x.nums[0])
	}
	start, first := x.marks[k], k*indexStride
	last := min(x.n, first+indexStride) - 1 // the block's last record
	if x.nums[k] == rn || first == last {
		return first, start, nil
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
		return 0, 0, fmt.Errorf("read back records %d to %d: %w", first, last, err)
	}
	pos := 0
	for i := first; i < last; i++ {
		n, err := recordLen(b[pos:])
		if err != nil {
			return 0, 0, fmt.Errorf("record %d at %d: %w", i, start+int64(pos), err)
		}
		next, err := recordNum(b[pos+n:])
		if err != nil {
			return 0, 0, fmt.Errorf("record %d at %d: %w", i+1, start+int64(pos+n), err)
		}
		if next > rn {
			return i, start + int64(pos), nil
		}
		pos += n
	}
	return last, start + int64(pos), nil
}

// recordNum returns the recnum of the CEL TLV record at the start of b,
// from its framing (docs/event-log.md §2).
func recordNum(b []byte) (uint64, error) {
	if len(b) < 13 || b[0] != 0x00 || binary.BigEndian.Uint32(b[1:]) != 8 {
		return 0, fmt.Errorf("not a record's framing")
	}
	return binary.BigEndian.Uint64(b[5:]), nil
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
