package journal

import (
	"bytes"
	"context"
	"crypto"
	"fmt"
	"slices"

	"github.com/bpfattest/bpfattest/cel"
)

// Append records one event and returns it with the number it got. It
// returns only when the event is durable and extended: the record carrying
// it was written at the end of the log, fsynced, and the PCR extended with
// its digests. Any error means the caller must not act on the event (fail
// closed); after an error that leaves the PCR or the file in an unknown
// state, further appends fail with ErrBroken until the journal is
// reopened. content is copied.
//
// Group commit (docs/crash-safety.md §7): appends that arrive while a
// commit is under way wait for it and are then written together, as one
// batch record (cel.Batch) carrying their events in arrival order: one
// write, one fsync and one extend for all of them. A lone append is written
// as a plain record. A batch holds at most cel.MaxBatchEvents events and
// MaxBatchBytes of content (an event larger than that is written alone);
// the appends beyond wait for the next commit. If ctx ends while the event
// still waits for a commit, Append withdraws it and returns ctx's error;
// once a commit has taken it, Append waits for that commit (one write,
// fsync and extend) and reports its outcome.
func (j *Journal) Append(ctx context.Context, t cel.ContentType, content []byte) (cel.Event, error) {
	ev, err := j.append(ctx, t, content)
	if err != nil {
		return ev, fmt.Errorf("journal/append: %w", err)
	}
	return ev, nil
}

// MaxBatchBytes bounds the content of one batch record that group commit
// writes (the sum of its events' contents and their 10-byte headers): what
// one commit writes, fsyncs and reads back stays in proportion to it.
const MaxBatchBytes = 1 << 20

// waiter is one Append waiting for its commit.
type waiter struct {
	t       cel.ContentType
	content []byte
	// ready is closed when the commit that took the waiter is done, or
	// when the waiter is made the leader of the next commit (lead).
	ready chan struct{}
	// Guarded by Journal.qmu until ready is closed.
	lead  bool // commit the next batch: the previous leader handed over
	taken bool // a leader took it into a batch: it can no longer withdraw
	// Set by the leader before ready is closed.
	ev  cel.Event
	end uint64 // the number of the record after the one that carried ev
	err error
}

func (j *Journal) append(ctx context.Context, t cel.ContentType, content []byte) (cel.Event, error) {
	if err := ctx.Err(); err != nil {
		return cel.Event{}, err
	}
	p, err := j.enqueue(t, content)
	if err != nil {
		return cel.Event{}, err
	}
	return p.wait(ctx)
}

// Pending is an event queued for a commit by Enqueue, not yet known to be
// durable and extended.
type Pending struct {
	j *Journal
	w *waiter
}

// Enqueue queues an event for the next commit without waiting for it: the
// event's place among concurrent appends is decided now, in the order
// Enqueue calls return. The caller must then call Wait, once and without
// delay (the first event queued while no commit is under way leads the
// next commit in its Wait: the appends behind it wait for it), and must not
// act on the event before Wait returned without error. content is copied.
// Append is Enqueue followed by Wait.
func (j *Journal) Enqueue(t cel.ContentType, content []byte) (*Pending, error) {
	p, err := j.enqueue(t, content)
	if err != nil {
		return nil, fmt.Errorf("journal/append: %w", err)
	}
	return p, nil
}

// Wait waits for p's commit and returns the event with the number it got,
// as Append does: if ctx ends while p still waits in the queue, p is
// withdrawn (never written) and Wait returns ctx's error.
func (p *Pending) Wait(ctx context.Context) (cel.Event, error) {
	ev, err := p.wait(ctx)
	if err != nil {
		return ev, fmt.Errorf("journal/append: %w", err)
	}
	return ev, nil
}

// End returns, after Wait returned without error, the number of the record
// that follows the one carrying p's event: the log's length in events when
// that record was committed, at a record boundary (a batch record holds
// several events).
func (p *Pending) End() uint64 { return p.w.end }

func (j *Journal) enqueue(t cel.ContentType, content []byte) (*Pending, error) {
	if !t.Known() || t == cel.Batch || t == cel.BootHeader {
		return nil, fmt.Errorf("append: content type %v is not an event to append", t)
	}
	w := &waiter{t: t, content: bytes.Clone(content), ready: make(chan struct{})}
	j.qmu.Lock()
	j.queue = append(j.queue, w)
	if !j.committing {
		// No commit under way: w leads the next one.
		j.committing = true
		w.lead = true
		close(w.ready)
	}
	j.qmu.Unlock()
	return &Pending{j: j, w: w}, nil
}

func (p *Pending) wait(ctx context.Context) (cel.Event, error) {
	j, w := p.j, p.w
	select {
	case <-w.ready:
	case <-ctx.Done():
		j.qmu.Lock()
		if !w.taken && !w.lead {
			// Still queued: no commit will carry it.
			j.queue = slices.DeleteFunc(j.queue, func(x *waiter) bool { return x == w })
			j.qmu.Unlock()
			return cel.Event{}, ctx.Err()
		}
		j.qmu.Unlock()
		<-w.ready
	}
	// w.lead was set before ready was closed.
	if w.lead {
		j.leadCommit(w)
	}
	return w.ev, w.err
}

