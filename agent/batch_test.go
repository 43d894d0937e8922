package agent_test

import (
	"context"
	"sync"
	"testing"

	"github.com/bpfattest/bpfattest/attest"
	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
)

// TestBatchRecordsServed: appends that share commits put batch records in
// the agent's log; a reader asking from an event inside a batch gets the
// log from the batch record (Records, Subscribe, Quote, whose evidence
// names the batch record), the evidence verifies from record 0 and from
// the State, with every event accounted for, and a restarted agent
// rebuilds from the log and numbers on.
func TestBatchRecordsServed(t *testing.T) {
	cfg := config(t)
	cfg.TPM = tpmtest.StartSwtpm(t, tpmtest.SwtpmOptions{}).Spec() // survives the agent, as a TPM does
	a := newAgent(t, cfg)
	const goroutines, each = 16, 8
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				if err := a.AppendUnmeasured(uint32(1_000_000 + g*100 + i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	recs, err := a.Records(0)
	if err != nil {
		t.Fatal(err)
	}
	var b *cel.Record
	for i := range recs {
		if recs[i].Type == cel.Batch {
			b = &recs[i]
			break
		}
	}
	if b == nil {
		t.Fatalf("%d concurrent appends made no batch record (%d records)", goroutines*each, len(recs))
	}
	inside := b.RecNum + 1
	if got, err := a.Records(inside); err != nil || len(got) == 0 || got[0].RecNum != b.RecNum {
		t.Fatalf("Records(%d): %v", inside, err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	ch, err := a.Subscribe(ctx, inside)
	if err != nil {
		t.Fatal(err)
	}
	if first := <-ch; first.RecNum != b.RecNum || first.Type != cel.Batch {
		t.Fatalf("a stream from %d starts at record %d (%v), want batch %d", inside, first.RecNum, first.Type, b.RecNum)
	}
	cancel()

	id, err := a.Identity(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	verify := func(n []byte, from uint64, state *attest.State) *attest.Result {
		t.Helper()
		ev, err := a.Quote(t.Context(), n, from)
		if err != nil {
			t.Fatal(err)
		}
		want := from
		if from == inside {
			want = b.RecNum
		}
		if ev.FromRecord != want {
			t.Fatalf("quote from %d: evidence from %d, want %d", from, ev.FromRecord, want)
		}
		res, err := attest.Verify(ev, attest.VerifyOptions{Nonce: n, AKPublic: id.AKPublic, State: state, BootPCRs: attest.DefaultBootPCRs()})
		if err != nil {
			t.Fatalf("verify from %d: %v", from, err)
		}
		return res
	}
	full := verify(nonce(1), 0, nil)
	if got := len(full.Unmeasured()); got < goroutines*each {
		t.Fatalf("%d unmeasured programs verified, %d appended", got, goroutines*each)
	}
	// (The observer may record other processes' programs meanwhile: the
	// agent's count can only be ahead.)
	if n := full.NextRecord(); n > a.Status().Records {
		t.Fatalf("verified up to %d, the agent counts %d events", n, a.Status().Records)
	}
	// The evidence from inside a batch starts at the batch record; a
	// verifier with no State cannot use it (no boot header), one that
	// resumes at a record boundary can.
	ev, err := a.Quote(t.Context(), nonce(2), inside)
	if err != nil || ev.FromRecord != b.RecNum {
		t.Fatalf("quote from %d: %v, from %d", inside, err, ev.FromRecord)
	}
	inc := verify(nonce(3), full.NextRecord(), full.State())
	if inc.NextRecord() < full.NextRecord() {
		t.Fatalf("incremental: next %d, full %d", inc.NextRecord(), full.NextRecord())
	}

	// A new agent rebuilds from the log (event by event) and numbers on.
	next := a.Status().Records
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	a2 := newAgent(t, cfg)
	recs, err = a2.Records(next)
	if err != nil || len(recs) == 0 || recs[0].RecNum != next || recs[0].Type != cel.AgentStart {
		t.Fatalf("after restart: records from %d: %v, %v", next, recs, err)
	}
}
