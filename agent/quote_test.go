package agent_test

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/bpfattest/bpfattest/agent"
	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/evidence"
	"github.com/bpfattest/bpfattest/internal/bpfsys"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
	"github.com/bpfattest/bpfattest/measure"
)

// TestQuoteReplays: after a load, the evidence's log replays to the quoted
// PCR values in every bank, the quote binds the nonce, and a slice from a
// later record carries exactly the records from there on.
func TestQuoteReplays(t *testing.T) {
	tpmtest.ForEach(t, func(t *testing.T, tg tpmtest.Target) {
		cfg := config(t)
		cfg.TPM = tg.Spec
		a := newAgent(t, cfg)
		resp, err := a.Load(t.Context(), agent.LoadRequest{Artifact: header(t, "counter", true)})
		if err != nil {
			t.Fatal(err)
		}
		ev, err := a.Quote(t.Context(), nonce(1), 0)
		if err != nil {
			t.Fatal(err)
		}
		recs, extra := checkEvidence(t, a, ev)
		if !bytes.Equal(extra, evidence.QualifyingData(nonce(1))) {
			t.Errorf("quote extra data %x, want the qualifying data of the nonce", extra)
		}
		if recs[0].Type != cel.BootHeader || uint64(len(recs)) <= resp.ResultRecord {
			t.Errorf("log slice from 0 has %d records, first %v", len(recs), recs[0].Type)
		}
		id, err := a.Identity(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(id.AKPublic, ev.AKPublic) || id.PCR != ev.PCR || len(nonSHA1(id.Banks))*11 != len(ev.PCRs) {
			t.Errorf("identity %+v does not match evidence", id)
		}

		ev2, err := a.Quote(t.Context(), nonce(2), resp.MeasurementRecord)
		if err != nil {
			t.Fatal(err)
		}
		recs2, _ := checkEvidence(t, a, ev2)
		if ev2.FromRecord != resp.MeasurementRecord || recs2[0].Type != cel.BPFMeasurement {
			t.Errorf("slice from %d starts with %v", ev2.FromRecord, recs2[0].Type)
		}
	})
}

// TestQuoteErrors: a bad nonce is ErrNonce (and evidence.ErrNonce), a start
// past the log's end is ErrInvalid.
func TestQuoteErrors(t *testing.T) {
	a := newAgent(t, config(t))
	if _, err := a.Quote(t.Context(), []byte("short"), 0); !errors.Is(err, agent.ErrNonce) || !errors.Is(err, evidence.ErrNonce) {
		t.Errorf("short nonce: %v", err)
	}
	if _, err := a.Quote(t.Context(), nonce(1), 1<<40); !errors.Is(err, agent.ErrInvalid) {
		t.Errorf("from past the end: %v", err)
	}
	if _, err := a.Records(1 << 40); !errors.Is(err, agent.ErrInvalid) {
		t.Errorf("records past the end: %v", err)
	}
}

// TestQuoteLogLimit: records past MaxQuoteLog are refused with
// ErrLogTooLarge before the TPM is asked; a quote of the tail is served.
func TestQuoteLogLimit(t *testing.T) {
	cfg := config(t)
	cfg.MaxQuoteLog = 64 // less than one record
	a := newAgent(t, cfg)
	n := a.Status().Records
	if _, err := a.Quote(t.Context(), nonce(1), 0); !errors.Is(err, agent.ErrLogTooLarge) {
		t.Fatalf("quote of %d records past a 64-byte limit: %v, want ErrLogTooLarge", n, err)
	}
	if m := a.Metrics().Snapshot(); m.Quotes != 0 {
		t.Errorf("%d TPM quotes made for a refused request", m.Quotes)
	}
	ev, err := a.Quote(t.Context(), nonce(2), n)
	if err != nil {
		t.Fatalf("quote of the tail: %v", err)
	}
	// The sweep before the quote may log programs other processes loaded
	// meanwhile (the kernel is shared); nothing else may follow record n.
	recs, err := cel.Decode(ev.Log)
	if err != nil {
		t.Fatal(err)
	}
	if ev.FromRecord != n {
		t.Errorf("tail quote from %d, want %d", ev.FromRecord, n)
	}
	for _, r := range recs {
		observer := r.Type == cel.BPFUnmeasured || r.Type == cel.BPFUnloaded || r.Type == cel.BPFTransient || r.Type == cel.BPFEventsLost
		if r.RecNum < n || !observer {
			t.Errorf("tail quote from %d carries record %d of type %v", n, r.RecNum, r.Type)
		}
	}
}

// TestQuoteCoalesced: requests that arrive while the TPM is busy share one
// quote. A load held inside its first bpf() step keeps the pipeline lock,
// so the first quote batch waits in its sweep while every other request
// joins the next batch: eight requests, at most two TPM quotes. Each answer
// carries a proof that places its nonce under the quote's qualifying data.
func TestQuoteCoalesced(t *testing.T) {
	const n = 8
	cfg := config(t)
	entered, release := make(chan struct{}), make(chan struct{})
	agent.SetStepHook(&cfg, func(s bpfsys.Step) error {
		if s == bpfsys.MapCreate {
			close(entered)
			<-release
		}
		return nil
	})
	a := newAgent(t, cfg)
	loadDone := make(chan error)
	go func() {
		_, err := a.Load(t.Context(), agent.LoadRequest{Artifact: header(t, "counter", true)})
		loadDone <- err
	}()
	<-entered

	evs := make([]*evidence.Evidence, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { evs[i], errs[i] = a.Quote(t.Context(), nonce(i), 0) })
	}
	waitQuoteRequests(t, a, n)
	close(release)
	if err := <-loadDone; err != nil {
		t.Fatal(err)
	}
	wg.Wait()

	batches := map[string][][]byte{}           // attest bytes -> nonces by proof index
	batchEv := map[string]*evidence.Evidence{} // attest bytes -> one evidence of that quote
	for i, ev := range evs {
		if errs[i] != nil {
			t.Fatalf("quote %d: %v", i, errs[i])
		}
		checkEvidence(t, a, ev)
		k := string(ev.Attest)
		batchEv[k] = ev
		if batches[k] == nil {
			batches[k] = make([][]byte, ev.Proof.Size)
		}
		batches[k][ev.Proof.Index] = nonce(i)
	}
	if len(batches) > 2 {
		t.Errorf("%d requests made %d TPM quotes, want at most 2", n, len(batches))
	}
	for k, nonces := range batches {
		b, err := evidence.NewBatch(nonces)
		if err != nil {
			t.Fatalf("batch of %d: %v", len(nonces), err)
		}
		ev := batchEv[k]
		_, extra := checkEvidence(t, a, &evidence.Evidence{Attest: []byte(k), PCR: ev.PCR, PCRs: ev.PCRs, Log: ev.Log, FromRecord: ev.FromRecord})
		if !bytes.Equal(extra, b.QualifyingData()) {
			t.Errorf("batch of %d: quote extra data is not the root of its nonces", len(nonces))
		}
	}
}

