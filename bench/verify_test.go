package bench

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"runtime"
	"testing"

	"github.com/bpfattest/bpfattest/attest"
	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/evidence"
	"github.com/bpfattest/bpfattest/internal/tpm"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
	"github.com/bpfattest/bpfattest/measure"
)

// verifyLog is a boot's event log built record by record on the in-process
// simulator, each record extended into PCR 14 directly (the journal's
// fsync per record would make a 10,000-record setup take minutes and is
// not what is measured). Loads follow the pattern of attest's benchmarks:
// a measurement of the signed counter fixture, its result, and for nine
// loads in ten the loader and the program unloaded again.
type verifyLog struct {
	dev  *tpm.Device
	ak   *tpm.AK
	recs []cel.Record
	m    *measure.Measurement
	mb   []byte // the measurement's encoding
	id   uint32
}

const verifyLogPCR = 14

func newVerifyLog(tb testing.TB) *verifyLog {
	tb.Helper()
	dev := tpmtest.Open(tb, "sim")
	ak, err := dev.LoadOrCreateAK(tpm.AKOptions{}) // ECC P-256, the default
	if err != nil {
		tb.Fatal(err)
	}
	m := counterMeasurement(tb)
	m.KernelCheck = measure.KernelCheckUnavailable
	mb, err := m.MarshalBinary()
	if err != nil {
		tb.Fatal(err)
	}
	l := &verifyLog{dev: dev, ak: ak, m: m, mb: mb}
	start, err := dev.ReadPCR(verifyLogPCR)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := dev.ClockInfo()
	if err != nil {
		tb.Fatal(err)
	}
	bi := cel.BootInfo{BootID: "bench-boot", ResetCount: c.ResetCount, RestartCount: c.RestartCount, Clock: c.Clock, PCR: verifyLogPCR, Start: start}
	content, err := bi.MarshalBinary()
	if err != nil {
		tb.Fatal(err)
	}
	l.add(tb, cel.BootHeader, content)
	return l
}

func (l *verifyLog) add(tb testing.TB, t cel.ContentType, content []byte) uint64 {
	tb.Helper()
	rn := uint64(len(l.recs))
	r, err := cel.NewRecord(rn, verifyLogPCR, l.dev.Banks(), t, content)
	if err != nil {
		tb.Fatal(err)
	}
	d := map[crypto.Hash][]byte{}
	for _, x := range r.Digests {
		d[x.Hash] = x.Value
	}
	if err := l.dev.Extend(verifyLogPCR, d); err != nil {
		tb.Fatal(err)
	}
	l.recs = append(l.recs, r)
	return rn
}

// loads appends loads until the log has at least n records.
func (l *verifyLog) loads(tb testing.TB, n int) {
	tb.Helper()
	for i := 0; len(l.recs) < n; i++ {
		mrec := l.add(tb, cel.BPFMeasurement, l.mb)
		res := l.result(mrec)
		rb, err := res.MarshalBinary()
		if err != nil {
			tb.Fatal(err)
		}
		rrec := l.add(tb, cel.BPFLoadResult, rb)
		if i%10 == 0 {
			continue
		}
		for _, o := range append([]measure.KernelObject{*res.Loader}, res.Programs...) {
			ub, err := (&measure.Unloaded{ID: o.ID, Tag: o.Tag, Record: rrec}).MarshalBinary()
			if err != nil {
				tb.Fatal(err)
			}
			l.add(tb, cel.BPFUnloaded, ub)
		}
	}
}

// result is the load result the agent records for a load of l.m measured
// in record mrec: the loader, its data map, the programs with the
// measured names, types and kernel tags (so the result binds to its
// measurement, as a real one does) and a map, all with fresh ids.
func (l *verifyLog) result(mrec uint64) measure.LoadResult {
	next := func() uint32 { l.id++; return l.id }
	res := measure.LoadResult{MeasurementRecord: mrec, MeasurementSHA256: sha256.Sum256(l.mb), Outcome: measure.OutcomeLoaded,
		Loader:  &measure.KernelObject{ID: next(), Type: 31, Tag: [8]byte{1, byte(l.id), byte(l.id >> 8)}, Name: "__loader.prog"},
		DataMap: &measure.KernelObject{ID: next(), Type: 2, Name: "__loader.map"},
		Maps:    []measure.KernelObject{{ID: next(), Type: 2, Name: "counter.bss"}}}
	for _, p := range l.m.Programs {
		res.Programs = append(res.Programs, measure.KernelObject{ID: next(), Type: p.Type, Tag: p.KernelTag, Name: measure.KernelName(p.Name)})
	}
	return res
}

