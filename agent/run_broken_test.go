package agent_test

import (
	"errors"
	"testing"
	"time"

	"github.com/bpfattest/bpfattest/agent"
	"github.com/bpfattest/bpfattest/agent/journal"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
)

// TestRunStopsWhenLogBreaks: once an append fails (the TPM went away), Run
// returns ErrUnavailable at once — even with the periodic observer off and
// nothing new in the kernel — so the daemon exits for its supervisor to
// restart it instead of refusing every request while it stays up.
func TestRunStopsWhenLogBreaks(t *testing.T) {
	requireKernel(t)
	sw := tpmtest.StartSwtpm(t, tpmtest.SwtpmOptions{})
	cfg := config(t)
	cfg.TPM, cfg.ObserverInterval = sw.Spec(), -1
	a := newAgent(t, cfg)
	ran := make(chan error, 1)
	go func() { ran <- a.Run(t.Context()) }()

	if err := sw.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Load(t.Context(), agent.LoadRequest{Artifact: header(t, "counter", true)}); !errors.Is(err, agent.ErrUnavailable) {
		t.Fatalf("load with the TPM gone: %v, want ErrUnavailable", err)
	}
	select {
	case err := <-ran:
		if !errors.Is(err, agent.ErrUnavailable) || !errors.Is(err, journal.ErrBroken) {
			t.Errorf("Run returned %v, want ErrUnavailable wrapping journal.ErrBroken", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run kept going with an event log that refuses appends")
	}
}
