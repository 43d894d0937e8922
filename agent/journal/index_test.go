package journal

import (
	"bytes"
	"crypto"
	"fmt"
	"testing"

	"github.com/bpfattest/bpfattest/cel"
)

// TestRecordIndex checks the sparse index against the offsets of a real
// encoded log with batch records among plain ones, event by event, as it
// grows, after truncating it on and either side of a stride (what resume
// does when the last record is to be rolled forward) and growing it again,
// and checks that a log changed under it is reported, not stepped over.
func TestRecordIndex(t *testing.T) {
	banks := []crypto.Hash{crypto.SHA256}
	var (
		log  []byte
		offs []int64
		nums []uint64 // each record's number
		next uint64
	)
	for i := range 3*indexStride + 5 {
		content := bytes.Repeat([]byte{byte(i)}, i%7*100)
		typ, events := cel.BPFMeasurement, 1
		if i%5 == 3 { // a batch of 2 to 5 events
			events = i%4 + 2
			evs := make([]cel.Event, events)
			for e := range evs {
				evs[e] = cel.Event{Type: cel.BPFLoadResult, Content: content}
			}
			var err error
			if content, err = cel.EncodeBatch(evs); err != nil {
				t.Fatal(err)
			}
			typ = cel.Batch
		}
		r, err := cel.NewRecord(next, DefaultPCR, banks, typ, content)
		if err != nil {
			t.Fatal(err)
		}
		offs = append(offs, int64(len(log)))
		nums = append(nums, next)
		next += uint64(events)
		if log, err = r.AppendBinary(log); err != nil {
			t.Fatal(err)
		}
	}
	nums = append(nums, next)
	check := func(x *recordIndex, n int) {
		t.Helper()
		end := int64(len(log))
		if n < len(offs) {
			end = offs[n]
		}
		if x.n != n {
			t.Fatalf("index holds %d records, want %d", x.n, n)
		}
		for i := range n {
			for rn := nums[i]; rn < nums[i+1]; rn++ {
				pos, got, err := x.locate(bytes.NewReader(log), rn, end)
				if err != nil || got != offs[i] || pos != i {
					t.Fatalf("event %d: record %d at %d (%v), want record %d at %d", rn, pos, got, err, i, offs[i])
				}
			}
		}
	}
	var x recordIndex
	for i, o := range offs {
		x.add(o, nums[i])
		if i%indexStride <= 1 || i%indexStride == indexStride-1 {
			check(&x, i+1)
		}
	}
	check(&x, len(offs))
	for _, n := range []int{2*indexStride + 1, 2 * indexStride, 2*indexStride - 1, indexStride, 1} {
		t.Run(fmt.Sprintf("truncate-%d", n), func(t *testing.T) {
			y := recordIndex{n: x.n, marks: append([]int64(nil), x.marks...), nums: append([]uint64(nil), x.nums...)}
			y.truncate(n)
			check(&y, n)
			for i, o := range offs[n:] {
				y.add(o, nums[n+i])
			}
			check(&y, len(offs))
		})
	}
	var empty recordIndex
	if _, _, err := empty.locate(bytes.NewReader(log), 0, 0); err == nil {
		t.Fatal("located an event in an empty index")
	}
	// A record's framing overwritten: the step over it fails.
	bad := bytes.Clone(log)
	bad[offs[indexStride+2]] = 0xff
	if _, _, err := x.locate(bytes.NewReader(bad), nums[indexStride+3], int64(len(bad))); err == nil {
		t.Fatal("stepped over a damaged record")
	}
	if got, err := offsets(log[offs[5]:offs[9]], 4); err != nil || len(got) != 5 || got[4] != int(offs[9]-offs[5]) {
		t.Fatalf("offsets of 4 records: %v, %v", got, err)
	}
	if _, err := offsets(log[offs[5]:offs[9]], 3); err == nil {
		t.Fatal("offsets: 4 records taken for 3")
	}
	if _, err := offsets(log[offs[5]:offs[9]-1], 4); err == nil {
		t.Fatal("offsets: a cut record taken")
	}
}
