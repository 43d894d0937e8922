package attest

import (
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"

	"github.com/bpfattest/bpfattest/agent/journal"
	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/evidence"
	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/internal/tpm"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
	"github.com/bpfattest/bpfattest/lskel"
	"github.com/bpfattest/bpfattest/measure"
	"github.com/bpfattest/bpfattest/measure/cms"
)

// testAgent produces real evidence the way the agent does: a journal on a
// real TPM (the simulator or swtpm) extends the PCR record by record, and a
// quote is taken under the journal's snapshot lock.
type testAgent struct {
	tb     testing.TB
	dev    *tpm.Device
	ak     *tpm.AK
	j      *journal.Journal
	dir    string
	bootID string
	nextID uint32
	// start is the PCR's value before the journal first opened: what a
	// verifier learns from the firmware's event log on real hardware.
	start map[crypto.Hash][]byte
	// kernel is what new boot headers record of the kernel.
	kernel *cel.KernelInfo
}

const testBootID = "6a1c0f2e-1b2c-4d3e-8f40-000000000001"

func newTestAgent(tb testing.TB, spec string, alg tpm.AKAlgorithm) *testAgent {
	tb.Helper()
	dev := tpmtest.Open(tb, spec)
	ak, err := dev.LoadOrCreateAK(tpm.AKOptions{Algorithm: alg, StateDir: tb.TempDir()})
	if err != nil {
		tb.Fatal(err)
	}
	a := &testAgent{tb: tb, dev: dev, ak: ak, dir: tb.TempDir(), bootID: testBootID, nextID: 100}
	if a.start, err = dev.ReadPCR(journal.DefaultPCR); err != nil {
		tb.Fatal(err)
	}
	a.open()
	return a
}

// open opens (or reopens) the journal: a new boot's log, or the same boot
// continued by a new agent process.
func (a *testAgent) open() {
	a.tb.Helper()
	j, err := journal.Open(context.Background(), a.dir, a.dev, journal.Options{
		Clock: func() (cel.ClockInfo, error) {
			c, err := a.dev.ClockInfo()
			return cel.ClockInfo(c), err
		},
		BootID:  func() (string, error) { return a.bootID, nil },
		Version: "attest-test",
		Kernel:  a.kernel,
	})
	if err != nil {
		a.tb.Fatal(err)
	}
	a.j = j
	a.tb.Cleanup(func() { a.j.Close() })
}

func (a *testAgent) close() {
	a.tb.Helper()
	if err := a.j.Close(); err != nil {
		a.tb.Fatal(err)
	}
}

func (a *testAgent) append(t cel.ContentType, content []byte) cel.Event {
	a.tb.Helper()
	rec, err := a.j.Append(context.Background(), t, content)
	if err != nil {
		a.tb.Fatal(err)
	}
	return rec
}

// fixtureMeasurement measures a real light-skeleton fixture as the agent
// would, with the kernel check it reports.
func fixtureMeasurement(tb testing.TB, header string, kc measure.KernelCheck) *measure.Measurement {
	tb.Helper()
	src, err := os.ReadFile(testutil.LskelFile(tb, "headers/"+header))
	if err != nil {
		tb.Fatal(err)
	}
	art, err := lskel.Load(src)
	if err != nil {
		tb.Fatal(err)
	}
	trust, err := cms.LoadTrust(testutil.LskelFile(tb, "keys/TEST_ONLY_signing_cert.der"))
	if err != nil {
		tb.Fatal(err)
	}
	insp, err := measure.Inspect(art, measure.Options{Trust: trust})
	if err != nil {
		tb.Fatal(err)
	}
	m := insp.Measurement
	m.KernelCheck = kc
	m.Requester = &measure.Requester{UID: 0, PID: 4242, Exe: "/usr/bin/loader"}
	return &m
}

// loaded describes what the kernel created for one load.
type loaded struct {
	measurement, result cel.Event
	res                 *measure.LoadResult
}

