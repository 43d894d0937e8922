package agent_test

import (
	"errors"
	"sync"
	"testing"

	"github.com/bpfattest/bpfattest/agent"
	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/evidence"
	"github.com/bpfattest/bpfattest/internal/bpfsys"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
)

// TestFaultTPMGone: the swtpm process is killed while clients load and
// quote concurrently. Every call in flight or after ends with
// ErrUnavailable (none hangs, none succeeds without the TPM), no bpf() step
// runs once the TPM is gone, and the agent refuses loads until restarted.
// After the TPM comes back (a power cycle) a new agent starts a new boot's
// log, loads and quotes; the old boot's log still replays, holds every
// acknowledged load's records, and replays to the PCR values of every
// quote acknowledged before the failure.
func TestFaultTPMGone(t *testing.T) {
	requireKernel(t)
	sw := tpmtest.StartSwtpm(t, tpmtest.SwtpmOptions{})
	cfg := config(t)
	cfg.TPM = sw.Spec()
	var (
		stepsMu sync.Mutex
		gone    bool
		late    int // bpf() steps started after the TPM was gone
	)
	agent.SetStepHook(&cfg, func(bpfsys.Step) error {
		stepsMu.Lock()
		defer stepsMu.Unlock()
		if gone {
			late++
		}
		return nil
	})
	a, err := agent.New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	oldPath := a.Status().LogPath
	src := header(t, "counter", true)

	const loaders, quoters = 3, 3
	var (
		mu     sync.Mutex
		loads  []*agent.LoadResponse
		quotes []*evidence.Evidence
		errs   []error
		wg     sync.WaitGroup
	)
	progress := make(chan struct{}, 1024)
	for range loaders {
		wg.Go(func() {
			for {
				resp, err := a.Load(t.Context(), agent.LoadRequest{Artifact: src})
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				loads = append(loads, resp)
				mu.Unlock()
				progress <- struct{}{}
			}
		})
	}
	for q := range quoters {
		wg.Go(func() {
			for i := 0; ; i++ {
				ev, err := a.Quote(t.Context(), nonce(q<<12|i), 0)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				quotes = append(quotes, ev)
				mu.Unlock()
				progress <- struct{}{}
			}
		})
	}
	for range 12 { // some loads and quotes acknowledged before the TPM goes
		<-progress
	}
	stepsMu.Lock()
	if err := sw.Stop(); err != nil {
		t.Fatal(err)
	}
	gone = true
	stepsMu.Unlock()
	go func() {
		wg.Wait()
		close(progress)
	}()
	for range progress {
	}
	if len(errs) != loaders+quoters {
		t.Fatalf("%d clients ended with an error, want %d", len(errs), loaders+quoters)
	}
	for _, err := range errs {
		if !errors.Is(err, agent.ErrUnavailable) {
			t.Errorf("with the TPM gone: %v, want ErrUnavailable", err)
		}
	}
	// A load in flight when the TPM went may have run bpf() after its
	// measurement was extended; one started after the failure must not.
	stepsMu.Lock()
	lateInFlight := late
	stepsMu.Unlock()
	if _, err := a.Load(t.Context(), agent.LoadRequest{Artifact: src}); !errors.Is(err, agent.ErrUnavailable) {
		t.Errorf("load after the failure: %v, want ErrUnavailable", err)
	}
	if _, err := a.Quote(t.Context(), nonce(99), 0); !errors.Is(err, agent.ErrUnavailable) {
		t.Errorf("quote after the failure: %v, want ErrUnavailable", err)
	}
	stepsMu.Lock()
	if late != lateInFlight {
		t.Errorf("a load started after the failure ran %d bpf() steps", late-lateInFlight)
	}
	stepsMu.Unlock()
	a.Close()
	t.Logf("acknowledged before the failure: %d loads, %d quotes", len(loads), len(quotes))

	// The old boot's log: every acknowledged load is there, and each
	// acknowledged quote's PCR values are the replay of the records it
	// covered.
	old, err := readLog(oldPath)
	if err != nil {
		t.Fatalf("old log: %v", err)
	}
	// Events by number (loads share commits: batch records), and the
	// number of records before each record boundary.
	types := map[uint64]cel.ContentType{}
	boundary := map[uint64]int{0: 0}
	for i := range old.Records {
		_ = old.Records[i].EachEvent(func(ev *cel.Event) error { types[ev.RecNum] = ev.Type; return nil })
		next, err := old.Records[i].NextRecNum()
		if err != nil {
			t.Fatal(err)
		}
		boundary[next] = i + 1
	}
	for _, r := range loads {
		if types[r.MeasurementRecord] != cel.BPFMeasurement || types[r.ResultRecord] != cel.BPFLoadResult {
			t.Errorf("acknowledged load (records %d, %d) missing from the old log of %d events", r.MeasurementRecord, r.ResultRecord, len(types))
		}
	}
	for _, ev := range quotes {
		slice, err := cel.Decode(ev.Log)
		if err != nil {
			t.Fatal(err)
		}
		endEvent := ev.FromRecord
		if len(slice) > 0 {
			if endEvent, err = slice[len(slice)-1].NextRecNum(); err != nil {
				t.Fatal(err)
			}
		}
		end, ok := boundary[endEvent]
		if !ok {
			t.Fatalf("quote covered %d events, which is no record boundary of the old log (%d events)", endEvent, len(types))
		}
		got, err := replay(old.Records[:end], old.Boot.Start)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range ev.PCRs {
			if v.Index == ev.PCR && string(got[v.Bank]) != string(v.Digest) {
				t.Errorf("quote of %d records: bank %v quoted %x, old log replays to %x", end, v.Bank, v.Digest, got[v.Bank])
			}
		}
	}

	// The TPM comes back: a restarted agent serves again on a new boot's log.
	if err := sw.Restart(); err != nil {
		t.Fatal(err)
	}
	cfg2 := config(t)
	cfg2.TPM, cfg2.StateDir = sw.Spec(), cfg.StateDir
	b := newAgent(t, cfg2)
	if b.Status().LogPath == oldPath {
		t.Fatal("the log continued across a TPM power cycle")
	}
	if _, err := b.Load(t.Context(), agent.LoadRequest{Artifact: src}); err != nil {
		t.Fatalf("load after recovery: %v", err)
	}
	ev, err := b.Quote(t.Context(), nonce(100), 0)
	if err != nil {
		t.Fatalf("quote after recovery: %v", err)
	}
	checkEvidence(t, b, ev)
}