// leadCommit commits the appends waiting now, w first, as one record, then
// hands the lead to the first append that arrived meanwhile (or ends the
// run of commits), and releases the appends it committed.
func (j *Journal) leadCommit(w *waiter) {
	j.qmu.Lock()
	n, size := 0, 0
	for n < len(j.queue) && n < cel.MaxBatchEvents {
		size += 10 + len(j.queue[n].content)
		if n > 0 && size > MaxBatchBytes {
			break
		}
		j.queue[n].taken = true
		n++
	}
	batch := slices.Clone(j.queue[:n])
	j.queue = slices.Delete(j.queue, 0, n)
	j.qmu.Unlock()
	if batch[0] != w {
		// The leader is always the first of the queue (append).
		panic("journal: group commit leader is not first in line")
	}

	j.mu.Lock()
	evs, err := j.commitEvents(batch)
	j.mu.Unlock()
	for i, x := range batch {
		if err != nil {
			x.err = err
		} else {
			x.ev, x.end = evs[i], evs[0].RecNum+uint64(len(evs))
		}
	}

	j.qmu.Lock()
	if len(j.queue) > 0 {
		next := j.queue[0]
		next.lead = true
		close(next.ready)
	} else {
		j.committing = false
	}
	j.qmu.Unlock()
	for _, x := range batch[1:] {
		close(x.ready)
	}
}

// commitEvents writes the waiters' events as one record (a plain record
// for one, a batch record for several), fsyncs the log, extends the PCR
// and adds the record to the journal's state: the write-ahead protocol of
// docs/crash-safety.md §1, with the record possibly a batch. It returns the
// events with their numbers. j.mu must be held.
func (j *Journal) commitEvents(ws []*waiter) ([]cel.Event, error) {
	if err := j.usable(); err != nil {
		return nil, err
	}
	first := j.nextNum()
	evs := make([]cel.Event, len(ws))
	for i, w := range ws {
		evs[i] = cel.Event{RecNum: first + uint64(i), Type: w.t, Content: w.content}
	}
	t, content := evs[0].Type, evs[0].Content
	if len(evs) > 1 {
		var err error
		if content, err = cel.EncodeBatch(evs); err != nil {
			return nil, err
		}
		t = cel.Batch
	}
	rec, err := cel.NewRecord(first, uint8(j.set.pcr), j.banks, t, content)
	if err != nil {
		return nil, err
	}
	if err := j.appendRecord(rec); err != nil {
		return nil, err
	}
	return evs, nil
}

// appendRecord writes rec at the end of the log, fsyncs, extends and
// commits it. j.mu must be held.
func (j *Journal) appendRecord(rec cel.Record) error {
	b, err := rec.MarshalBinary()
	if err != nil {
		return err
	}
	if err := j.write(b); err != nil {
		// Nothing was extended: cut what was written and carry on, or
		// refuse further appends if even that fails.
		if terr := j.f.Truncate(j.size); terr != nil {
			j.broken = fmt.Errorf("undo failed write of record %d: %w", rec.RecNum, terr)
		}
		return fmt.Errorf("write record %d: %w", rec.RecNum, err)
	}
	j.step(stepWritten)
	if err := j.f.Sync(); err != nil {
		// After a failed fsync the page cache no longer says what is on
		// disk; only a reopen (reconcile) can.
		j.broken = fmt.Errorf("fsync record %d: %w", rec.RecNum, err)
		return j.broken
	}
	j.step(stepSynced)
	if err := j.extend(&rec); err != nil {
		// The TPM may or may not have extended; reconcile decides.
		j.broken = err
		j.set.log.Error("journal: extend failed; refusing appends until reopened", "err", err)
		return err
	}
	j.step(stepExtended)
	return j.commit(rec, len(b))
}

// write writes b at the end of the committed records. With a test hook set
// it writes in two halves, so a test can stop the process in between.
func (j *Journal) write(b []byte) error {
	if j.set.hook == nil {
		_, err := j.f.WriteAt(b, j.size)
		return err
	}
	half := len(b) / 2
	if _, err := j.f.WriteAt(b[:half], j.size); err != nil {
		return err
	}
	j.step(stepWritePartial)
	_, err := j.f.WriteAt(b[half:], j.size+int64(half))
	return err
}

// usable reports why the journal cannot take appends, if it cannot.
func (j *Journal) usable() error {
	if err := j.readable(); err != nil {
		return err
	}
	if j.mismatch != nil {
		return j.mismatch
	}
	return nil
}

// readable reports why the journal cannot serve its log, if it cannot: a
// log that no longer replays to the PCR is still served as it is.
func (j *Journal) readable() error {
	if j.closed {
		return ErrClosed
	}
	if j.broken != nil {
		return fmt.Errorf("%w: %w", ErrBroken, j.broken)
	}
	return nil
}