// waitQuoteRequests waits until n quote requests have joined a batch, as
// the metrics count them (the count is taken after the join).
func waitQuoteRequests(t *testing.T, a *agent.Agent, n int) {
	t.Helper()
	for a.QuoteRequests() < uint64(n) {
		select {
		case <-t.Context().Done():
			t.Fatal("quote requests never arrived")
		default:
			runtimeGosched()
		}
	}
}

// TestObserver: a program loaded behind the agent's back is in the log
// slice of the next quote as unmeasured; once it is gone, the quote after
// has a "program unloaded" record naming that record. A program present
// when the agent starts is recorded as discovered at start. With the
// kernel's program events the record says who loaded it; with sweeps only
// it says a sweep found it.
func TestObserver(t *testing.T) {
	for _, mode := range []string{agent.ObserveEvents, agent.ObserveSweep} {
		t.Run(mode, func(t *testing.T) { testObserver(t, mode) })
	}
}

func testObserver(t *testing.T, mode string) {
	requireKernel(t)
	early, earlyID := socketFilter(t)
	cfg := config(t)
	cfg.Observer = mode
	a := newAgent(t, cfg)
	early.Close()
	if st := a.Status(); st.Observer != mode {
		t.Errorf("status says observer %q, want %q", st.Observer, mode)
	}

	p, id := socketFilter(t)
	ev, err := a.Quote(t.Context(), nonce(1), 0)
	if err != nil {
		t.Fatal(err)
	}
	recs, _ := checkEvidence(t, a, ev)
	found := map[uint32]*measure.KernelProgram{}
	records := map[uint32]uint64{}
	for _, r := range ofType(recs, cel.BPFUnmeasured) {
		kp, err := measure.ParseKernelProgram(r.Content)
		if err != nil {
			t.Fatal(err)
		}
		found[kp.ID], records[kp.ID] = kp, r.RecNum
	}
	if kp := found[earlyID]; kp == nil || kp.Discovery != measure.DiscoveredAtStart {
		t.Errorf("program %d present at start: %+v, want discovered at start", earlyID, kp)
	}
	kp := found[id]
	if kp == nil || kp.Name != "behind_back" || kp.Type != 1 {
		t.Fatalf("program %d loaded behind the agent's back: %+v", id, kp)
	}
	switch {
	case mode == agent.ObserveEvents && (kp.Discovery != measure.DiscoveredEvent || kp.PID != uint32(os.Getpid()) || kp.Exe == ""):
		t.Errorf("program %d found by its load event: %+v, want discovery %v, loader pid %d and its executable", id, kp, measure.DiscoveredEvent, os.Getpid())
	case mode == agent.ObserveSweep && kp.Discovery != measure.DiscoveredObserved:
		t.Errorf("program %d found by a sweep: %+v, want discovery %v", id, kp, measure.DiscoveredObserved)
	}
	if st := a.Status(); st.Unmeasured < 1 {
		t.Errorf("status %+v", st)
	}

	p.Close()
	ev, err = a.Quote(t.Context(), nonce(2), nextAfter(t, recs, ev.FromRecord))
	if err != nil {
		t.Fatal(err)
	}
	checkEvidence(t, a, ev)
	all, err := a.Records(0) // the early program left before the first quote
	if err != nil {
		t.Fatal(err)
	}
	unloaded := map[uint32]uint64{}
	for _, r := range ofType(all, cel.BPFUnloaded) {
		u, err := measure.ParseUnloaded(r.Content)
		if err != nil {
			t.Fatal(err)
		}
		unloaded[u.ID] = u.Record
	}
	for _, pid := range []uint32{earlyID, id} {
		if rec, ok := unloaded[pid]; !ok || rec != records[pid] {
			t.Errorf("program %d: unloaded record names %d (found %v), want %d", pid, rec, ok, records[pid])
		}
	}
	if m := a.Metrics().Snapshot(); m.Findings["unmeasured"] == 0 || m.Quotes != 2 || m.QuoteRequests != 2 {
		t.Errorf("metrics: %d unmeasured findings, %d TPM quotes, %d quote requests; want some, 2, 2", m.Findings["unmeasured"], m.Quotes, m.QuoteRequests)
	}
}