// load records a measurement and its load result with the given outcome;
// a loaded outcome lists a loader and one kernel program per original
// program, with fresh ids.
func (a *testAgent) load(m *measure.Measurement, outcome measure.Outcome) loaded {
	a.tb.Helper()
	mb, err := m.MarshalBinary()
	if err != nil {
		a.tb.Fatal(err)
	}
	mrec := a.append(cel.BPFMeasurement, mb)
	res := &measure.LoadResult{MeasurementRecord: mrec.RecNum, MeasurementSHA256: sha256.Sum256(mb), Outcome: outcome}
	switch outcome {
	case measure.OutcomeLoaded:
		res.Loader = a.object(31, "__loader")
		res.Programs = a.programs(m)
	case measure.OutcomeRefused:
		res.Reason = "policy: signature verdict " + m.Verdict.String()
	default:
		res.Step, res.Errno = "BPF_PROG_LOAD", 13
	}
	rb, err := res.MarshalBinary()
	if err != nil {
		a.tb.Fatal(err)
	}
	return loaded{measurement: mrec, result: a.append(cel.BPFLoadResult, rb), res: res}
}

// programs are the kernel programs a load of m creates, as the kernel
// reports them: fresh ids, the kernel's names and the measured tags.
func (a *testAgent) programs(m *measure.Measurement) []measure.KernelObject {
	var out []measure.KernelObject
	for _, p := range m.Programs {
		o := a.object(p.Type, measure.KernelName(p.Name))
		if p.TagKnown() {
			o.Tag = p.KernelTag
		}
		out = append(out, *o)
	}
	return out
}

func (a *testAgent) object(typ uint32, name string) *measure.KernelObject {
	a.nextID++
	o := &measure.KernelObject{ID: a.nextID, Type: typ, Name: name}
	binary.BigEndian.PutUint32(o.Tag[:4], a.nextID)
	o.Tag[7] = 0x5a
	return o
}

// answer records the load result of a pending measurement m at record mrec.
func (a *testAgent) answer(mrec uint64, m *measure.Measurement) *measure.LoadResult {
	a.tb.Helper()
	mb, err := m.MarshalBinary()
	if err != nil {
		a.tb.Fatal(err)
	}
	res := &measure.LoadResult{MeasurementRecord: mrec, MeasurementSHA256: sha256.Sum256(mb), Outcome: measure.OutcomeLoaded,
		Loader: a.object(31, "__loader"), Programs: a.programs(m)}
	rb, err := res.MarshalBinary()
	if err != nil {
		a.tb.Fatal(err)
	}
	a.append(cel.BPFLoadResult, rb)
	return res
}

// measurePending records a measurement with no result yet.
func (a *testAgent) measurePending(m *measure.Measurement) cel.Event {
	a.tb.Helper()
	mb, err := m.MarshalBinary()
	if err != nil {
		a.tb.Fatal(err)
	}
	return a.append(cel.BPFMeasurement, mb)
}

// unload records that object o of the load (or unmeasured record) rec left.
func (a *testAgent) unload(rec uint64, o measure.KernelObject) cel.Event {
	a.tb.Helper()
	u := measure.Unloaded{ID: o.ID, Tag: o.Tag, Name: o.Name, Record: rec}
	b, err := u.MarshalBinary()
	if err != nil {
		a.tb.Fatal(err)
	}
	return a.append(cel.BPFUnloaded, b)
}

// unmeasured records a program found in the kernel without a measured load.
func (a *testAgent) unmeasured(name string, typ uint32) (cel.Event, *measure.KernelProgram) {
	a.tb.Helper()
	o := a.object(typ, name)
	p := &measure.KernelProgram{Discovery: measure.DiscoveredObserved, ID: o.ID, Type: typ, Name: name, Tag: o.Tag, LoadTimeNS: 1e9}
	b, err := p.MarshalBinary()
	if err != nil {
		a.tb.Fatal(err)
	}
	return a.append(cel.BPFUnmeasured, b), p
}

