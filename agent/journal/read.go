package journal

import (
	"fmt"
	"io"

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
	// From is the number of the first record.
	From uint64
	// Log holds records From to From+len(Offsets)-2, canonical CEL TLV.
	Log []byte
	// Offsets[i] is where record From+i starts in Log; the last element is
	// len(Log).
	Offsets []int
}

// Len returns the number of records in s.
func (s *Slice) Len() int { return max(len(s.Offsets)-1, 0) }

// slice reads records [from, end) from the file. j.mu must be held.
func (j *Journal) slice(from uint64) (Slice, error) {
	s := Slice{From: from}
	n := uint64(j.idx.n)
	if from >= n {
		s.Offsets = []int{0}
		return s, nil
	}
	start, err := j.idx.offset(j.f, int(from), j.size)
	if err != nil {
		return Slice{}, err
	}
	s.Log = make([]byte, j.size-start)
	if _, err := j.f.ReadAt(s.Log, start); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Slice{}, fmt.Errorf("read back records %d to %d: %w", from, n-1, err)
	}
	if s.Offsets, err = offsets(s.Log, int(n-from)); err != nil {
		return Slice{}, fmt.Errorf("read back records %d to %d: %w", from, n-1, err)
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

// Walk calls fn with each record of the current boot's log from record
// number from on, in order, reading the file WalkChunk at a time: memory
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
	if from >= uint64(j.idx.n) {
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