// TestRestartContinues: a second agent on the same swtpm and state
// directory continues the log: the first agent's records are kept, a new
// agent-start record follows, the first agent's unpinned programs (gone
// with it) are recorded as unloaded, and the evidence replays from record 0.
func TestRestartContinues(t *testing.T) {
	sw := tpmtest.StartSwtpm(t, tpmtest.SwtpmOptions{})
	cfg := config(t)
	cfg.TPM = sw.Spec()
	first := newAgent(t, cfg)
	resp, err := first.Load(t.Context(), agent.LoadRequest{Artifact: header(t, "counter", true)})
	if err != nil {
		t.Fatal(err)
	}
	before, err := first.Records(0)
	if err != nil {
		t.Fatal(err)
	}
	before = cloneRecords(before)
	firstID, err := first.Identity(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}

	second := newAgent(t, cfg)
	after, err := second.Records(0)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range before {
		if !bytes.Equal(after[i].Content, r.Content) || after[i].Type != r.Type {
			t.Fatalf("record %d changed across the restart", i)
		}
	}
	rest := after[len(before):]
	if len(rest) < 2 || rest[0].Type != cel.AgentStart {
		t.Fatalf("after restart: %d new records, first %v", len(rest), rest[0].Type)
	}
	// Programs other processes loaded and released meanwhile (the kernel
	// is shared) have unloaded records too, naming their unmeasured
	// records; exactly one names the load's result.
	var ours []*measure.Unloaded
	for _, r := range ofType(rest, cel.BPFUnloaded) {
		un, err := measure.ParseUnloaded(r.Content)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case un.Record == resp.ResultRecord:
			ours = append(ours, un)
		case after[un.Record].Type != cel.BPFUnmeasured:
			t.Errorf("unloaded %+v names a %v record", un, after[un.Record].Type)
		}
	}
	if len(ours) != 1 || ours[0].ID != resp.Result.Programs[0].ID {
		t.Errorf("unloaded records of the load: %+v, want one for program %d (count_sys_enter)", ours, resp.Result.Programs[0].ID)
	}
	secondID, err := second.Identity(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(firstID.AKPublic, secondID.AKPublic) {
		t.Error("the AK changed across the restart")
	}
	ev, err := second.Quote(t.Context(), nonce(3), 0)
	if err != nil {
		t.Fatal(err)
	}
	checkEvidence(t, second, ev)
}

func cloneRecords(recs []cel.Record) []cel.Record {
	out := make([]cel.Record, len(recs))
	for i, r := range recs {
		r.Content = bytes.Clone(r.Content)
		out[i] = r
	}
	return out
}

