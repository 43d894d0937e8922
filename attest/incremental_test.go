package attest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/go-tpm/tpm2"

	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/evidence"
	"github.com/bpfattest/bpfattest/measure"
)

// The incremental contract, as a property: a log built by any sequence of
// agent events, quoted at any points, verifies from record 0 and from the
// previous verification's State to the same Result and byte-identical
// States; a log that fails one way fails the other way with the same
// check; verifying twice from one State gives the same answer and leaves
// that State as it was. The quotes are made and signed in software (a P-256
// key behind a TPMT_PUBLIC taken from captured evidence), so that a fuzzer
// runs thousands of logs a second.

// softAgent is an agent whose log and PCR live in memory.
type softAgent struct {
	key     *ecdsa.PrivateKey
	akPub   []byte
	banks   []crypto.Hash
	recs    []cel.Record
	pcr     *cel.Replayer
	clock   uint64
	restart uint32

	// What the generator knows of the kernel, to write records that
	// mostly make sense.
	measurements [][]byte               // encodings of the fixture measurements
	pending      []pendingLoad          // measurements without a result
	loads        []softLoad             // results of loads that stood
	unmeasured   []measure.KernelObject // unmeasured programs recorded (Name holds the record number)
	nextID       uint32
}

type pendingLoad struct {
	rec uint64
	m   int // index into measurements
}

type softLoad struct {
	rrec    uint64
	objects []measure.KernelObject // the loader first
	gone    []bool
}

const softPCR = 14
const softResetCount = 7

// softAK returns a P-256 key and a TPMT_PUBLIC for it: the captured ECC
// evidence's AK public area (a restricted signing key) with the key's point.
func softAK(tb testing.TB) (*ecdsa.PrivateKey, []byte) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	c := readCaptured(tb, "testdata/evidence/scenario-ecc-p256.json")
	pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](c.Evidence.AKPublic)
	if err != nil {
		tb.Fatal(err)
	}
	raw, err := key.PublicKey.Bytes() // 04 || X || Y
	if err != nil {
		tb.Fatal(err)
	}
	pub.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
		X: tpm2.TPM2BECCParameter{Buffer: raw[1:33]}, Y: tpm2.TPM2BECCParameter{Buffer: raw[33:]}})
	return key, tpm2.Marshal(pub)
}

func newSoftAgent(tb testing.TB, key *ecdsa.PrivateKey, akPub []byte, measurements [][]byte) *softAgent {
	tb.Helper()
	a := &softAgent{key: key, akPub: akPub, banks: []crypto.Hash{crypto.SHA256, crypto.SHA384}, clock: 1000,
		measurements: measurements, nextID: 100}
	start := map[crypto.Hash][]byte{}
	for _, h := range a.banks {
		start[h] = make([]byte, h.Size())
	}
	var err error
	if a.pcr, err = cel.NewReplayer(start); err != nil {
		tb.Fatal(err)
	}
	bi := cel.BootInfo{BootID: testBootID, ResetCount: softResetCount, Clock: a.clock, PCR: softPCR, Start: start}
	a.add(tb, cel.BootHeader, mustMarshal(tb, bi.MarshalBinary))
	return a
}