// quote returns evidence for nonce: a quote of the journal's PCR in banks
// and the log from record from, taken under the journal's lock.
func (a *testAgent) quote(nonce []byte, from uint64, banks ...crypto.Hash) *evidence.Evidence {
	a.tb.Helper()
	if len(banks) == 0 {
		banks = []crypto.Hash{crypto.SHA256}
	}
	var ev *evidence.Evidence
	err := a.j.Snapshot(func(recs []cel.Record, _ map[crypto.Hash][]byte) error {
		q, err := a.dev.Quote(a.ak, evidence.QualifyingData(nonce), []int{a.j.PCR()}, banks)
		if err != nil {
			return err
		}
		ev = evidenceOf(a.ak, q, a.j.PCR())
		// From the record holding event from (a batch record's number is
		// its first event's).
		i := len(recs)
		for k := range recs {
			if next, err := recs[k].NextRecNum(); err == nil && next > from {
				i = k
				break
			}
		}
		from = 0
		if i < len(recs) {
			from = recs[i].RecNum
		} else if len(recs) > 0 {
			from, _ = recs[len(recs)-1].NextRecNum()
		}
		ev.Log, err = cel.Encode(recs[i:])
		ev.FromRecord = from
		return err
	})
	if err != nil {
		a.tb.Fatal(err)
	}
	return ev
}

func evidenceOf(ak *tpm.AK, q *tpm.Quote, pcr int) *evidence.Evidence {
	ev := &evidence.Evidence{AKPublic: ak.PublicArea(), Attest: q.Attest, Signature: q.Signature, PCR: pcr,
		Proof: evidence.InclusionProof{Size: 1}}
	for _, v := range q.PCRs {
		ev.PCRs = append(ev.PCRs, evidence.PCRValue{Bank: v.Bank, Index: v.Index, Digest: v.Digest})
	}
	return ev
}

// opts returns options that pin the agent's AK, for nonce.
func (a *testAgent) opts(nonce []byte) VerifyOptions {
	return VerifyOptions{Nonce: nonce, AKPublic: a.ak.PublicArea(), Banks: []crypto.Hash{crypto.SHA256}}
}

// freshNonce returns a distinct 32-byte nonce per call in one test.
func freshNonce(tb testing.TB, i int) []byte {
	tb.Helper()
	h := sha256.Sum256(fmt.Appendf(nil, "%s/%d", tb.Name(), i))
	return h[:]
}

// cloneEvidence deep-copies ev so a test can tamper with one field.
func cloneEvidence(ev *evidence.Evidence) *evidence.Evidence {
	c := *ev
	c.AKPublic = slices.Clone(ev.AKPublic)
	c.Attest = slices.Clone(ev.Attest)
	c.Signature = slices.Clone(ev.Signature)
	c.Log = slices.Clone(ev.Log)
	c.PCRs = nil
	for _, v := range ev.PCRs {
		v.Digest = slices.Clone(v.Digest)
		c.PCRs = append(c.PCRs, v)
	}
	return &c
}

// decodeLog decodes ev's log, failing the test on error.
func decodeLog(tb testing.TB, ev *evidence.Evidence) []cel.Record {
	tb.Helper()
	recs, err := cel.Decode(ev.Log)
	if err != nil {
		tb.Fatal(err)
	}
	for i := range recs {
		recs[i].Content = slices.Clone(recs[i].Content)
		for j := range recs[i].Digests {
			recs[i].Digests[j].Value = slices.Clone(recs[i].Digests[j].Value)
		}
		recs[i].Digests = slices.Clone(recs[i].Digests)
	}
	return recs
}

func encodeLog(tb testing.TB, recs []cel.Record) []byte {
	tb.Helper()
	b, err := cel.Encode(recs)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// wantCheck fails unless err is a *VerifyError for check c.
func wantCheck(tb testing.TB, err error, c Check) *VerifyError {
	tb.Helper()
	if err == nil {
		tb.Fatalf("verified; want %v", c)
	}
	var ve *VerifyError
	if !errors.As(err, &ve) {
		tb.Fatalf("error %v (%T) is not a *VerifyError", err, err)
	}
	if !errors.Is(err, c) {
		tb.Fatalf("error %v; want check %v", err, c)
	}
	return ve
}

// tpmtestOpenExtended opens the simulator and extends PCR 14 once, as
// firmware (shim) does before the OS.
func tpmtestOpenExtended(tb testing.TB) *tpm.Device {
	tb.Helper()
	dev := tpmtest.Open(tb, "sim")
	d := sha256.Sum256([]byte("MokList"))
	digests := map[crypto.Hash][]byte{}
	for _, h := range dev.Banks() {
		hh := h.New()
		hh.Write(d[:])
		digests[h] = hh.Sum(nil)
	}
	if err := dev.Extend(14, digests); err != nil {
		tb.Fatal(err)
	}
	return dev
}
