package cel_test

import (
	"crypto"
	"fmt"
	"testing"

	"github.com/bpfattest/bpfattest/cel"
)

// benchLog is n BPF records of size bytes each, all banks given.
func benchLog(b *testing.B, n, size int, banks []crypto.Hash) []cel.Record {
	b.Helper()
	recs := make([]cel.Record, n)
	content := make([]byte, size)
	for i := range recs {
		content[0] = byte(i)
		recs[i] = mustRecord(b, uint64(i), 14, banks, cel.BPFMeasurement, append([]byte(nil), content...))
	}
	return recs
}

var benchSizes = []int{64, 512, 4096}

func BenchmarkEncode(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("content=%d", size), func(b *testing.B) {
			recs := benchLog(b, 1024, size, []crypto.Hash{crypto.SHA256})
			enc := encode(b, recs)
			buf := make([]byte, 0, len(enc))
			b.SetBytes(int64(len(enc)))
			b.ReportAllocs()
			for b.Loop() {
				buf = buf[:0]
				for i := range recs {
					buf, _ = recs[i].AppendBinary(buf)
				}
			}
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("content=%d", size), func(b *testing.B) {
			enc := encode(b, benchLog(b, 1024, size, []crypto.Hash{crypto.SHA256}))
			b.SetBytes(int64(len(enc)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := cel.Decode(enc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkReplay reports records replayed per second on one core: content
// digest check plus extend, per bank.
func BenchmarkReplay(b *testing.B) {
	for _, tc := range []struct {
		name  string
		banks []crypto.Hash
		size  int
	}{
		{"sha256/content=64", []crypto.Hash{crypto.SHA256}, 64},
		{"sha256/content=256", []crypto.Hash{crypto.SHA256}, 256},
		{"4banks/content=64", allBanks, 64},
	} {
		b.Run(tc.name, func(b *testing.B) {
			const n = 4096
			recs := benchLog(b, n, tc.size, tc.banks)
			start := zeros(tc.banks)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := cel.Replay(recs, start); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