// evidence quotes the SHA-256 bank of the PCR over nonce and carries the
// log from record from.
func (l *verifyLog) evidence(tb testing.TB, nonce []byte, from uint64) *evidence.Evidence {
	tb.Helper()
	q, err := l.dev.Quote(l.ak, evidence.QualifyingData(nonce), []int{verifyLogPCR}, []crypto.Hash{crypto.SHA256})
	if err != nil {
		tb.Fatal(err)
	}
	ev := &evidence.Evidence{AKPublic: l.ak.PublicArea(), Attest: q.Attest, Signature: q.Signature, PCR: verifyLogPCR,
		Proof: evidence.InclusionProof{Size: 1}, FromRecord: from}
	for _, v := range q.PCRs {
		ev.PCRs = append(ev.PCRs, evidence.PCRValue{Bank: v.Bank, Index: v.Index, Digest: v.Digest})
	}
	if ev.Log, err = cel.Encode(l.recs[from:]); err != nil {
		tb.Fatal(err)
	}
	return ev
}

func nonce(i int) []byte {
	n := sha256.Sum256(fmt.Appendf(nil, "bench nonce %d", i))
	return n[:]
}

// incremental builds a log of about records records, verifies it from
// record 0, adds newRecords more, and returns the evidence for the new
// ones with the options that carry the first verification's State.
func incremental(tb testing.TB, records, newRecords int) (*evidence.Evidence, attest.VerifyOptions, *verifyLog) {
	tb.Helper()
	l := newVerifyLog(tb)
	l.loads(tb, records)
	n0 := nonce(0)
	res, err := attest.Verify(l.evidence(tb, n0, 0), attest.VerifyOptions{Nonce: n0, AKPublic: l.ak.PublicArea()})
	if err != nil {
		tb.Fatal(err)
	}
	for _, p := range res.Programs() {
		if len(p.Binding) > 0 {
			tb.Fatalf("the log's load results do not bind: %v", p.Binding)
		}
	}
	l.loads(tb, len(l.recs)+newRecords)
	n1 := nonce(1)
	return l.evidence(tb, n1, res.NextRecord()), attest.VerifyOptions{Nonce: n1, AKPublic: l.ak.PublicArea(), State: res.State()}, l
}

// bareECDSA returns the one signature check a verification cannot avoid:
// the AK's P-256 verification of the quote's signature, over a digest
// computed once.
func bareECDSA(tb testing.TB, ev *evidence.Evidence, pub crypto.PublicKey) func() error {
	tb.Helper()
	key, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		tb.Fatalf("AK key %T, want ECDSA", pub)
	}
	r, s := tpmtSignatureECDSA(tb, ev.Signature)
	der, err := asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(r), new(big.Int).SetBytes(s)})
	if err != nil {
		tb.Fatal(err)
	}
	digest := sha256.Sum256(ev.Attest)
	if !ecdsa.VerifyASN1(key, digest[:], der) {
		tb.Fatal("the quote's signature does not verify")
	}
	return func() error {
		if !ecdsa.VerifyASN1(key, digest[:], der) {
			return errors.New("ecdsa: signature does not verify")
		}
		return nil
	}
}

// tpmtSignatureECDSA reads r and s from a TPMT_SIGNATURE with an ECDSA
// signature (TPM 2.0 Part 2 §11.3.4: sigAlg, hash, TPM2B r, TPM2B s).
func tpmtSignatureECDSA(tb testing.TB, b []byte) (r, s []byte) {
	tb.Helper()
	const tpmAlgECDSA = 0x0018
	if len(b) < 6 || binary.BigEndian.Uint16(b) != tpmAlgECDSA {
		tb.Fatalf("not an ECDSA TPMT_SIGNATURE: %x", b)
	}
	b = b[4:]
	take := func() []byte {
		if len(b) < 2 || len(b) < 2+int(binary.BigEndian.Uint16(b)) {
			tb.Fatalf("truncated TPMT_SIGNATURE")
		}
		n := int(binary.BigEndian.Uint16(b))
		v := b[2 : 2+n]
		b = b[2+n:]
		return v
	}
	return take(), take()
}

