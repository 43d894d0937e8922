package attest

import (
	"crypto"
	"crypto/sha256"
	"testing"

	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/evidence"
	"github.com/bpfattest/bpfattest/internal/tpm"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
	"github.com/bpfattest/bpfattest/measure"
)

// benchLog builds a boot's log of about n records on the simulator, record
// by record extended into PCR 14 (directly: the journal's fsync per record
// would make a 10,000-record setup take minutes, and is not what is
// measured). Loads follow the scenario's pattern: measurement, result, and
// for nine loads in ten, the loader and program unloaded again.
type benchLog struct {
	dev   *tpm.Device
	ak    *tpm.AK
	banks []crypto.Hash
	recs  []cel.Record
	id    uint32
}

func newBenchLog(b *testing.B) *benchLog {
	dev := tpmtest.Open(b, "sim")
	ak, err := dev.LoadOrCreateAK(tpm.AKOptions{})
	if err != nil {
		b.Fatal(err)
	}
	l := &benchLog{dev: dev, ak: ak, banks: dev.Banks()}
	start, err := dev.ReadPCR(14)
	if err != nil {
		b.Fatal(err)
	}
	c, err := dev.ClockInfo()
	if err != nil {
		b.Fatal(err)
	}
	bi := cel.BootInfo{BootID: testBootID, ResetCount: c.ResetCount, RestartCount: c.RestartCount, Clock: c.Clock, PCR: 14, Start: start}
	content, err := bi.MarshalBinary()
	if err != nil {
		b.Fatal(err)
	}
	l.add(b, cel.BootHeader, content)
	return l
}

func (l *benchLog) add(b *testing.B, t cel.ContentType, content []byte) {
	r, err := cel.NewRecord(uint64(len(l.recs)), 14, l.banks, t, content)
	if err != nil {
		b.Fatal(err)
	}
	d := map[crypto.Hash][]byte{}
	for _, x := range r.Digests {
		d[x.Hash] = x.Value
	}
	if err := l.dev.Extend(14, d); err != nil {
		b.Fatal(err)
	}
	l.recs = append(l.recs, r)
}

func (l *benchLog) loads(b *testing.B, m *measure.Measurement, n int) {
	mb, err := m.MarshalBinary()
	if err != nil {
		b.Fatal(err)
	}
	next := func() uint32 { l.id++; return l.id }
	for i := 0; len(l.recs) < n; i++ {
		mrec := uint64(len(l.recs))
		l.add(b, cel.BPFMeasurement, mb)
		// The result the agent records: the loader, the data map, a map
		// and the measured programs (names, types, kernel tags), so that
		// it binds to the measurement as a real one does.
		res := measure.LoadResult{MeasurementRecord: mrec, MeasurementSHA256: sha256.Sum256(mb), Outcome: measure.OutcomeLoaded,
			Loader:  &measure.KernelObject{ID: next(), Type: 31, Tag: [8]byte{1, byte(l.id), byte(l.id >> 8)}, Name: "__loader.prog"},
			DataMap: &measure.KernelObject{ID: next(), Type: 2, Name: "__loader.map"},
			Maps:    []measure.KernelObject{{ID: next(), Type: 2, Name: "counter.bss"}}}
		for _, p := range m.Programs {
			res.Programs = append(res.Programs, measure.KernelObject{ID: next(), Type: p.Type, Tag: p.KernelTag, Name: measure.KernelName(p.Name)})
		}
		rb, err := res.MarshalBinary()
		if err != nil {
			b.Fatal(err)
		}
		rrec := uint64(len(l.recs))
		l.add(b, cel.BPFLoadResult, rb)
		if i%10 == 0 {
			continue
		}
		for _, o := range append([]measure.KernelObject{*res.Loader}, res.Programs...) {
			u := measure.Unloaded{ID: o.ID, Tag: o.Tag, Record: rrec}
			ub, err := u.MarshalBinary()
			if err != nil {
				b.Fatal(err)
			}
			l.add(b, cel.BPFUnloaded, ub)
		}
	}
}

