package agent_test

import (
	"testing"

	"github.com/bpfattest/bpfattest/agent"
)

// TestKernelTagsMatch loads every fixture, signed and unsigned, through the
// real kernel and checks the tag the kernel gives each program against the
// one the measurement computed from the measured instructions: the binding
// of kernel programs to measurements rests on it.
func TestKernelTagsMatch(t *testing.T) {
	cfg := config(t)
	agent.SetAllowAll(&cfg)
	a := newAgent(t, cfg)
	for _, name := range []string{"counter", "pair", "rocfg"} {
		for _, signed := range []bool{false, true} {
			resp, err := a.Load(t.Context(), agent.LoadRequest{Artifact: header(t, name, signed)})
			if err != nil {
				t.Fatalf("%s (signed %v): %v", name, signed, err)
			}
			m := resp.Inspection.Measurement
			if len(resp.Result.Programs) != len(m.Programs) {
				t.Fatalf("%s: %d programs created, %d measured", name, len(resp.Result.Programs), len(m.Programs))
			}
			for i, k := range resp.Result.Programs {
				p := m.Programs[i]
				if !p.TagKnown() {
					t.Errorf("%s %s: tag not determined: %s", name, p.Name, p.TagUnpredictable)
					continue
				}
				if k.Tag != p.KernelTag {
					t.Errorf("%s %s: kernel tag %x, measured %x", name, p.Name, k.Tag, p.KernelTag)
				}
			}
		}
	}
}
