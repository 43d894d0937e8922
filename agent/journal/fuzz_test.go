package journal

import (
	"crypto"
	"testing"

	"github.com/bpfattest/bpfattest/cel"
)

// FuzzScan feeds arbitrary bytes to the reader of log files, which Open
// and ReadFile run on whatever is on disk: it must never panic, and what it
// accepts as valid must replay from the header.
func FuzzScan(f *testing.F) {
	banks := []crypto.Hash{crypto.SHA1, crypto.SHA256}
	start := map[crypto.Hash][]byte{crypto.SHA1: make([]byte, 20), crypto.SHA256: make([]byte, 32)}
	boot := cel.BootInfo{BootID: testBootID, ResetCount: 2, PCR: DefaultPCR, Start: start}
	content, err := boot.MarshalBinary()
	if err != nil {
		f.Fatal(err)
	}
	var recs []cel.Record
	for i, c := range []struct {
		t cel.ContentType
		b []byte
	}{{cel.BootHeader, content}, {cel.AgentStart, nil}, {cel.BPFMeasurement, []byte("m")}} {
		r, err := cel.NewRecord(uint64(i), DefaultPCR, banks, c.t, c.b)
		if err != nil {
			f.Fatal(err)
		}
		recs = append(recs, r)
	}
	log, err := cel.Encode(recs)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(log)
	f.Add(log[:len(log)-4])
	f.Add(log[:recs[0].EncodedLen()])
	f.Fuzz(func(t *testing.T, b []byte) {
		sc, err := scan(b)
		if err != nil {
			return
		}
		if sc.validEnd+int64(len(sc.tail)) != int64(len(b)) {
			t.Fatalf("valid %d + tail %d != %d bytes", sc.validEnd, len(sc.tail), len(b))
		}
		if _, err := replay(sc.recs[:sc.valid], sc.boot.Start); err != nil {
			t.Fatalf("valid records do not replay: %v", err)
		}
		if _, err := sc.replayWithoutLast(); err != nil {
			t.Fatal(err)
		}
	})
}