// Snapshot calls fn with the records of the current boot and the PCR values
// read from the TPM, holding the journal's lock so that no append
// interleaves: a quote taken inside fn covers exactly these records. It
// first checks that the records replay to the PCR; if not (another writer
// extended the PCR), it returns a *MismatchError and refuses further appends.
// fn must not call the journal's methods (the lock is held). The records
// are read back from the log file and decoded; SnapshotSlice hands over
// the encoded records without decoding them.
func (j *Journal) Snapshot(fn func(recs []cel.Record, pcr map[crypto.Hash][]byte) error) error {
	return j.SnapshotSlice(0, func(s Slice, pcr map[crypto.Hash][]byte) error {
		recs, err := cel.Decode(s.Log)
		if err != nil {
			return j.readFailed(err)
		}
		return fn(recs, pcr)
	})
}

// SnapshotSlice is Snapshot for serving the log: fn gets the records from
// the one holding event number from (a batch record holding from is
// included whole: s.From may be below from) to the end as they are encoded
// in the log file
// (canonical CEL TLV), with each record's offset in it, and the PCR values
// read from the TPM. A from past the end gives an empty slice. fn must not
// call the journal's methods (the lock is held); s is fn's to keep.
//
// When the records do not replay to the PCR (another writer extended it),
// the journal refuses appends from then on (Mismatch says why), but fn is
// still called, with the log as it is and the TPM's values: the evidence
// then shows a verifier the mismatch, which is the truth.
func (j *Journal) SnapshotSlice(from uint64, fn func(s Slice, pcr map[crypto.Hash][]byte) error) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.readable(); err != nil {
		return fmt.Errorf("journal/snapshot: %w", err)
	}
	pcr, err := j.readPCR()
	if err != nil {
		return fmt.Errorf("journal/snapshot: %w", err)
	}
	if j.mismatch == nil && !j.rp.Equal(pcr) {
		j.mismatch = &MismatchError{Path: j.path, Records: j.idx.n, ValidEnd: j.size, PCR: pcr, Replay: j.rp.Values()}
		j.set.log.Error("journal: the log no longer replays to the pcr; refusing appends", "err", j.mismatch)
	}
	s, err := j.slice(from)
	if err != nil {
		return fmt.Errorf("journal/snapshot: %w", j.readFailed(err))
	}
	return fn(s, pcr)
}

// Records returns the current boot's records from the one holding event
// number from on (a batch record holding from is returned whole), read back
// from the log file (without holding up appends: committed bytes never
// change). If the file cannot be read back, it returns none and the journal
// refuses further appends and snapshots (ErrBroken).
func (j *Journal) Records(from uint64) []cel.Record {
	j.mu.Lock()
	if j.closed || from >= j.nextNum() {
		j.mu.Unlock()
		return nil
	}
	start, err := j.offset(from)
	end, f := j.size, j.f
	j.mu.Unlock()
	if err != nil {
		return nil
	}
	b := make([]byte, end-start)
	_, err = f.ReadAt(b, start)
	var recs []cel.Record
	if err == nil {
		recs, err = cel.Decode(b)
	}
	if err != nil {
		j.mu.Lock()
		defer j.mu.Unlock()
		if !j.closed { // else the file was closed under the read
			j.readFailed(err)
		}
		return nil
	}
	return recs
}

// SizeFrom returns how many bytes the current boot's records from the one
// holding event number from on take in the log (0 from the end on, and 0
// if the log cannot be read back, which marks the journal broken).
func (j *Journal) SizeFrom(from uint64) int64 {
	if from >= j.count.Load() {
		return 0 // the end, or past it: without waiting for a snapshot
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed || from >= j.nextNum() {
		return 0
	}
	start, err := j.offset(from)
	if err != nil {
		return 0
	}
	return j.size - start
}

// Len returns the number of events in the current boot's log: the number
// the next record gets, without waiting for an append or a snapshot in
// progress. It equals the number of records until a batch record carries
// several events (RecordCount).
func (j *Journal) Len() uint64 { return j.count.Load() }

// RecordCount returns the number of records in the current boot's log, a
// batch record counting once.
func (j *Journal) RecordCount() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return uint64(j.idx.n)
}

// Mismatch returns the *MismatchError once the log is known not to replay
// to the PCR (someone else extended it), nil before. The journal then
// refuses appends but still serves its log.
func (j *Journal) Mismatch() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.mismatch != nil {
		return j.mismatch
	}
	return nil
}

// Err returns nil while the journal accepts appends, and an error wrapping
// ErrBroken once a failed write, fsync or extend has left it refusing them
// (until it is closed and reopened, which reconciles it).
func (j *Journal) Err() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.broken != nil {
		return fmt.Errorf("%w: %w", ErrBroken, j.broken)
	}
	return nil
}
