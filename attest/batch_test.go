package attest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/evidence"
)

// batchedLog is a softAgent's log with its records (after the boot header)
// grouped into batch records as group commit would write them: the
// records appended between two quotes, in runs of 1 to 6 (a run of one
// stays a plain record), so that every quote ends on a record boundary in
// both logs.
type batchedLog struct {
	recs    []cel.Record
	pcr     *cel.Replayer
	grouped int // plain records taken so far
}

func newBatchedLog(tb testing.TB, a *softAgent) *batchedLog {
	tb.Helper()
	start := map[crypto.Hash][]byte{}
	for _, h := range a.banks {
		start[h] = make([]byte, h.Size())
	}
	rp, err := cel.NewReplayer(start)
	if err != nil {
		tb.Fatal(err)
	}
	b := &batchedLog{pcr: rp}
	b.add(tb, a.recs[0])
	b.grouped = 1
	return b
}

func (b *batchedLog) add(tb testing.TB, r cel.Record) {
	tb.Helper()
	if err := b.pcr.Add(&r); err != nil {
		tb.Fatal(err)
	}
	b.recs = append(b.recs, r)
}

// catchUp groups the records a has appended since the last call.
func (b *batchedLog) catchUp(tb testing.TB, a *softAgent, rng *mrand.Rand) {
	tb.Helper()
	for b.grouped < len(a.recs) {
		n := min(1+rng.IntN(6), len(a.recs)-b.grouped)
		run := a.recs[b.grouped : b.grouped+n]
		b.grouped += n
		if n == 1 {
			b.add(tb, run[0])
			continue
		}
		evs := make([]cel.Event, n)
		for i, r := range run {
			evs[i] = cel.Event{Type: r.Type, Content: r.Content}
		}
		content, err := cel.EncodeBatch(evs)
		if err != nil {
			tb.Fatal(err)
		}
		rec, err := cel.NewRecord(run[0].RecNum, softPCR, a.banks, cel.Batch, content)
		if err != nil {
			tb.Fatal(err)
		}
		b.add(tb, rec)
	}
}

// from returns the records from the one numbered rn on, which must start
// a record.
func (b *batchedLog) from(tb testing.TB, rn uint64) []cel.Record {
	tb.Helper()
	for i := range b.recs {
		if b.recs[i].RecNum == rn {
			return b.recs[i:]
		}
	}
	if rn == b.pcr.Next() {
		return nil
	}
	tb.Fatalf("no batched record starts at %d", rn)
	return nil
}

// quote is a's quote of the batched log's PCR value, with its records
// from rn on.
func (b *batchedLog) quote(tb testing.TB, a *softAgent, nonce []byte, rn uint64) *evidence.Evidence {
	tb.Helper()
	view := *a
	view.recs, view.pcr = b.recs, b.pcr
	ev := view.quote(tb, nonce, 0)
	ev.Log = encodeLog(tb, b.from(tb, rn))
	ev.FromRecord = rn
	return ev
}

// checkBatched runs prog's events and, at each quote, verifies the plain
// log from record 0, the same events written with batch records from
// record 0, and the batched log from the batched verification's previous
// State, and checks all three say the same: inventory, violations,
// history, position; or fail with the same check. It returns how many
// quotes it compared.
func checkBatched(t *testing.T, key *ecdsa.PrivateKey, akPub []byte, measurements [][]byte, prog []byte, seed uint64) (compared int) {
	a := newSoftAgent(t, key, akPub, measurements)
	b := newBatchedLog(t, a)
	rng := mrand.New(mrand.NewPCG(seed, 15))
	var state *State
	for q := 0; len(prog) > 0 && q < 12; {
		if !a.step(t, &prog) {
			continue
		}
		q++
		b.catchUp(t, a, rng)
		nonce := sha256.Sum256(fmt.Appendf(nil, "%x/%d", prog, q))
		opts := VerifyOptions{Nonce: nonce[:], AKPublic: akPub}
		want, wantErr := Verify(a.quote(t, nonce[:], 0), opts)
		full, fullErr := Verify(b.quote(t, a, nonce[:], 0), opts)
		var inc *Result
		incErr := fullErr
		from := uint64(0)
		if state != nil {
			from = state.NextRecord()
			o := opts
			o.State = state
			inc, incErr = Verify(b.quote(t, a, nonce[:], from), o)
		}
		if wantErr != nil || fullErr != nil || incErr != nil {
			var we, fe, ie *VerifyError
			if !errors.As(wantErr, &we) || !errors.As(fullErr, &fe) || !errors.As(incErr, &ie) || we.Check != fe.Check || we.Check != ie.Check {
				t.Fatalf("quote %d: plain: %v; batched: %v; batched from %d: %v", q, wantErr, fullErr, from, incErr)
			}
			return compared + 1 // the log is broken from here on
		}
		sameEvents(t, fmt.Sprintf("quote %d, plain vs batched", q), want, full)
		if inc != nil {
			sameEvents(t, fmt.Sprintf("quote %d, plain vs batched from %d", q, from), want, inc)
			compareInventories(t, fmt.Sprintf("quote %d, batched: full vs from %d", q, from), full, inc)
		}
		state = full.State()
		if q%3 == 0 {
			state = roundTripState(t, state, q%2 == 0)
		}
		compared++
	}
	return compared
}

