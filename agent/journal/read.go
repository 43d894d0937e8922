package journal

import (
	"fmt"
	"io"
	"sort"

	"github.com/bpfattest/bpfattest/cel"
)

// The journal keeps no record in memory: only the replay of the committed
// records and where each starts in the log file. Records, Snapshot and
// SnapshotSlice read them back from the file, which holds exactly the
// committed records in [0, size): Append writes at size and cuts what it
// wrote on failure, reconcile cuts or sets aside anything after the valid
// records. So memory stays flat as the log grows (8 bytes per 64 records,
// recordIndex), and the page cache serves the reads.

// Slice is a run of the log's records as encoded in the file.
type Slice struct {
	// From is the number (recnum) of the first record.
	From uint64
	// Next is the number the record after the slice gets: the log's
	// number of events when the slice was taken.
	Next uint64
	// Log holds the records from From on, canonical CEL TLV.
	Log []byte
	// Offsets[i] is where the i-th record of the slice starts in Log; the
	// last element is len(Log). A record's number is its first event's, so
	// with batch records Offsets[i] is not where record From+i starts:
	// Locate finds a record by number.
	Offsets []int
}

// Len returns the number of records in s.
func (s *Slice) Len() int { return max(len(s.Offsets)-1, 0) }

// Locate returns where the record holding event number rn starts in
// s.Log and that record's number (len(s.Log) and s.Next for rn = s.Next).
// ok is false when rn is before s.From or after s.Next.
func (s *Slice) Locate(rn uint64) (off int, recnum uint64, ok bool) {
	if rn < s.From || rn > s.Next {
		return 0, 0, false
	}
	if rn == s.Next {
		return len(s.Log), s.Next, true
	}
	n := s.Len()
	// The first record numbered past rn; the one before holds it.
	i := sort.Search(n, func(i int) bool {
		v, err := recordNum(s.Log[s.Offsets[i]:])
		return err != nil || v > rn
	}) - 1
	if i < 0 {
		return 0, 0, false
	}
	v, err := recordNum(s.Log[s.Offsets[i]:])
	if err != nil {
		return 0, 0, false
	}
	return s.Offsets[i], v, true
}

// slice reads the records from the one holding event from to the end
// from the file. j.mu must be held.
func (j *Journal) slice(from uint64) (Slice, error) {
	next := j.nextNum()
	s := Slice{From: from, Next: next}
	if from >= next {
		s.From = next
		s.Offsets = []int{0}
		return s, nil
	}
	i, start, err := j.idx.locate(j.f, from, j.size)
	if err != nil {
		return Slice{}, err
	}
	s.Log = make([]byte, j.size-start)
	if _, err := j.f.ReadAt(s.Log, start); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Slice{}, fmt.Errorf("read back records %d to %d: %w", i, j.idx.n-1, err)
	}
	if s.Offsets, err = offsets(s.Log, j.idx.n-i); err != nil {
		return Slice{}, fmt.Errorf("read back records %d to %d: %w", i, j.idx.n-1, err)
	}
	if s.From, err = recordNum(s.Log); err != nil {
		return Slice{}, fmt.Errorf("read back record %d: %w", i, err)
	}
	return s, nil
}

// readFailed marks the journal broken after its own file could not be read
// back or decoded (a disk error, or someone else writing the file): what it
// serves would no longer be what it extended. j.mu must be held.
func (j *Journal) readFailed(err error) error {
	if j.broken == nil {
		j.broken = fmt.Errorf("log file changed or unreadable: %w", err)
		j.set.log.Error("journal: cannot read back the log; refusing to continue until reopened", "err", err)
	}
	return fmt.Errorf("%w: %w", ErrBroken, j.broken)
}

// WalkChunk is how much of the log file Walk reads at a time (more for a
// record longer than that): what one reader of the log holds, besides the
// records its callback keeps.
const WalkChunk = 64 << 10

// Walk calls fn with each record of the current boot's log from the one
// holding event number from on (a batch record holding from is visited
// whole), in order, reading the file WalkChunk at a time: memory
// stays in proportion to a chunk however long the log, unless fn keeps the
// records (it may; they are not reused). It stops at fn's first error and
// returns it. Records appended while Walk runs may or may not be visited.
// fn may call the journal's methods.
func (j *Journal) Walk(from uint64, fn func(rec *cel.Record) error) error {
	j.mu.Lock()
	if err := j.readable(); err != nil {
		j.mu.Unlock()
		return fmt.Errorf("journal/walk: %w", err)
	}
	if from >= j.nextNum() {
		j.mu.Unlock()
		return nil
	}
	start, err := j.offset(from)
	end, f := j.size, j.f
	j.mu.Unlock()
	if err != nil {
		return fmt.Errorf("journal/walk: %w", err)
	}
	// The committed bytes never change: read them without the lock.
	rd := chunkReader{f: io.NewSectionReader(f, start, end-start), chunk: WalkChunk, fresh: true}
	for {
		recs, err := cel.Decode(rd.buf)
		if err != nil && rd.eof {
			return fmt.Errorf("journal/walk: %w", shift(err, start+rd.base, -1))
		}
		used := 0
		for i := range recs {
			if err := fn(&recs[i]); err != nil {
				return err
			}
			used += recs[i].EncodedLen()
		}
		if rd.eof && used == len(rd.buf) {
			return nil
		}
		if err := rd.advance(used); err != nil {
			return fmt.Errorf("journal/walk: %w", err)
		}
	}
}

// WalkEvents calls fn with each event of the current boot's log numbered
// from or later, in order: a plain record's event, then each event of a
// batch record (cel.Record.EachEvent), as Walk reads them. Readers that
// interpret the log walk events, never records. ev is valid only during
// the call; its content aliases a buffer fn must copy from to keep. It
// stops at fn's first error and returns it.
func (j *Journal) WalkEvents(from uint64, fn func(ev *cel.Event) error) error {
	return j.Walk(from, func(rec *cel.Record) error {
		return rec.EachEvent(func(ev *cel.Event) error {
			if ev.RecNum < from {
				return nil
			}
			return fn(ev)
		})
	})
}