func mustMarshal(tb testing.TB, f func() ([]byte, error)) []byte {
	tb.Helper()
	b, err := f()
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// add appends a record and extends the in-memory PCR with it.
func (a *softAgent) add(tb testing.TB, t cel.ContentType, content []byte) uint64 {
	tb.Helper()
	rn := uint64(len(a.recs))
	r, err := cel.NewRecord(rn, softPCR, a.banks, t, content)
	if err != nil {
		tb.Fatal(err)
	}
	if err := a.pcr.Add(&r); err != nil {
		tb.Fatal(err)
	}
	a.recs = append(a.recs, r)
	return rn
}

// quote returns evidence with the log from record from, for nonce, signed
// as a TPM would sign a quote of the SHA-256 bank of the PCR.
func (a *softAgent) quote(tb testing.TB, nonce []byte, from uint64) *evidence.Evidence {
	tb.Helper()
	val := a.pcr.Values()[crypto.SHA256]
	att := binary.BigEndian.AppendUint32(nil, tpmGeneratedValue)
	att = binary.BigEndian.AppendUint16(att, tpmSTAttestQuote)
	att = binary.BigEndian.AppendUint16(att, 34) // qualifiedSigner: a name
	att = binary.BigEndian.AppendUint16(att, 0x000b)
	att = append(att, make([]byte, 32)...)
	qd := evidence.QualifyingData(nonce)
	att = binary.BigEndian.AppendUint16(att, uint16(len(qd)))
	att = append(att, qd...)
	att = binary.BigEndian.AppendUint64(att, a.clock)
	att = binary.BigEndian.AppendUint32(att, softResetCount)
	att = binary.BigEndian.AppendUint32(att, a.restart)
	att = append(att, 1)                               // safe
	att = binary.BigEndian.AppendUint64(att, 0x2024)   // firmwareVersion
	att = binary.BigEndian.AppendUint32(att, 1)        // one selection
	att = append(att, 0x00, 0x0b, 3, 0x00, 0x40, 0x00) // sha256: PCR 14
	d := sha256.Sum256(val)
	att = binary.BigEndian.AppendUint16(att, 32)
	att = append(att, d[:]...)
	digest := sha256.Sum256(att)
	r, s, err := ecdsa.Sign(rand.Reader, a.key, digest[:])
	if err != nil {
		tb.Fatal(err)
	}
	sig := binary.BigEndian.AppendUint16(nil, tpmAlgECDSA)
	sig = binary.BigEndian.AppendUint16(sig, 0x000b)
	for _, v := range []*big.Int{r, s} {
		b := v.FillBytes(make([]byte, 32))
		sig = binary.BigEndian.AppendUint16(sig, 32)
		sig = append(sig, b...)
	}
	log, err := cel.Encode(a.recs[from:])
	if err != nil {
		tb.Fatal(err)
	}
	return &evidence.Evidence{AKPublic: a.akPub, Attest: att, Signature: sig, PCR: softPCR, Log: log, FromRecord: from,
		PCRs: []evidence.PCRValue{{Bank: crypto.SHA256, Index: softPCR, Digest: val}}, Proof: evidence.InclusionProof{Size: 1}}
}

// pick returns an index below n from the next byte of the program.
func pick(prog *[]byte, n int) int {
	if n <= 0 {
		return 0
	}
	if len(*prog) == 0 {
		return 0
	}
	v := int((*prog)[0])
	*prog = (*prog)[1:]
	return v % n
}

func (a *softAgent) id() uint32 { a.nextID++; return a.nextID }

func tagOf(id uint32) [8]byte { return [8]byte{0xaa, byte(id), byte(id >> 8), 1} }

// step appends the records of one event read from prog, and reports
// whether the event is a quote.
func (a *softAgent) step(tb testing.TB, prog *[]byte) (quote bool) {
	tb.Helper()
	switch op := pick(prog, 12); op {
	case 0, 1: // a load measured
		m := pick(prog, len(a.measurements))
		a.pending = append(a.pending, pendingLoad{a.add(tb, cel.BPFMeasurement, a.measurements[m]), m})
	case 2, 3: // the kernel's answer to a pending load
		if len(a.pending) == 0 {
			return false
		}
		i := pick(prog, len(a.pending))
		p := a.pending[i]
		a.pending = append(a.pending[:i], a.pending[i+1:]...)
		mm, err := measure.ParseMeasurement(a.measurements[p.m])
		if err != nil {
			tb.Fatal(err)
		}
		res := measure.LoadResult{MeasurementRecord: p.rec, MeasurementSHA256: sha256.Sum256(a.measurements[p.m])}
		outcome := pick(prog, 6)
		switch outcome {
		case 0, 1, 2: // loaded; the third kind disagrees with the measurement
			res.Outcome = measure.OutcomeLoaded
			res.Loader = &measure.KernelObject{ID: a.id(), Type: 31, Name: "__loader.prog"}
			res.Loader.Tag = tagOf(res.Loader.ID)
			for _, mp := range mm.Programs {
				o := measure.KernelObject{ID: a.id(), Type: mp.Type, Tag: mp.KernelTag, Name: measure.KernelName(mp.Name)}
				if outcome == 2 {
					o.Name = "other"
				}
				if o.Tag == ([8]byte{}) {
					o.Tag = tagOf(o.ID)
				}
				res.Programs = append(res.Programs, o)
			}
		case 3:
			res.Outcome, res.Reason = measure.OutcomeRefused, "policy"
		case 4:
			res.Outcome, res.Step, res.Errno = measure.OutcomeKernelError, "prog_load", 1
		case 5:
			res.Outcome, res.Reason = measure.OutcomeAborted, "interrupted"
		}
		rrec := a.add(tb, cel.BPFLoadResult, mustMarshal(tb, res.MarshalBinary))
		if res.Outcome == measure.OutcomeLoaded {
			objs := append([]measure.KernelObject{*res.Loader}, res.Programs...)
			a.loads = append(a.loads, softLoad{rrec: rrec, objects: objs, gone: make([]bool, len(objs))})
		}
	case 4, 5: // an object of a load leaves the kernel (or, rarely, one already gone)
		if len(a.loads) == 0 {
			return false
		}
		l := &a.loads[pick(prog, len(a.loads))]
		j := pick(prog, len(l.objects))
		o := l.objects[j]
		u := measure.Unloaded{ID: o.ID, Tag: o.Tag, Record: l.rrec}
		if l.gone[j] && pick(prog, 4) != 0 {
			return false // unloaded twice fails verification: rarely
		}
		l.gone[j] = true
		a.add(tb, cel.BPFUnloaded, mustMarshal(tb, u.MarshalBinary))
	case 6: // a program nobody measured
		id := a.id()
		p := measure.KernelProgram{Discovery: measure.DiscoveredEvent, ID: id, Type: 2, Tag: tagOf(id), LoadTimeNS: 5, PID: 77, Comm: "x"}
		rec := a.add(tb, cel.BPFUnmeasured, mustMarshal(tb, p.MarshalBinary))
		a.unmeasured = append(a.unmeasured, measure.KernelObject{ID: id, Tag: p.Tag, Type: uint32(rec)})
	case 7: // an unmeasured program leaves
		if len(a.unmeasured) == 0 {
			return false
		}
		i := pick(prog, len(a.unmeasured))
		o := a.unmeasured[i]
		a.unmeasured = append(a.unmeasured[:i], a.unmeasured[i+1:]...)
		u := measure.Unloaded{ID: o.ID, Tag: o.Tag, Record: uint64(o.Type)}
		a.add(tb, cel.BPFUnloaded, mustMarshal(tb, u.MarshalBinary))
	case 8: // programs that came and went, or lost events
		if pick(prog, 2) == 0 {
			t := measure.Transient{Programs: []measure.TransientProgram{{ID: a.id(), Tag: tagOf(9), PID: 3}}}
			a.add(tb, cel.BPFTransient, mustMarshal(tb, t.MarshalBinary))
		} else {
			e := measure.EventsLost{Count: uint64(pick(prog, 50) + 1), TimeNS: 9}
			a.add(tb, cel.BPFEventsLost, mustMarshal(tb, e.MarshalBinary))
		}
	case 9: // an agent (re)start, after a crash that it may have rolled a result forward for
		if pick(prog, 2) == 0 {
			a.restart++
		}
		if len(a.loads) > 0 && pick(prog, 3) == 0 {
			l := a.loads[pick(prog, len(a.loads))]
			ri := cel.RecoveryInfo{Action: cel.RolledForward, RecNum: l.rrec, Offset: 1, Length: 1, Detail: "rolled forward"}
			a.add(tb, cel.Recovery, mustMarshal(tb, ri.MarshalBinary))
		}
		as := cel.AgentStartInfo{Version: "soft", PID: 5, ClockInfo: cel.ClockInfo{Clock: a.clock, ResetCount: softResetCount, RestartCount: a.restart, Safe: true},
			Observer: cel.ObserverEvents}
		a.add(tb, cel.AgentStart, mustMarshal(tb, as.MarshalBinary))
	default: // a quote
		a.clock += uint64(pick(prog, 100))
		return true
	}
	return false
}

// checkIncremental runs prog's events and, at each quote, verifies the
// whole log and the log from the previous State, and compares. It returns
// how many quotes it compared.
func checkIncremental(t *testing.T, key *ecdsa.PrivateKey, akPub []byte, measurements [][]byte, prog []byte) (compared int) {
	a := newSoftAgent(t, key, akPub, measurements)
	var state *State
	for q := 0; len(prog) > 0 && q < 12; {
		if !a.step(t, &prog) {
			continue
		}
		q++
		nonce := sha256.Sum256(fmt.Appendf(nil, "%x/%d", prog, q))
		opts := VerifyOptions{Nonce: nonce[:], AKPublic: akPub}
		full := a.quote(t, nonce[:], 0)
		want, wantErr := Verify(full, opts)
		if state == nil {
			if wantErr != nil {
				return compared // a first log that does not verify: nothing to compare
			}
			state = want.State()
			checkOwnsBytes(t, fmt.Sprintf("quote %d, full", q), want, full)
			continue
		}
		if q%3 == 0 {
			state = roundTripState(t, state, q%2 == 0)
		}
		before := mustMarshal(t, state.MarshalBinary)
		inc := cloneEvidence(full)
		from := state.NextRecord()
		if inc.Log, _ = cel.Encode(a.recs[from:]); inc.Log == nil {
			inc.Log = []byte{}
		}
		inc.FromRecord = from
		opts.State = state
		got, gotErr := Verify(inc, opts)
		again, againErr := Verify(inc, opts)
		if !bytes.Equal(before, mustMarshal(t, state.MarshalBinary)) {
			t.Fatalf("quote %d: verifying from a State changed it", q)
		}
		switch {
		case wantErr != nil || gotErr != nil:
			var we, ge *VerifyError
			if !errors.As(wantErr, &we) || !errors.As(gotErr, &ge) || we.Check != ge.Check {
				t.Fatalf("quote %d: full verification: %v; incremental from %d: %v", q, wantErr, from, gotErr)
			}
			if againErr == nil || !errors.Is(againErr, ge.Check) {
				t.Fatalf("quote %d: a second incremental verification from the same State: %v, first %v", q, againErr, gotErr)
			}
			return compared + 1 // the log is broken from here on
		case againErr != nil:
			t.Fatalf("quote %d: a second incremental verification from the same State: %v", q, againErr)
		}
		checkOwnsBytes(t, fmt.Sprintf("quote %d, incremental from %d", q, from), got, inc)
		compareInventories(t, fmt.Sprintf("quote %d, full vs incremental from %d", q, from), want, got)
		compareInventories(t, fmt.Sprintf("quote %d, incremental twice", q), got, again)
		state = got.State()
		compared++
	}
	return compared
}

// checkOwnsBytes overwrites the log of ev, which res was verified from,
// and checks that res's State encodes as before: a State keeps copies of
// the records it keeps, never the caller's bytes (the inventory borrows
// them only until its edit is done).
func checkOwnsBytes(t *testing.T, what string, res *Result, ev *evidence.Evidence) {
	t.Helper()
	before := mustMarshal(t, res.State().MarshalBinary)
	for i := range ev.Log {
		ev.Log[i] = 0xa5
	}
	if !bytes.Equal(before, mustMarshal(t, res.State().MarshalBinary)) {
		t.Fatalf("%s: overwriting the evidence's log changed the State", what)
	}
}

// compareInventories compares what two Results say is in the kernel, the
// violations of a policy that reads only that, and their States' bytes.
func compareInventories(t *testing.T, what string, want, got *Result) {
	t.Helper()
	sameEvents(t, what, want, got)
	if diff := cmp.Diff(want.PCRValues(), got.PCRValues(), cmpopts.EquateEmpty()); diff != "" {
		t.Fatalf("%s: pcr values differ (-want +got):\n%s", what, diff)
	}
	if wb, gb := mustMarshal(t, want.State().MarshalBinary), mustMarshal(t, got.State().MarshalBinary); !bytes.Equal(wb, gb) {
		t.Fatalf("%s: states differ: %d and %d bytes", what, len(wb), len(gb))
	}
}

// inventoryViolations are the violations of rules about what is in the
// kernel (the history's rules, and the binding rule for loads gone in the
// range, see the verified range, which differs).
func inventoryViolations(r *Result, p *Policy) []Violation {
	var out []Violation
	for _, v := range Evaluate(r, p) {
		switch v.Rule {
		case RuleRequireSigned, RuleForbidUnmeasured, RuleSigners:
			out = append(out, v)
		}
	}
	return out
}

// incrementalSeeds returns the AK and the fixture measurements the
// property uses.
func incrementalSeeds(tb testing.TB) (*ecdsa.PrivateKey, []byte, [][]byte) {
	tb.Helper()
	key, akPub := softAK(tb)
	var ms [][]byte
	for _, h := range []string{"counter.signed.lskel.h", "pair.lskel.h", "rocfg.signed.lskel.h"} {
		m := fixtureMeasurement(tb, h, measure.KernelCheckUnavailable)
		ms = append(ms, mustMarshal(tb, m.MarshalBinary))
	}
	return key, akPub, ms
}

// TestIncrementalProperty runs random event sequences.
func TestIncrementalProperty(t *testing.T) {
	key, akPub, ms := incrementalSeeds(t)
	rng := mrand.New(mrand.NewPCG(15, 2))
	compared := 0
	for i := range 16 {
		prog := make([]byte, 100+rng.IntN(400))
		for j := range prog {
			prog[j] = byte(rng.Uint32())
		}
		t.Run(fmt.Sprint(i), func(t *testing.T) { compared += checkIncremental(t, key, akPub, ms, prog) })
	}
	// Random programs break their logs now and then (an object unloaded
	// twice); most quotes must still be compared on logs that verify.
	t.Logf("%d quotes compared", compared)
	if compared < 80 {
		t.Errorf("%d quotes compared in 16 runs", compared)
	}
}

// FuzzIncremental: any event sequence, quoted anywhere, verifies the same
// from record 0 and from the previous State.
func FuzzIncremental(f *testing.F) {
	key, akPub, ms := incrementalSeeds(f)
	for _, seed := range []string{
		"\x00\x00\x02\x00\x00\x0b\x04\x00\x01\x0b\x06\x0b\x07\x00\x0b",
		"\x00\x01\x00\x00\x02\x00\x03\x02\x01\x05\x0b\x09\x00\x00\x00\x0b\x04\x00\x00\x04\x00\x00\x0b",
		"\x01\x02\x01\x00\x00\x0b\x09\x01\x00\x00\x08\x00\x08\x01\x05\x0b\x04\x00\x01\x04\x00\x01\x00\x0b",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, prog []byte) {
		if len(prog) > 2000 {
			return
		}
		checkIncremental(t, key, akPub, ms, prog)
	})
}

