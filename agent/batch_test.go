package agent_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bpfattest/bpfattest/agent"
	"github.com/bpfattest/bpfattest/attest"
	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
	"github.com/bpfattest/bpfattest/measure"
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

// TestConcurrentLoadsShareCommits: loads from many clients, on a TPM whose
// extend takes 3 ms, run bpf() and record their results without a global
// lock, so their measurements and results share commits (batch records);
// with the events observer running meanwhile, no program of a load in
// flight is taken for an unmeasured one, every load's programs are in the
// verified inventory under their result record, and a strict policy
// (signed by the fixture signer, nothing unmeasured) finds nothing of
// ours to object to.
func TestConcurrentLoadsShareCommits(t *testing.T) {
	requireKernel(t)
	sw := tpmtest.StartSwtpm(t, tpmtest.SwtpmOptions{})
	proxy := tpmtest.StartSlowProxy(t, sw.SocketPath(), 3*time.Millisecond, tpmtest.CCPCRExtend)
	cfg := config(t)
	cfg.TPM = proxy.Spec()
	a := newAgent(t, cfg)
	ctx, cancel := context.WithCancel(t.Context())
	ran := make(chan error, 1)
	go func() { ran <- a.Run(ctx) }()
	defer func() {
		cancel()
		<-ran
	}()

	src := header(t, "counter", true)
	const clients, each = 16, 3
	var (
		mu    sync.Mutex
		resps []*agent.LoadResponse
		wg    sync.WaitGroup
	)
	for range clients {
		wg.Go(func() {
			for range each {
				resp, err := a.Load(t.Context(), agent.LoadRequest{Artifact: src})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				resps = append(resps, resp)
				mu.Unlock()
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
	shared := 0 // batch records carrying a load's measurement or result
	ours := map[uint32]uint64{}
	for _, r := range resps {
		for _, p := range r.Result.Programs {
			ours[p.ID] = r.ResultRecord
		}
	}
	for i := range recs {
		if err := recs[i].EachEvent(func(ev *cel.Event) error {
			if recs[i].Type == cel.Batch && (ev.Type == cel.BPFMeasurement || ev.Type == cel.BPFLoadResult) {
				shared++
			}
			if ev.Type == cel.BPFUnmeasured {
				kp, err := measure.ParseKernelProgram(ev.Content)
				if err != nil {
					return err
				}
				if _, ok := ours[kp.ID]; ok {
					return fmt.Errorf("event %d records program %d of a measured load as unmeasured", ev.RecNum, kp.ID)
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if shared == 0 {
		t.Fatalf("%d concurrent loads never shared a commit", clients*each)
	}
	res, viol := strictVerdict(t, a)
	present := map[uint32]uint64{}
	for _, p := range res.Programs() {
		for _, k := range p.Kernel {
			present[k.ID] = p.ResultRecord
		}
	}
	for id, rrec := range ours {
		if present[id] != rrec {
			t.Errorf("program %d of the load recorded at %d: verified present under %d", id, rrec, present[id])
		}
	}
	for _, v := range viol {
		for _, r := range resps {
			if v.Record == r.MeasurementRecord {
				t.Errorf("a violation names one of the concurrent loads: %v", v)
			}
		}
		if v.Rule == attest.RuleForbidUnmeasured {
			for id := range ours {
				if strings.Contains(v.Reason, fmt.Sprintf("program %d ", id)) {
					t.Errorf("a measured program is reported unmeasured: %v", v)
				}
			}
		}
	}
	t.Logf("%d loads, %d of their %d events in batch records, %d records", len(resps), shared, 2*len(resps), len(recs))
}
