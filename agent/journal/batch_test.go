package journal

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/internal/tpm"
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
	reopenClean(t, j, dir, dev)
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

// appendConcurrently has appenders goroutines append each events
// measurements at once and returns what every Append returned, by content.
func appendConcurrently(t *testing.T, j *Journal, prefix string, appenders, each int) map[string]cel.Event {
	t.Helper()
	var (
		mu  sync.Mutex
		got = map[string]cel.Event{}
		wg  sync.WaitGroup
	)
	for g := range appenders {
		wg.Go(func() {
			for i := range each {
				c := fmt.Sprintf("%s%02d-%03d", prefix, g, i)
				ev, err := j.Append(context.Background(), cel.BPFMeasurement, []byte(c))
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				got[c] = ev
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return got
}

// checkEvents checks that the log holds every appended event exactly once,
// under the number its Append returned, and that events are numbered
// without a gap; it returns the log's batch records.
func checkEvents(t *testing.T, j *Journal, got map[string]cel.Event) []cel.Record {
	t.Helper()
	seen := map[string]uint64{}
	next := uint64(0)
	if err := j.WalkEvents(0, func(ev *cel.Event) error {
		if ev.RecNum != next {
			return fmt.Errorf("event %d where %d was due", ev.RecNum, next)
		}
		next++
		if ev.Type != cel.BPFMeasurement {
			return nil
		}
		c := string(ev.Content)
		if _, dup := seen[c]; dup {
			return fmt.Errorf("event %q twice", c)
		}
		seen[c] = ev.RecNum
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if next != j.Len() {
		t.Fatalf("%d events walked, Len %d", next, j.Len())
	}
	for c, ev := range got {
		if rn, ok := seen[c]; !ok || rn != ev.RecNum || string(ev.Content) != c {
			t.Fatalf("append of %q returned event %d (%q), the log has it at %d (%v)", c, ev.RecNum, ev.Content, rn, ok)
		}
	}
	if len(seen) != len(got) {
		t.Fatalf("%d measurements in the log, %d appended", len(seen), len(got))
	}
	var batches []cel.Record
	if err := j.Walk(0, func(r *cel.Record) error {
		if r.Type == cel.Batch {
			batches = append(batches, *r)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return batches
}

// TestGroupCommit: concurrent appenders on a TPM whose extend takes 3 ms
// (swtpm behind the slow proxy, what a discrete TPM costs) share commits:
// the log holds batch records, fewer extends than events, every event once
// under the number Append returned, and it replays to the PCR in every
// bank; reopened, it reconciles clean and numbering goes on.
func TestGroupCommit(t *testing.T) {
	sw := tpmtest.StartSwtpm(t, tpmtest.SwtpmOptions{})
	proxy := tpmtest.StartSlowProxy(t, sw.SocketPath(), 3*time.Millisecond, tpmtest.CCPCRExtend)
	dev := tpmtest.Open(t, proxy.Spec())
	dir := t.TempDir()
	j := mustOpen(t, dir, dev, options(dev))
	defer func() { j.Close() }()

	held := proxy.Delayed()
	got := appendConcurrently(t, j, "g", 16, 20)
	extends := proxy.Delayed() - held
	batches := checkEvents(t, j, got)
	recs := checkReplay(t, j, dev)
	t.Logf("%d events in %d records (%d batches), %d extends", j.Len(), len(recs), len(batches), extends)
	if len(batches) == 0 || extends >= int64(len(got)) || uint64(len(recs)) != j.RecordCount() {
		t.Fatalf("%d batch records, %d extends for %d appends, %d records (RecordCount %d)", len(batches), extends, len(got), len(recs), j.RecordCount())
	}
	for _, b := range batches {
		n, err := b.EventCount()
		if err != nil || n < 2 || n > 16 {
			t.Fatalf("batch %d: %d events, %v", b.RecNum, n, err)
		}
	}
	checkReaders(t, j, batches[0])

	// Reopened by a new agent: clean (no recovery), the numbering goes on
	// from the last batch's events.
	j = reopenClean(t, j, dir, dev)
	more := appendConcurrently(t, j, "after-reopen-", 4, 5)
	for c, ev := range got {
		more[c] = ev
	}
	checkEvents(t, j, more)
	checkReplay(t, j, dev)
}

// TestAppendWithdraws: an Append whose context ends while it waits for a
// commit is not written, and one that never waited is not either.
func TestAppendWithdraws(t *testing.T) {
	dev := tpmtest.Open(t, "sim")
	j := mustOpen(t, t.TempDir(), dev, options(dev))
	defer j.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := j.Append(ctx, cel.BPFMeasurement, []byte("cancelled")); !errors.Is(err, context.Canceled) {
		t.Fatalf("append with a cancelled context: %v", err)
	}
	// Hold a commit under way (the journal's lock), queue two appends,
	// withdraw one, let the commit go.
	j.mu.Lock()
	leader := make(chan error, 1)
	go func() { _, err := j.Append(context.Background(), cel.BPFMeasurement, []byte("leader")); leader <- err }()
	waitQueue(t, j, 0, true)
	ctx, cancel = context.WithCancel(context.Background())
	withdrawn := make(chan error, 1)
	go func() { _, err := j.Append(ctx, cel.BPFMeasurement, []byte("withdrawn")); withdrawn <- err }()
	kept := make(chan error, 1)
	go func() { _, err := j.Append(context.Background(), cel.BPFMeasurement, []byte("kept")); kept <- err }()
	waitQueue(t, j, 2, true)
	cancel()
	if err := <-withdrawn; !errors.Is(err, context.Canceled) {
		t.Fatalf("withdrawn append: %v", err)
	}
	j.mu.Unlock()
	if err := errors.Join(<-leader, <-kept); err != nil {
		t.Fatal(err)
	}
	recs := checkReplay(t, j, dev)
	if got := events(recs); !slices.Equal(got, []string{"leader", "kept"}) {
		t.Fatalf("measurements %q, want leader and kept", got)
	}
	// Wrong content types are refused before they queue.
	for _, typ := range []cel.ContentType{cel.Batch, cel.BootHeader, 0xB0FF} {
		if _, err := j.Append(context.Background(), typ, nil); err == nil {
			t.Fatalf("append of %v accepted", typ)
		}
	}
}

// waitQueue waits until n appends wait in the queue and a commit is (or
// is not) under way.
func waitQueue(t *testing.T, j *Journal, n int, committing bool) {
	t.Helper()
	for range 5000 {
		j.qmu.Lock()
		ok := len(j.queue) == n && j.committing == committing
		j.qmu.Unlock()
		if ok {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("the queue never held %d appends", n)
}

// TestGroupCommitSim: the same property on the simulator, whose extend is
// fast: whatever batches form, every event is in the log once and it
// replays to the PCR.
func TestGroupCommitSim(t *testing.T) {
	dev := tpmtest.Open(t, "sim")
	j := mustOpen(t, t.TempDir(), dev, options(dev))
	defer j.Close()
	got := appendConcurrently(t, j, "g", 32, 10)
	batches := checkEvents(t, j, got)
	recs := checkReplay(t, j, dev)
	t.Logf("%d events in %d records, %d batches", j.Len(), len(recs), len(batches))
}

// TestEnqueueOrder: events queued with Enqueue take their places in the
// log in the order Enqueue returned, whatever order their Waits run in,
// and share a commit when they queue behind one under way.
func TestEnqueueOrder(t *testing.T) {
	dev := tpmtest.Open(t, "sim")
	j := mustOpen(t, t.TempDir(), dev, options(dev))
	defer j.Close()
	j.mu.Lock() // a commit under way: what queues now shares the next one
	first, err := j.Enqueue(cel.BPFMeasurement, []byte("lead"))
	if err != nil {
		t.Fatal(err)
	}
	leader := make(chan error, 1)
	go func() { _, err := first.Wait(context.Background()); leader <- err }()
	waitQueue(t, j, 0, true)
	var ps []*Pending
	for i := range 5 {
		p, err := j.Enqueue(cel.BPFMeasurement, fmt.Appendf(nil, "e%d", i))
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	j.mu.Unlock()
	if err := <-leader; err != nil {
		t.Fatal(err)
	}
	evs := make([]cel.Event, len(ps))
	var wg sync.WaitGroup
	for i := len(ps) - 1; i >= 0; i-- { // waited for in reverse
		wg.Go(func() {
			ev, err := ps[i].Wait(context.Background())
			if err != nil {
				t.Error(err)
			}
			evs[i] = ev
		})
	}
	wg.Wait()
	for i, ev := range evs {
		if ev.RecNum != evs[0].RecNum+uint64(i) || string(ev.Content) != fmt.Sprintf("e%d", i) {
			t.Fatalf("event %d: %d %q, first %d", i, ev.RecNum, ev.Content, evs[0].RecNum)
		}
		if end := ps[i].End(); end != evs[0].RecNum+uint64(len(ps)) || end != j.Len() {
			t.Fatalf("event %d: End %d, want the batch's end %d (Len %d)", i, end, evs[0].RecNum+uint64(len(ps)), j.Len())
		}
	}
	recs := checkReplay(t, j, dev)
	last := recs[len(recs)-1]
	if n, _ := last.EventCount(); last.Type != cel.Batch || n != len(ps) || last.RecNum != evs[0].RecNum {
		t.Fatalf("the queued events are not one batch record: last record %v %d with %d events", last.Type, last.RecNum, n)
	}
	if _, err := j.Enqueue(cel.Batch, nil); err == nil {
		t.Fatal("a batch enqueued as an event")
	}
}

// reopenClean closes j and opens its log again as a new agent would, and
// checks that nothing needed recovering and that the agent_start record
// was numbered after the last event before. It returns the reopened log.
func reopenClean(t *testing.T, j *Journal, dir string, dev *tpm.Device) *Journal {
	t.Helper()
	before := j.Len()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j = mustOpen(t, dir, dev, options(dev))
	recs := checkReplay(t, j, dev)
	if rs := recoveries(t, recs); len(rs) != 0 {
		t.Fatalf("reopen recovered %+v", rs)
	}
	if last := recs[len(recs)-1]; last.Type != cel.AgentStart || last.RecNum != before {
		t.Fatalf("after reopening: last record %v numbered %d, want agent_start %d", last.Type, last.RecNum, before)
	}
	return j
}
