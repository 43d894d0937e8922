package journal

import (
	"bytes"
	"crypto"
	"fmt"
	"testing"

	"github.com/bpfattest/bpfattest/cel"
)

// TestRecordIndex checks the sparse index against the offsets of a real
// encoded log, record by record, as it grows, after truncating it on and
// either side of a stride (what resume does when the last record is to be
// rolled forward) and growing it again, and checks that a log changed
// under it is reported, not stepped over.
func TestRecordIndex(t *testing.T) {
	banks := []crypto.Hash{crypto.SHA256}
	var (
		log  []byte
		offs []int64
	)
	for i := range 3*indexStride + 5 {
		r, err := cel.NewRecord(uint64(i), DefaultPCR, banks, cel.BPFMeasurement, bytes.Repeat([]byte{byte(i)}, i%7*100))
		if err != nil {
			t.Fatal(err)
		}
		offs = append(offs, int64(len(log)))
		if log, err = r.AppendBinary(log); err != nil {
			t.Fatal(err)
		}
	}
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
			got, err := x.offset(bytes.NewReader(log), i, end)
			if err != nil || got != offs[i] {
				t.Fatalf("record %d of %d at %d (%v), want %d", i, n, got, err, offs[i])
			}
		}
		if _, err := x.offset(bytes.NewReader(log), n, end); err == nil {
			t.Fatalf("record %d of %d: no error", n, n)
		}
	}
	var x recordIndex
	for i, o := range offs {
		x.add(o)
		if i%indexStride <= 1 || i%indexStride == indexStride-1 {
			check(&x, i+1)
		}
	}
	check(&x, len(offs))
	for _, n := range []int{2*indexStride + 1, 2 * indexStride, 2*indexStride - 1, indexStride, 1} {
		t.Run(fmt.Sprintf("truncate-%d", n), func(t *testing.T) {
			y := recordIndex{n: x.n, marks: append([]int64(nil), x.marks...)}
			y.truncate(n)
			check(&y, n)
			for _, o := range offs[n:] {
				y.add(o)
			}
			check(&y, len(offs))
		})
	}
	// A record's framing overwritten: the step over it fails.
	bad := bytes.Clone(log)
	bad[offs[indexStride+2]] = 0xff
	if _, err := x.offset(bytes.NewReader(bad), indexStride+3, int64(len(bad))); err == nil {
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
