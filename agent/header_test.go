package agent_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/bpfattest/bpfattest/agent"
	"github.com/bpfattest/bpfattest/internal/bpfsys"
)

// TestLoadEditedHeaderRefused: a header whose counter_lskel__load hands
// bpf_load_and_run something else than its opts_* arrays is an invalid
// request: nothing is measured, recorded or loaded under the name of the
// loader the arrays hold.
func TestLoadEditedHeaderRefused(t *testing.T) {
	cfg := config(t)
	calls := 0
	agent.SetStepHook(&cfg, func(bpfsys.Step) error { calls++; return nil })
	a := newAgent(t, cfg)
	before := a.Status().Records
	orig := header(t, "counter", true)
	for _, edit := range []struct{ old, new string }{
		{"opts.insns = (void *)opts_insn;", "opts.insns = (void *)opts_data;"},
		{"opts.signature_sz = sizeof(opts_sig) - 1;", "opts.signature_sz = 0;"},
		{"\topts.insns = (void *)opts_insn;\n", "#if 1\n\topts.insns = (void *)opts_data;\n#else\n\topts.insns = (void *)opts_insn;\n#endif\n"},
	} {
		src := bytes.Replace(orig, []byte(edit.old), []byte(edit.new), 1)
		if bytes.Equal(src, orig) {
			t.Fatalf("edit %q changed nothing", edit.old)
		}
		_, err := a.Load(t.Context(), agent.LoadRequest{Artifact: src})
		if !errors.Is(err, agent.ErrInvalid) || !strings.Contains(err.Error(), "line ") {
			t.Errorf("%q: err %v, want ErrInvalid naming the line", edit.new, err)
		}
	}
	if after := a.Status().Records; after != before || calls != 0 {
		t.Errorf("records %d -> %d, bpf steps %d: want nothing recorded or run", before, after, calls)
	}
}
