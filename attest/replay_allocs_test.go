package attest

import (
	"crypto"
	"fmt"
	"testing"

	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/evidence"
)

// TestReplayAllocsPerRecord checks that the log check of an incremental
// verification (decoding the new records, checking every digest of every
// bank, extending, comparing with the quote) allocates nothing per record:
// checking 512 new records allocates no more than checking 8. Interpreting
// the records is not part of it (what a kept record needs in the State is
// that record's own); this is the part whose cost must not grow with what
// the agent logged.
func TestReplayAllocsPerRecord(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not kept under the race detector")
	}
	banks := []crypto.Hash{crypto.SHA1, crypto.SHA256, crypto.SHA384, crypto.SHA512}
	start := make(map[crypto.Hash][]byte)
	for _, h := range banks {
		start[h] = make([]byte, h.Size())
	}
	check := func(n int) float64 {
		recs := make([]cel.Record, n)
		var rp cel.Replayer
		if err := rp.Reset(start); err != nil {
			t.Fatal(err)
		}
		for i := range recs {
			rec, err := cel.NewRecord(uint64(100+i), 14, banks, cel.BPFLoadResult, fmt.Appendf(nil, "result %d %0*d", i, 30*(i%8), 0))
			if err != nil {
				t.Fatal(err)
			}
			if err := rp.Add(&rec); err != nil {
				t.Fatal(err)
			}
			recs[i] = rec
		}
		log, err := cel.Encode(recs)
		if err != nil {
			t.Fatal(err)
		}
		r := replay{ev: &evidence.Evidence{Log: log, PCR: 14}, banks: []crypto.Hash{crypto.SHA256},
			quoted: map[crypto.Hash]map[int][]byte{crypto.SHA256: {14: rp.Values()[crypto.SHA256]}}}
		return testing.AllocsPerRun(50, func() {
			got, _, err := r.decode()
			if err != nil || got != n {
				t.Fatalf("decode: %d records, %v", got, err)
			}
			var rec cel.Record
			if _, err := r.replay(start, &rec); err != nil {
				t.Fatal(err)
			}
		})
	}
	small, large := check(8), check(512)
	t.Logf("allocations: %v for 8 records, %v for 512", small, large)
	if large > small {
		t.Errorf("checking 512 records allocates %v times, 8 records %v: something allocates per record", large, small)
	}
}