// sameEvents compares two Results of the same events written in different
// records: everything compareInventories compares but the PCR values and
// the States' bytes, which hold them.
func sameEvents(t *testing.T, what string, want, got *Result) {
	t.Helper()
	pol := &Policy{RequireSigned: true, ForbidUnmeasured: true, Signers: []SignerRule{{Subject: "CN=nobody"}}}
	for name, pair := range map[string][2]any{
		"programs":   {want.Programs(), got.Programs()},
		"pending":    {want.Pending(), got.Pending()},
		"failed":     {want.Failed(), got.Failed()},
		"unmeasured": {want.Unmeasured(), got.Unmeasured()},
		"recoveries": {want.Recoveries(), got.Recoveries()},
		"agent":      {want.Agent(), got.Agent()},
		"position":   {[]any{want.BootID(), want.Clock(), want.NextRecord()}, []any{got.BootID(), got.Clock(), got.NextRecord()}},
		"violations": {inventoryViolations(want, pol), inventoryViolations(got, pol)},
	} {
		if diff := cmp.Diff(pair[0], pair[1], cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("%s: %s differ (-want +got):\n%s", what, name, diff)
		}
	}
}

// TestBatchedLogVerifiesAsPlain: random event sequences written one event
// per record and with batch records verify to the same inventory,
// violations, history and position, also from a State taken in the
// middle of the batched log, and fail with the same check when they fail.
func TestBatchedLogVerifiesAsPlain(t *testing.T) {
	key, akPub, ms := incrementalSeeds(t)
	rng := mrand.New(mrand.NewPCG(15, 3))
	compared := 0
	for i := range 16 {
		prog := make([]byte, 100+rng.IntN(400))
		for j := range prog {
			prog[j] = byte(rng.Uint32())
		}
		t.Run(fmt.Sprint(i), func(t *testing.T) { compared += checkBatched(t, key, akPub, ms, prog, uint64(i)) })
	}
	t.Logf("%d quotes compared", compared)
	if compared < 80 {
		t.Errorf("%d quotes compared in 16 runs", compared)
	}
}

// TestBatchedSequence: a record number that no batch explains (the record
// after a batch numbered as if the batch were one record, or past its
// events) is a RecordGap, from record 0 and from a State.
func TestBatchedSequence(t *testing.T) {
	key, akPub, ms := incrementalSeeds(t)
	a := newSoftAgent(t, key, akPub, ms)
	prog := []byte{0, 0, 0, 1, 6, 8, 0, 0, 0, 2, 6}
	for len(prog) > 0 {
		a.step(t, &prog)
	}
	if len(a.recs) < 4 {
		t.Fatalf("%d records", len(a.recs))
	}
	// All events but the boot header and the last in one batch.
	b := newBatchedLog(t, a)
	evs := []cel.Event{}
	for _, r := range a.recs[1 : len(a.recs)-1] {
		evs = append(evs, cel.Event{Type: r.Type, Content: r.Content})
	}
	content, err := cel.EncodeBatch(evs)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := cel.NewRecord(1, softPCR, a.banks, cel.Batch, content)
	if err != nil {
		t.Fatal(err)
	}
	b.add(t, rec)
	nonce := sha256.Sum256([]byte("sequence"))
	opts := VerifyOptions{Nonce: nonce[:], AKPublic: akPub}
	res, err := Verify(b.quote(t, a, nonce[:], 0), opts)
	if err != nil {
		t.Fatal(err)
	}
	state := res.State()
	last := a.recs[len(a.recs)-1]
	if state.NextRecord() != last.RecNum {
		t.Fatalf("state continues at %d, the last event is %d", state.NextRecord(), last.RecNum)
	}
	for _, tc := range []struct {
		name string
		rn   uint64
		ok   bool
	}{
		{"as the batch's events say", last.RecNum, true},
		{"as if the batch were one record", 2, false},
		{"past the batch's events", last.RecNum + 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := cel.NewRecord(tc.rn, softPCR, a.banks, last.Type, last.Content)
			if err != nil {
				t.Fatal(err)
			}
			// The PCR is extended with it as a TPM would: the quote is
			// genuine, only the numbering is wrong.
			d := map[crypto.Hash][]byte{}
			for _, x := range r.Digests {
				d[x.Hash] = x.Value
			}
			view := *a
			view.recs = append(append([]cel.Record(nil), b.recs...), r)
			view.pcr = extendRaw(t, b.pcr, d)
			ev := view.quote(t, nonce[:], 0)
			_, err = Verify(ev, opts)
			ev.Log, ev.FromRecord = encodeLog(t, view.recs[len(view.recs)-1:]), state.NextRecord()
			o := opts
			o.State = state
			_, incErr := Verify(ev, o)
			if tc.ok {
				if err != nil || incErr != nil {
					t.Fatalf("from 0: %v; from the state: %v", err, incErr)
				}
				return
			}
			wantCheck(t, err, RecordGap)
			wantCheck(t, incErr, RecordGap)
		})
	}
}

// extendRaw returns a Replayer whose values are rp's extended with d, as
// TPM2_PCR_Extend would, whatever record carried d.
func extendRaw(tb testing.TB, rp *cel.Replayer, d map[crypto.Hash][]byte) *cel.Replayer {
	tb.Helper()
	vals := rp.Values()
	for h, v := range vals {
		x := h.New()
		x.Write(v)
		x.Write(d[h])
		vals[h] = x.Sum(nil)
	}
	out, err := cel.NewReplayer(vals)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}
