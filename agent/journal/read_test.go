package journal

import (
	"bytes"
	"crypto"
	"fmt"
	"testing"
	"time"

	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
)

// TestReadBack proves the journal serves from its file exactly the records
// it appended, through every reader: Records, Walk, Snapshot and
// SnapshotSlice (whose bytes are the records' canonical encodings at the
// offsets it states), from any record on, including across a reopen,
// with records larger than Walk's chunk, and from records on either side
// of the index's strides.
func TestReadBack(t *testing.T) {
	dev := tpmtest.Open(t, "sim")
	dir := t.TempDir()
	j := mustOpen(t, dir, dev, options(dev))
	big := bytes.Repeat([]byte("b"), 3*streamChunk/2)
	for i := range 2*indexStride + 10 {
		content := []byte(fmt.Sprintf("measurement %d", i))
		if i == 17 {
			content = big
		}
		if _, err := j.Append(t.Context(), cel.BPFMeasurement, content); err != nil {
			t.Fatal(err)
		}
	}
	check := func(j *Journal) {
		t.Helper()
		all := checkReplay(t, j, dev)
		if uint64(len(all)) != j.Len() {
			t.Fatalf("%d records, Len says %d", len(all), j.Len())
		}
		for _, from := range []uint64{0, 1, 17, 18, indexStride - 1, indexStride, indexStride + 1, 2 * indexStride,
			j.Len() - 1, j.Len(), j.Len() + 3} {
			want := all[min(from, uint64(len(all))):]
			size := int64(0)
			for _, r := range want {
				size += int64(r.EncodedLen())
			}
			if got := j.SizeFrom(from); got != size {
				t.Errorf("SizeFrom(%d) = %d, want %d", from, got, size)
			}
			if got := j.Records(from); !sameRecords(got, want) {
				t.Errorf("Records(%d): %d records, want %d", from, len(got), len(want))
			}
			var walked []cel.Record
			if err := j.Walk(from, func(r *cel.Record) error {
				walked = append(walked, *r)
				return nil
			}); err != nil {
				t.Fatalf("Walk(%d): %v", from, err)
			}
			if !sameRecords(walked, want) {
				t.Errorf("Walk(%d): %d records, want %d", from, len(walked), len(want))
			}
			err := j.SnapshotSlice(from, func(s Slice, _ map[crypto.Hash][]byte) error {
				if s.Len() != len(want) {
					return fmt.Errorf("%d records, want %d", s.Len(), len(want))
				}
				for i, r := range want {
					enc, err := r.MarshalBinary()
					if err != nil {
						return err
					}
					if !bytes.Equal(s.Log[s.Offsets[i]:s.Offsets[i+1]], enc) {
						return fmt.Errorf("record %d differs", r.RecNum)
					}
				}
				return nil
			})
			if err != nil {
				t.Errorf("SnapshotSlice(%d): %v", from, err)
			}
		}
	}
	check(j)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j = mustOpen(t, dir, dev, options(dev))
	defer j.Close()
	check(j)
}

// sameRecords compares records by their encodings.
func sameRecords(a, b []cel.Record) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, err1 := a[i].MarshalBinary()
		y, err2 := b[i].MarshalBinary()
		if err1 != nil || err2 != nil || !bytes.Equal(x, y) {
			return false
		}
	}
	return true
}

// TestLenDuringSnapshot proves Len and SizeFrom of the log's end answer
// while a snapshot holds the log still (for a whole TPM quote, in the
// agent), so that the quote requests of verifiers that resume are taken in
// for the next quote meanwhile; SizeFrom of an earlier record waits for
// the snapshot. The snapshot's callback waits for the readers' answers: a
// reader that waited for the snapshot would never answer.
func TestLenDuringSnapshot(t *testing.T) {
	dev := tpmtest.Open(t, "sim")
	j := mustOpen(t, t.TempDir(), dev, options(dev))
	defer j.Close()
	if _, err := j.Append(t.Context(), cel.BPFMeasurement, []byte("measurement")); err != nil {
		t.Fatal(err)
	}
	n := j.Len()
	earlier := make(chan int64, 1)
	err := j.SnapshotSlice(0, func(Slice, map[crypto.Hash][]byte) error {
		go func() { earlier <- j.SizeFrom(n - 1) }()
		got := make(chan [2]uint64, 1)
		go func() { got <- [2]uint64{j.Len(), uint64(j.SizeFrom(n))} }()
		select {
		case g := <-got:
			if g != [2]uint64{n, 0} {
				return fmt.Errorf("Len, SizeFrom(end) = %v during a snapshot, want [%d 0]", g, n)
			}
		case <-time.After(time.Minute):
			return fmt.Errorf("Len and SizeFrom(end) waited for the snapshot")
		}
		select {
		case s := <-earlier:
			return fmt.Errorf("SizeFrom(%d) = %d while the snapshot held the log", n-1, s)
		default:
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if s := <-earlier; s <= 0 {
		t.Errorf("SizeFrom(%d) = %d after the snapshot", n-1, s)
	}
}
