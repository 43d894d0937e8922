package cel_test

import (
	"bytes"
	"crypto"
	"testing"
	"time"

	"github.com/bpfattest/bpfattest/cel"
)

var allBanks = []crypto.Hash{crypto.SHA1, crypto.SHA256, crypto.SHA384, crypto.SHA512}

// zeros returns all-zero PCR values for banks.
func zeros(banks []crypto.Hash) map[crypto.Hash][]byte {
	m := make(map[crypto.Hash][]byte, len(banks))
	for _, h := range banks {
		m[h] = make([]byte, h.Size())
	}
	return m
}

func mustMarshal(tb testing.TB, m interface{ MarshalBinary() ([]byte, error) }) []byte {
	tb.Helper()
	b, err := m.MarshalBinary()
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func mustRecord(tb testing.TB, recnum uint64, pcr uint8, banks []crypto.Hash, t cel.ContentType, content []byte) cel.Record {
	tb.Helper()
	r, err := cel.NewRecord(recnum, pcr, banks, t, content)
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

// sampleStart is the starting PCR value of the sample log: non-zero, as it
// is on a machine where shim extended PCR 14 before the OS.
func sampleStart() map[crypto.Hash][]byte {
	m := zeros(allBanks)
	for h, v := range m {
		for i := range v {
			v[i] = byte(i) ^ byte(h)
		}
	}
	return m
}

// sampleLog is a deterministic log with one record of every content type.
func sampleLog(tb testing.TB) []cel.Record {
	tb.Helper()
	when := time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)
	boot := cel.BootInfo{
		BootID: "0b0e4d1f-6a53-4a8e-9f8c-1c2d3e4f5a6b", ResetCount: 3, RestartCount: 1,
		Clock: 123456, PCR: 14, Start: sampleStart(), Time: when,
	}
	start := cel.AgentStartInfo{Version: "v0.1.0", PID: 4242, Time: when.Add(time.Second),
		ClockInfo: cel.ClockInfo{Clock: 124456, ResetCount: 3, RestartCount: 1, Safe: true}}
	rec := cel.RecoveryInfo{Action: cel.RolledForward, RecNum: 2, Offset: 500, Length: 321,
		SHA256: [32]byte{1, 2, 3}, Detail: "pcr equals replay without the last record"}
	contents := []struct {
		t cel.ContentType
		c []byte
	}{
		{cel.BootHeader, mustMarshal(tb, &boot)},
		{cel.AgentStart, mustMarshal(tb, &start)},
		{cel.BPFMeasurement, []byte("measurement of counter.signed.lskel.h")},
		{cel.Recovery, mustMarshal(tb, &rec)},
		{cel.BPFLoadResult, []byte("load result: errno 0, prog ids 17 18")},
		{cel.BPFUnmeasured, []byte("prog id 9 tag 0123456789abcdef")},
		{cel.BPFUnloaded, []byte("prog id 17")},
		{cel.BPFMeasurement, nil},
	}
	recs := make([]cel.Record, len(contents))
	for i, c := range contents {
		recs[i] = mustRecord(tb, uint64(i), 14, allBanks, c.t, c.c)
	}
	return recs
}

func encode(tb testing.TB, recs []cel.Record) []byte {
	tb.Helper()
	b, err := cel.Encode(recs)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// offsets returns the start offset of each record in the encoding and the
// total length.
func offsets(recs []cel.Record) ([]int, int) {
	out := make([]int, len(recs))
	off := 0
	for i := range recs {
		out[i] = off
		off += recs[i].EncodedLen()
	}
	return out, off
}

// extend computes H(old ‖ d) the way the TPM does, independently of the
// package.
func extend(h crypto.Hash, old, d []byte) []byte {
	x := h.New()
	x.Write(old)
	x.Write(d)
	return x.Sum(nil)
}

func equalValues(a, b map[crypto.Hash][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for h, v := range a {
		if !bytes.Equal(v, b[h]) {
			return false
		}
	}
	return true
}
