package journal

import (
	"crypto"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
)

// TestBatchReaders: a log with batch records (written as group commit
// writes them) is read event by event: numbering runs on across batches,
// every reader handed an event inside a batch starts at the batch record,
// the log replays to the PCR, and a reopened journal reconciles it clean
// and numbers on.
func TestBatchReaders(t *testing.T) {
	dev := tpmtest.Open(t, "sim")
	dir := t.TempDir()
	j := mustOpen(t, dir, dev, options(dev))
	defer func() { j.Close() }()
	commit := func(contents ...string) []cel.Event {
		t.Helper()
		ws := make([]*waiter, len(contents))
		for i, c := range contents {
			ws[i] = &waiter{t: cel.BPFMeasurement, content: []byte(c)}
		}
		j.mu.Lock()
		evs, err := j.commitEvents(ws)
		j.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		return evs
	}
	var want []string
	for i := range 150 { // past two index strides of records
		var cs []string
		for e := range 1 + i%4 {
			cs = append(cs, fmt.Sprintf("m%03d-%d", i, e))
		}
		evs := commit(cs...)
		if evs[0].RecNum+uint64(len(cs)) != j.Len() {
			t.Fatalf("commit %d: events from %d, Len %d", i, evs[0].RecNum, j.Len())
		}
		want = append(want, cs...)
	}
	recs := checkReplay(t, j, dev)
	if got := events(recs); !slices.Equal(got, want) {
		t.Fatalf("measurements %q", got)
	}
	var batches []cel.Record
	for _, r := range recs {
		if r.Type == cel.Batch {
			batches = append(batches, r)
		}
	}
	if uint64(len(recs)) != j.RecordCount() || len(batches) == 0 || j.Len() == j.RecordCount() {
		t.Fatalf("%d records, RecordCount %d, %d batches, Len %d", len(recs), j.RecordCount(), len(batches), j.Len())
	}
	for _, b := range []cel.Record{batches[0], batches[len(batches)/2], batches[len(batches)-1]} {
		checkReaders(t, j, b)
	}
	before := j.Len()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j = mustOpen(t, dir, dev, options(dev))
	recs = checkReplay(t, j, dev)
	if rs := recoveries(t, recs); len(rs) != 0 {
		t.Fatalf("reopen recovered %+v", rs)
	}
	if last := recs[len(recs)-1]; last.Type != cel.AgentStart || last.RecNum != before {
		t.Fatalf("after reopening: last record %v numbered %d, want agent_start %d", last.Type, last.RecNum, before)
	}
}

// checkReaders reads the log from an event inside batch b: every reader
// starts at the batch record, or (WalkEvents) at the event.
func checkReaders(t *testing.T, j *Journal, b cel.Record) {
	t.Helper()
	inside := b.RecNum + 1
	if recs := j.Records(inside); len(recs) == 0 || recs[0].RecNum != b.RecNum || recs[0].Type != cel.Batch {
		t.Fatalf("Records(%d) starts at %v", inside, recs)
	}
	if j.SizeFrom(inside) != j.SizeFrom(b.RecNum) || j.SizeFrom(inside) == 0 {
		t.Fatalf("SizeFrom(%d) = %d, SizeFrom(%d) = %d", inside, j.SizeFrom(inside), b.RecNum, j.SizeFrom(b.RecNum))
	}
	var first *cel.Record
	if err := j.Walk(inside, func(r *cel.Record) error {
		if first == nil {
			c := *r
			first = &c
		}
		return nil
	}); err != nil || first == nil || first.RecNum != b.RecNum {
		t.Fatalf("Walk(%d) starts at %v: %v", inside, first, err)
	}
	var evs []uint64
	if err := j.WalkEvents(inside, func(ev *cel.Event) error {
		evs = append(evs, ev.RecNum)
		return nil
	}); err != nil || len(evs) == 0 || evs[0] != inside || uint64(len(evs)) != j.Len()-inside {
		t.Fatalf("WalkEvents(%d): %v, %v", inside, evs, err)
	}
	err := j.SnapshotSlice(inside, func(s Slice, _ map[crypto.Hash][]byte) error {
		if s.From != b.RecNum || s.Next != j.nextNum() {
			return fmt.Errorf("slice from %d, next %d; want %d, %d", s.From, s.Next, b.RecNum, j.nextNum())
		}
		for _, rn := range []uint64{b.RecNum, inside} {
			if off, at, ok := s.Locate(rn); !ok || off != 0 || at != b.RecNum {
				return fmt.Errorf("Locate(%d) = %d, %d, %v", rn, off, at, ok)
			}
		}
		bn, _ := b.NextRecNum()
		if bn < s.Next {
			if off, at, ok := s.Locate(bn); !ok || off != s.Offsets[1] || at != bn {
				return fmt.Errorf("Locate(%d) = %d, %d, %v; want %d", bn, off, at, ok, s.Offsets[1])
			}
		}
		if off, at, ok := s.Locate(s.Next); !ok || off != len(s.Log) || at != s.Next {
			return fmt.Errorf("Locate(next %d) = %d, %d, %v", s.Next, off, at, ok)
		}
		if _, _, ok := s.Locate(s.Next + 1); ok {
			return errors.New("located an event past the end")
		}
		if b.RecNum > 0 {
			if _, _, ok := s.Locate(b.RecNum - 1); ok {
				return errors.New("located an event before the slice")
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
