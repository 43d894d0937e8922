package cel_test

import (
	"crypto"
	"fmt"
	"reflect"
	"testing"

	"github.com/bpfattest/bpfattest/cel"
)

// scanLog is a log of n records of the BPF content types, with contents of
// a few hundred bytes, on PCR 14 in every bank, from record 1.
func scanLog(tb testing.TB, n int) []byte {
	tb.Helper()
	types := []cel.ContentType{cel.BPFMeasurement, cel.BPFLoadResult, cel.BPFUnloaded, cel.BPFUnmeasured}
	recs := make([]cel.Record, n)
	for i := range recs {
		content := fmt.Appendf(nil, "record %d %0*d", i, 40*(i%16), 0)
		recs[i] = mustRecord(tb, uint64(i+1), 14, allBanks, types[i%len(types)], content)
	}
	b, err := cel.Encode(recs)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// TestScannerDecodes checks that a Scanner yields the records Decode
// returns, and stops with the same error on every truncation of the log.
func TestScannerDecodes(t *testing.T) {
	log := scanLog(t, 9)
	for cut := len(log); cut >= 0; cut -= 7 {
		b := log[:cut]
		want, wantErr := cel.Decode(b)
		var got []cel.Record
		var rec cel.Record
		sc := cel.NewScanner(b)
		for sc.Next(&rec) {
			r := rec
			r.Digests = append([]cel.Digest(nil), rec.Digests...)
			got = append(got, r)
		}
		if len(got) != len(want) {
			t.Fatalf("cut %d: %d records, Decode has %d", cut, len(got), len(want))
		}
		for i := range got {
			if !reflect.DeepEqual(got[i], want[i]) {
				t.Fatalf("cut %d: record %d is %+v, Decode has %+v", cut, i, got[i], want[i])
			}
		}
		if !reflect.DeepEqual(sc.Err(), wantErr) {
			t.Fatalf("cut %d: error %v, Decode has %v", cut, sc.Err(), wantErr)
		}
	}
}

// TestScanReplayAllocsPerRecord is the replay a verifier does, per new
// record: decode it with a Scanner, check its digest in every bank and
// extend, with a Replayer made by Reset. None of it may allocate per
// record (a record's digests, a hash state, a value copy): a log of 256
// records must allocate no more than one of 8. The hash states come from a
// pool that a garbage collection can empty, so the count may be a little
// above zero, but not grow with the log.
func TestScanReplayAllocsPerRecord(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not kept under the race detector")
	}
	start := zeros(allBanks)
	replay := func(log []byte) float64 {
		return testing.AllocsPerRun(100, func() {
			var rp cel.Replayer
			if err := rp.Reset(start); err != nil {
				t.Fatal(err)
			}
			var rec cel.Record
			sc := cel.NewScanner(log)
			for sc.Next(&rec) {
				if err := rp.Add(&rec); err != nil {
					t.Fatal(err)
				}
			}
			if err := sc.Err(); err != nil {
				t.Fatal(err)
			}
		})
	}
	small, large := replay(scanLog(t, 8)), replay(scanLog(t, 256))
	t.Logf("allocations: %v for 8 records, %v for 256", small, large)
	if large > small || large > 1 {
		t.Errorf("replaying 256 records allocates %v times, 8 records %v: something allocates per record", large, small)
	}
	// And the Replayer's values are those of a replay of the decoded log.
	log := scanLog(t, 33)
	recs, err := cel.Decode(log)
	if err != nil {
		t.Fatal(err)
	}
	want, err := cel.Replay(recs, start)
	if err != nil {
		t.Fatal(err)
	}
	var rp cel.Replayer
	if err := rp.Reset(start); err != nil {
		t.Fatal(err)
	}
	var rec cel.Record
	for sc := cel.NewScanner(log); sc.Next(&rec); {
		if err := rp.Add(&rec); err != nil {
			t.Fatal(err)
		}
	}
	if !rp.Equal(want) || !equalValues(rp.Values(), want) {
		t.Errorf("scanned replay ends at %x, decoded replay at %x", rp.Values()[crypto.SHA256], want[crypto.SHA256])
	}
}
