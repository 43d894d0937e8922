package journal

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/bpfattest/bpfattest/cel"
)

// streamChunk is how much of a log file reconcile reads at a time.
const streamChunk = 1 << 20

// streamed is a log file taken apart for reconcile, as scan does, but read
// chunk by chunk: it keeps the index of the valid records, the replays
// with and without the last one, that last record, and the bytes after the
// valid records; never every record at once. So opening a long log costs
// memory in proportion to a chunk, not to the log.
type streamed struct {
	boot   cel.BootInfo
	valid  int
	idx    recordIndex   // where the valid records start
	rp     *cel.Replayer // over all valid records
	rpPrev *cel.Replayer // over all valid records but the last
	// last is the last valid record and lastBytes its encoding.
	last      cel.Record
	lastBytes []byte
	// validEnd is the byte offset where the valid records end.
	validEnd int64
	// tailErr says why the bytes after validEnd are not a valid record;
	// nil when there are none.
	tailErr error
	tail    []byte
}

// scanFile reads the log at path with scan's rules: an error means the log
// has no usable boot header (ErrCorrupt); damage after it is reported in
// tailErr.
func scanFile(path string) (*streamed, error) { return scanFileChunks(path, streamChunk) }

// scanFileChunks is scanFile reading chunk bytes at a time.
func scanFileChunks(path string, chunk int) (_ *streamed, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, f.Close()) }()
	sc := &streamed{}
	rd := chunkReader{f: f, chunk: chunk}
	var prev *cel.Record // the valid record before the one being added
	for {
		recs, derr := cel.Decode(rd.buf)
		if derr != nil && !rd.eof {
			// The error may only be the chunk's end: decide with more.
			derr = nil
		}
		used := 0
		for i := range recs {
			r := &recs[i]
			if sc.valid == 0 {
				if err := sc.header(r); err != nil {
					return nil, err
				}
			} else {
				if err := sc.rp.Add(r); err != nil {
					sc.tailErr = err
					return sc, sc.finish(f, prev)
				}
				if err := sc.rpPrev.Add(prev); err != nil {
					return nil, fmt.Errorf("scan: %w", err) // added to rp already
				}
			}
			n := r.EncodedLen()
			sc.idx.add(sc.validEnd, r.RecNum)
			sc.valid++
			sc.validEnd += int64(n)
			used += n
			prev = r
		}
		if derr != nil || (rd.eof && used == len(rd.buf)) {
			if sc.valid == 0 {
				return nil, fmt.Errorf("%w: no boot header: %v", ErrCorrupt, shift(derr, rd.base, 0))
			}
			sc.tailErr = shift(derr, rd.base, sc.valid)
			return sc, sc.finish(f, prev)
		}
		if prev != nil {
			// prev aliases the chunk, which the next read reuses.
			c := cloneRecord(prev)
			prev = &c
		}
		if err := rd.advance(used); err != nil {
			return nil, fmt.Errorf("scan: %w", err)
		}
	}
}

// header checks the boot header and starts the replays.
func (sc *streamed) header(h *cel.Record) error {
	var err error
	if sc.boot, sc.rp, err = openBoot(h); err != nil {
		return err
	}
	if sc.rpPrev, err = cel.NewReplayer(sc.boot.Start); err != nil {
		return fmt.Errorf("%w: boot header: %w", ErrCorrupt, err)
	}
	return nil
}

// finish keeps the last valid record (a copy of last) and its bytes, and
// reads the bytes after the valid records.
func (sc *streamed) finish(f *os.File, last *cel.Record) error {
	sc.last = cloneRecord(last)
	n := last.EncodedLen()
	sc.lastBytes = make([]byte, n)
	if _, err := f.ReadAt(sc.lastBytes, sc.validEnd-int64(n)); err != nil {
		return fmt.Errorf("scan: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("scan: %w", err)
	}
	sc.tail = make([]byte, fi.Size()-sc.validEnd)
	if _, err := f.ReadAt(sc.tail, sc.validEnd); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("scan: %w", err)
	}
	return nil
}

// shift makes a *cel.DecodeError's offsets relative to the file rather
// than to the chunk that starts at base, and (index >= 0) its index the
// record's in the file.
func shift(err error, base int64, index int) error {
	var de *cel.DecodeError
	if errors.As(err, &de) {
		de.RecordOffset += base
		de.Offset += base
		if index >= 0 {
			de.Index = index
		}
	}
	return err
}

// cloneRecord copies r out of the buffer it aliases.
func cloneRecord(r *cel.Record) cel.Record {
	c := *r
	c.Content = append([]byte(nil), r.Content...)
	c.Digests = make([]cel.Digest, len(r.Digests))
	for i, d := range r.Digests {
		c.Digests[i] = cel.Digest{Hash: d.Hash, Value: append([]byte(nil), d.Value...)}
	}
	return c
}

// chunkReader holds the unread part of a file in buf, read a chunk at a
// time; base is the file offset of buf[0].
type chunkReader struct {
	f     io.Reader
	chunk int
	// fresh makes every read use a new buffer, so records decoded from an
	// earlier one stay valid.
	fresh bool
	buf   []byte
	base  int64
	eof   bool
	mem   []byte // buf's backing array
}

// advance drops n bytes from buf and reads more: at least a chunk, and
// twice as much as is left if nothing was dropped (a record longer than
// what is buffered).
func (c *chunkReader) advance(n int) error {
	left := len(c.buf) - n
	want := left + c.chunk
	if n == 0 && left > 0 {
		want = 2 * left
	}
	if cap(c.mem) < want || c.fresh {
		c.mem = make([]byte, want)
	}
	c.mem = c.mem[:cap(c.mem)]
	copy(c.mem, c.buf[n:])
	c.base += int64(n)
	got, err := io.ReadFull(c.f, c.mem[left:want])
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		c.eof = true
	case err != nil:
		return err
	}
	c.buf = c.mem[:left+got]
	return nil
}