func (l *benchLog) evidence(b *testing.B, nonce []byte, from uint64) *evidence.Evidence {
	q, err := l.dev.Quote(l.ak, evidence.QualifyingData(nonce), []int{14}, []crypto.Hash{crypto.SHA256})
	if err != nil {
		b.Fatal(err)
	}
	ev := evidenceOf(l.ak, q, 14)
	if ev.Log, err = cel.Encode(l.recs[from:]); err != nil {
		b.Fatal(err)
	}
	ev.FromRecord = from
	return ev
}

const benchRecords = 10000

// BenchmarkVerify verifies an ECC quote with a full 10,000-record log
// (every bank's digest of every record checked, replay, inventory).
func BenchmarkVerify(b *testing.B) {
	l := newBenchLog(b)
	l.loads(b, fixtureMeasurement(b, "counter.signed.lskel.h", measure.KernelCheckUnavailable), benchRecords)
	nonce := freshNonce(b, 0)
	ev := l.evidence(b, nonce, 0)
	opts := VerifyOptions{Nonce: nonce, AKPublic: l.ak.PublicArea()}
	b.ResetTimer()
	for b.Loop() {
		if _, err := Verify(ev, opts); err != nil {
			b.Fatal(err)
		}
	}
	s := b.Elapsed().Seconds()
	b.ReportMetric(float64(b.N)/s, "verifications/s")
	b.ReportMetric(float64(b.N*len(l.recs))/s, "records/s")
}

// incrementalSetup builds the 10,000-record log, verifies it, adds four
// records (one load and its unloads) and returns evidence for them with the
// options carrying the first verification's State, and the count of new
// records.
func incrementalSetup(b *testing.B) (*evidence.Evidence, VerifyOptions, int) {
	l := newBenchLog(b)
	m := fixtureMeasurement(b, "counter.signed.lskel.h", measure.KernelCheckUnavailable)
	l.loads(b, m, benchRecords)
	n0 := freshNonce(b, 0)
	res, err := Verify(l.evidence(b, n0, 0), VerifyOptions{Nonce: n0, AKPublic: l.ak.PublicArea()})
	if err != nil {
		b.Fatal(err)
	}
	before := len(l.recs)
	l.loads(b, m, before+4)
	nonce := freshNonce(b, 1)
	ev := l.evidence(b, nonce, res.NextRecord())
	opts := VerifyOptions{Nonce: nonce, AKPublic: l.ak.PublicArea(), State: res.State()}
	return ev, opts, len(l.recs) - before
}

// BenchmarkVerifyIncremental verifies an ECC quote from the State of a
// 10,000-record log with four new records: one load and its unloads. One
// goroutine: the cost per verification on one core.
func BenchmarkVerifyIncremental(b *testing.B) {
	ev, opts, n := incrementalSetup(b)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := Verify(ev, opts); err != nil {
			b.Fatal(err)
		}
	}
	s := b.Elapsed().Seconds()
	b.ReportMetric(float64(b.N)/s, "verifications/s")
	b.ReportMetric(float64(b.N*n)/s, "records/s")
}

// BenchmarkVerifyIncrementalParallel is BenchmarkVerifyIncremental on every
// core (GOMAXPROCS goroutines, b.RunParallel), all verifying from the same
// State: a verifier serving many agents' quotes, or one agent's replicas.
func BenchmarkVerifyIncrementalParallel(b *testing.B) {
	ev, opts, _ := incrementalSetup(b)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := Verify(ev, opts); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifications/s")
}

// BenchmarkReplay is the log check alone, on one core: decode the
// 10,000-record log and replay it (every digest of every record against its
// content, then the extends), without the quote or the inventory.
func BenchmarkReplay(b *testing.B) {
	l := newBenchLog(b)
	l.loads(b, fixtureMeasurement(b, "counter.signed.lskel.h", measure.KernelCheckUnavailable), benchRecords)
	ev := l.evidence(b, freshNonce(b, 0), 0)
	boot, err := cel.ParseBootInfo(l.recs[0].Content)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(ev.Log)))
	b.ResetTimer()
	for b.Loop() {
		recs, err := cel.Decode(ev.Log)
		if err != nil {
			b.Fatal(err)
		}
		rp, err := cel.NewReplayer(boot.Start)
		if err != nil {
			b.Fatal(err)
		}
		for i := range recs {
			if err := rp.Add(&recs[i]); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N*len(l.recs))/b.Elapsed().Seconds(), "records/s")
}
