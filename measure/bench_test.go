package measure

import (
	"crypto/sha256"
	"testing"
)

const benchDataSize = 1 << 20

// BenchmarkSHA256 is the baseline: plain crypto/sha256 over 1 MiB.
func BenchmarkSHA256(b *testing.B) {
	buf := make([]byte, benchDataSize)
	b.SetBytes(benchDataSize)
	for b.Loop() {
		sha256.Sum256(buf)
	}
}

// BenchmarkMapHash measures the data map hash alone over 1 MiB.
func BenchmarkMapHash(b *testing.B) {
	buf := make([]byte, benchDataSize)
	b.SetBytes(benchDataSize)
	for b.Loop() {
		MapHash(buf)
	}
}

// BenchmarkInspect1MiB measures a whole signed artifact whose data blob has
// been grown to 1 MiB: loader analysis, signature verification, every digest
// and the measurement's encoding. Throughput is reported over the data size,
// so it compares directly with BenchmarkSHA256. "cached" measures with a
// Cache that holds the artifact's verdict and analysis after the first op.
func BenchmarkInspect1MiB(b *testing.B) {
	a := loadFixture(b, "counter.signed.lskel.h")
	grown := make([]byte, benchDataSize)
	copy(grown, a.Data)
	a.Data = grown
	trust := fixtureTrust(b)
	for _, run := range []struct {
		name  string
		cache *Cache
	}{{"uncached", nil}, {"cached", NewCache(CacheLimits{})}} {
		b.Run(run.name, func(b *testing.B) {
			b.SetBytes(benchDataSize)
			b.ReportAllocs()
			for b.Loop() {
				insp, err := Inspect(a, Options{Trust: trust, Cache: run.cache})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := insp.Measurement.MarshalBinary(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkParseMeasurement decodes the measurement of a signed fixture's
// load, as a verifier does for every measurement record it verifies.
func BenchmarkParseMeasurement(b *testing.B) {
	insp, err := Inspect(loadFixture(b, "counter.signed.lskel.h"), Options{Trust: fixtureTrust(b)})
	if err != nil {
		b.Fatal(err)
	}
	m := insp.Measurement
	m.Requester = &Requester{PID: 4242, Exe: "/usr/bin/loader"}
	enc, err := m.MarshalBinary()
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseMeasurement(enc); err != nil {
			b.Fatal(err)
		}
	}
}