// TestIncrementalSeedsVerify guards the property against a generator
// that never gets past the first quote: a run of many events verifies
// incrementally several times.
func TestIncrementalSeedsVerify(t *testing.T) {
	key, akPub, ms := incrementalSeeds(t)
	a := newSoftAgent(t, key, akPub, ms)
	prog := []byte{}
	for i := range 40 {
		prog = append(prog, 0, byte(i), 2, 0, byte(i%3), 4, 0, 1, 6, 8, byte(i), 11, 0)
	}
	var state *State
	verified := 0
	for len(prog) > 0 {
		if !a.step(t, &prog) {
			continue
		}
		nonce := sha256.Sum256(fmt.Appendf(nil, "seed %d", verified))
		ev := a.quote(t, nonce[:], 0)
		opts := VerifyOptions{Nonce: nonce[:], AKPublic: akPub}
		if state != nil {
			ev.Log, _ = cel.Encode(a.recs[state.NextRecord():])
			ev.FromRecord, opts.State = state.NextRecord(), state
		}
		res, err := Verify(ev, opts)
		if err != nil {
			t.Fatalf("verification %d: %v", verified, err)
		}
		state = res.State()
		verified++
	}
	if verified < 20 || state.inv.len() < 20 {
		t.Fatalf("%d verifications, %d live records at the end", verified, state.inv.len())
	}
}