// BenchmarkVerifyVsECDSA is the ratio of incremental verification to the
// bare ECDSA check it contains, on every core: A is attest.Verify of an
// ECC quote from the State of a 10,000-record log with six new records
// (two loads, one unloaded again; the log's records carry every bank the
// simulator has, SHA-1, SHA-256, SHA-384 and SHA-512, and each is
// checked), B is ecdsa.VerifyASN1 of that quote's signature alone. Both
// run on GOMAXPROCS goroutines, all verifying from the same State. The
// ratio is the share of a verification's time the signature takes.
func BenchmarkVerifyVsECDSA(b *testing.B) {
	ev, opts, l := incremental(b, 10000, 4)
	verify := func() error {
		_, err := attest.Verify(ev, opts)
		return err
	}
	allocs, bytes := allocsPerOp(b, verify)
	r := alternate(b,
		side{name: "incremental attest.Verify", op: verify, parallel: true},
		side{name: "bare ecdsa.VerifyASN1", op: bareECDSA(b, ev, l.ak.Public()), parallel: true})
	b.Logf("A allocates %.0f times, %.0f bytes per verification", allocs, bytes)
	b.ReportMetric(allocs, "allocs/verification")
	b.ReportMetric(bytes, "B/verification")
	b.ReportMetric(r.medianRate(0), "verifications/s")
	b.ReportMetric(r.medianRate(1), "ecdsa/s")
	b.ReportMetric(r.medianCPURate(0), "verifications/CPU-s")
	b.ReportMetric(100*r.medianRatio(), "%ecdsa-cpu")
	b.ReportMetric(100*r.medianWallRatio(), "%ecdsa-wall")
}

// allocsPerOp returns what one op allocates, on one goroutine: the count
// (testing.AllocsPerRun) and the bytes (runtime.MemStats.TotalAlloc over
// the same runs).
func allocsPerOp(tb testing.TB, op func() error) (allocs, bytes float64) {
	tb.Helper()
	const runs = 500
	var err error
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	allocs = testing.AllocsPerRun(runs, func() {
		if e := op(); e != nil && err == nil {
			err = e
		}
	})
	runtime.ReadMemStats(&after)
	if err != nil {
		tb.Fatal(err)
	}
	// AllocsPerRun runs op once more to warm up.
	return allocs, float64(after.TotalAlloc-before.TotalAlloc) / (runs + 1)
}

// BenchmarkVerifyLogSize is the ratio of incremental verification from
// the State of a 1,000-record log to the same from the State of a
// 20,000-record log, both with the same new records (a load, then a load
// and its unloads) on one core: incremental verification does no work
// proportional to the log already verified when the ratio stays near
// 100%. Both logs are one log on the simulator, quoted at two lengths.
func BenchmarkVerifyLogSize(b *testing.B) {
	l := newVerifyLog(b)
	at := func(records int) (*evidence.Evidence, attest.VerifyOptions) {
		l.loads(b, records)
		n0 := nonce(2 * records)
		res, err := attest.Verify(l.evidence(b, n0, 0), attest.VerifyOptions{Nonce: n0, AKPublic: l.ak.PublicArea()})
		if err != nil {
			b.Fatal(err)
		}
		l.loads(b, len(l.recs)+4)
		n1 := nonce(2*records + 1)
		return l.evidence(b, n1, res.NextRecord()), attest.VerifyOptions{Nonce: n1, AKPublic: l.ak.PublicArea(), State: res.State()}
	}
	small, smallOpts := at(1000)
	large, largeOpts := at(20000)
	if n, m := len(small.Log), len(large.Log); n != m {
		b.Fatalf("the new records differ: %d and %d bytes", n, m)
	}
	verify := func(ev *evidence.Evidence, opts attest.VerifyOptions) func() error {
		return func() error {
			_, err := attest.Verify(ev, opts)
			return err
		}
	}
	r := alternate(b,
		side{name: "incremental attest.Verify, State of 1,000 records", op: verify(small, smallOpts)},
		side{name: "incremental attest.Verify, State of 20,000 records", op: verify(large, largeOpts)})
	b.ReportMetric(100*r.medianRatio(), "%small/large-cpu")
	b.ReportMetric(r.medianCPURate(0), "small-verifications/CPU-s")
	b.ReportMetric(r.medianCPURate(1), "large-verifications/CPU-s")
}