// TestSubscribe streams the records already in the log, then new ones.
func TestSubscribe(t *testing.T) {
	a := newAgent(t, config(t))
	n := a.Status().Records
	if _, err := a.Subscribe(t.Context(), n+1); !errors.Is(err, agent.ErrInvalid) {
		t.Errorf("subscribe past the end: %v, want ErrInvalid", err)
	}
	ch, err := a.Subscribe(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if r := <-ch; r.RecNum != i {
			t.Fatalf("record %d, want %d", r.RecNum, i)
		}
	}
	resp, err := a.Load(t.Context(), agent.LoadRequest{Artifact: header(t, "rocfg", true)})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []uint64{resp.MeasurementRecord, resp.ResultRecord} {
		if r := <-ch; r.RecNum != want {
			t.Fatalf("streamed record %d, want %d", r.RecNum, want)
		}
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-ch; ok {
		t.Error("stream open after Close")
	}
}

// TestWalk reads the log a record at a time: the records and their order
// are Records', from any start; a start past the end is ErrInvalid; the
// callback's error stops the walk and comes back unchanged.
func TestWalk(t *testing.T) {
	a := newAgent(t, config(t))
	for range 3 {
		if _, err := a.Load(t.Context(), agent.LoadRequest{Artifact: header(t, "rocfg", true)}); err != nil {
			t.Fatal(err)
		}
	}
	all, err := a.Records(0)
	if err != nil {
		t.Fatal(err)
	}
	for _, from := range []uint64{0, 1, uint64(len(all)) - 1, uint64(len(all))} {
		var got []cel.Record
		if err := a.Walk(from, func(r *cel.Record) error { got = append(got, *r); return nil }); err != nil {
			t.Fatalf("Walk(%d): %v", from, err)
		}
		want := all[from:]
		if len(got) != len(want) {
			t.Fatalf("Walk(%d): %d records, want %d", from, len(got), len(want))
		}
		for i := range got {
			if got[i].RecNum != want[i].RecNum || !bytes.Equal(got[i].Content, want[i].Content) {
				t.Fatalf("Walk(%d): record %d is %d, want %d", from, i, got[i].RecNum, want[i].RecNum)
			}
		}
	}
	if err := a.Walk(uint64(len(all))+1, func(*cel.Record) error { return nil }); !errors.Is(err, agent.ErrInvalid) {
		t.Errorf("Walk past the end: %v, want ErrInvalid", err)
	}
	stop := errors.New("enough")
	seen := 0
	if err := a.Walk(0, func(*cel.Record) error { seen++; return stop }); err != stop || seen != 1 {
		t.Errorf("Walk with a failing callback: %v after %d records, want the callback's error after 1", err, seen)
	}
}

// TestRunObserves: Run records a program loaded behind the agent's back
// (the test waits for the record on a subscription) — from its load event,
// with no periodic sweep at all, or from the periodic sweep in sweep mode —
// and returns nil when its context ends.
func TestRunObserves(t *testing.T) {
	for _, c := range []struct {
		mode     string
		interval time.Duration
		want     measure.Discovery
	}{
		{agent.ObserveEvents, -1, measure.DiscoveredEvent},
		{agent.ObserveSweep, time.Millisecond, measure.DiscoveredObserved},
	} {
		t.Run(c.mode, func(t *testing.T) {
			cfg := config(t)
			cfg.Observer, cfg.ObserverInterval = c.mode, c.interval
			a := newAgent(t, cfg)
			ch, err := a.Subscribe(t.Context(), a.Status().Records)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error)
			go func() { done <- a.Run(ctx) }()
			p, id := socketFilter(t)
			defer p.Close()
			// Under other processes' load churn the kernel may drop events;
			// the agent then records the loss and finds the program by the
			// sweep that follows, which is the one other truthful answer.
			lost, found := false, false
			for r := range ch {
				if r.Type == cel.BPFEventsLost {
					lost = true
				}
				if r.Type != cel.BPFUnmeasured {
					continue
				}
				if kp, err := measure.ParseKernelProgram(r.Content); err == nil && kp.ID == id {
					found = true
					if kp.Discovery != c.want && !(lost && kp.Discovery == measure.DiscoveredAfterLoss) {
						t.Errorf("discovery %v, want %v (events lost before it: %v)", kp.Discovery, c.want, lost)
					}
					break
				}
			}
			if !found {
				t.Errorf("subscription ended before program %d was recorded", id)
			}
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
}

// nonSHA1 lists the banks a quote covers: SHA-1 is extended but not quoted
// when a stronger bank is active.
func nonSHA1(banks []crypto.Hash) []crypto.Hash {
	var out []crypto.Hash
	for _, b := range banks {
		if b != crypto.SHA1 {
			out = append(out, b)
		}
	}
	return out
}
