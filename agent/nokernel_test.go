package agent_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/bpfattest/bpfattest/agent"
	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/internal/bpfsys"
	"github.com/bpfattest/bpfattest/lskel"
	"github.com/bpfattest/bpfattest/measure"
)

// TestNoKernel runs an agent without kernel access: a load is measured,
// logged and refused without a bpf() call, the observer records nothing,
// the agent-start record and Status say so, and quotes still cover the log.
func TestNoKernel(t *testing.T) {
	cfg := config(t)
	cfg.NoKernel = true
	agent.SetStepHook(&cfg, func(s bpfsys.Step) error {
		t.Errorf("bpf() step %v without kernel access", s)
		return errors.New("no bpf() without kernel access")
	})
	a, err := agent.New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("agent.New: %v", err)
	}
	t.Cleanup(func() { a.Close() })
	if st := a.Status(); !st.NoKernel || st.KernelSignatures != "no kernel access" {
		t.Errorf("status: no kernel %v, kernel signatures %q", st.NoKernel, st.KernelSignatures)
	}

	resp, err := a.Load(t.Context(), agent.LoadRequest{Artifact: header(t, "rocfg", true)})
	if !errors.Is(err, agent.ErrRefused) || resp == nil {
		t.Fatalf("load: %v, want ErrRefused with a response", err)
	}
	if !strings.HasPrefix(resp.Result.Reason, "kernel access unavailable: ") || resp.Result.Outcome != measure.OutcomeRefused {
		t.Errorf("result %s: %q", resp.Result.Outcome, resp.Result.Reason)
	}
	m := measurementOf(t, a, resp.MeasurementRecord)
	if m.Verdict.String() != "OK" || m.KernelCheck != measure.KernelCheckUnavailable || m.LoaderContextSHA256 == nil {
		t.Errorf("measurement: verdict %v, kernel check %v, context %x", m.Verdict, m.KernelCheck, m.LoaderContextSHA256)
	}
	if res := resultOf(t, a, resp.ResultRecord); res.Outcome != measure.OutcomeRefused || res.Reason != resp.Result.Reason {
		t.Errorf("result record: %s %q", res.Outcome, res.Reason)
	}

	// A tampered artifact is refused for being tampered, not for the kernel.
	art, err := lskel.Load(header(t, "rocfg", true))
	if err != nil {
		t.Fatal(err)
	}
	art.Data[len(art.Data)-1] ^= 1
	tampered, err := art.MarshalBundle()
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := a.Load(t.Context(), agent.LoadRequest{Artifact: tampered}); err == nil || resp == nil ||
		!errors.Is(err, agent.ErrRefused) || !strings.HasPrefix(resp.Result.Reason, "tampered artifact: ") {
		t.Errorf("tampered load: %v", err)
	}

	ev, err := a.Quote(t.Context(), nonce(1), 0)
	if err != nil {
		t.Fatalf("quote: %v", err)
	}
	recs, _ := checkEvidence(t, a, ev)
	if n := len(ofType(recs, cel.BPFUnmeasured)); n != 0 {
		t.Errorf("%d unmeasured-program records without kernel access", n)
	}
	starts := ofType(recs, cel.AgentStart)
	if len(starts) != 1 {
		t.Fatalf("%d agent-start records", len(starts))
	}
	if info, err := cel.ParseAgentStartInfo(starts[0].Content); err != nil || !info.NoKernel {
		t.Errorf("agent start: %+v, %v; want no_kernel", info, err)
	}
}
