package agent_test

import (
	"errors"
	"sync/atomic"
	"testing"

	"github.com/bpfattest/bpfattest/agent"
	"github.com/bpfattest/bpfattest/internal/bpfsys"
)

// TestHostileLoadNoBPF proves oversized, truncated, mismatched and
// malformed load requests are refused with a clear error before any bpf()
// call: the step hook, which runs before every bpf() step of a load, is
// never reached, and the agent holds no program afterwards.
func TestHostileLoadNoBPF(t *testing.T) {
	cfg := config(t)
	var steps atomic.Int32
	agent.SetStepHook(&cfg, func(s bpfsys.Step) error {
		steps.Add(1)
		return errors.New("no bpf() step may run in this test")
	})
	a := newAgent(t, cfg)
	signed := header(t, "counter", true)
	var dataMismatch, exclMismatch []byte
	for _, m := range mutations() {
		switch m.name {
		case "data":
			dataMismatch = tamper(t, m)
		case "excl hash":
			exclMismatch = tamper(t, m)
		}
	}
	for _, tc := range []struct {
		name string
		req  agent.LoadRequest
		want error
	}{
		{"empty", agent.LoadRequest{}, agent.ErrInvalid},
		{"oversized", agent.LoadRequest{Artifact: make([]byte, agent.MaxArtifactSize+1)}, agent.ErrInvalid},
		{"truncated header", agent.LoadRequest{Artifact: signed[:len(signed)/2]}, agent.ErrInvalid},
		{"truncated bundle", agent.LoadRequest{Artifact: dataMismatch[:len(dataMismatch)-7]}, agent.ErrInvalid},
		{"garbage", agent.LoadRequest{Artifact: []byte("\x7fELF not a skeleton")}, agent.ErrInvalid},
		{"data hash mismatch", agent.LoadRequest{Artifact: dataMismatch}, agent.ErrRefused},
		{"excl hash mismatch", agent.LoadRequest{Artifact: exclMismatch}, agent.ErrRefused},
		{"relative pin dir", agent.LoadRequest{Artifact: signed, PinDir: "../../pins"}, agent.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := a.Load(t.Context(), tc.req)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
			if err.Error() == tc.want.Error() {
				t.Errorf("error %q does not say what is wrong", err)
			}
		})
	}
	if n := steps.Load(); n != 0 {
		t.Fatalf("%d bpf() steps ran for hostile requests", n)
	}
	if st := a.Status(); st.Loaded != 0 {
		t.Fatalf("agent holds %d programs after hostile requests", st.Loaded)
	}
}
