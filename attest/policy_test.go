package attest

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bpfattest/bpfattest/internal/tpm"
	"github.com/bpfattest/bpfattest/measure"
)

func loadPolicy(t *testing.T, name string) *Policy {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "policy", name))
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParsePolicy(b)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// violationSet renders violations as "record/rule" for comparison.
func violationSet(vs []Violation) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.Artifact+"/"+string(v.Rule))
	}
	return out
}

// TestPolicyScenario evaluates the example policies on a verified Result
// and proves each violation names the record and the rule it breaks:
// an unmeasured program when the policy forbids it, a signer not allowed,
// the kernel check required but absent, an unsigned load, and a pending
// load that is evaluated like a loaded one.
func TestPolicyScenario(t *testing.T) {
	a := newTestAgent(t, "sim", tpm.AKECCP256)
	s := runScenario(a)
	nonce := freshNonce(t, 0)
	res, err := Verify(a.quote(nonce, 0), a.opts(nonce))
	if err != nil {
		t.Fatal(err)
	}

	t.Run("strict", func(t *testing.T) {
		vs := Evaluate(res, loadPolicy(t, "strict.yaml"))
		for _, v := range vs {
			t.Log(v)
		}
		want := map[uint64][]string{
			// counter: signed by the allowed signer, pinned, but the
			// kernel could not check the signature.
			s.counter.measurement.RecNum: {"counter_lskel/require_kernel_checked"},
			// pair: kernel-checked, allowed, pinned: no violation.
			// unsigned counter: every signing rule, and its loader differs
			// from the pinned signed loader.
			s.unsigned.measurement.RecNum: {"counter_lskel/require_signed",
				"counter_lskel/require_kernel_checked", "counter_lskel/allowed_schemes", "counter_lskel/allowed_signers",
				"counter_lskel/loader_sha256"},
			// The unmeasured kprobe.
			s.unmeasuredRec: {"sneaky/forbid_unmeasured", "sneaky/allowed_program_types"},
			// The pending rocfg load: a socket filter, unpinned, not
			// kernel-checked.
			s.pendingRec: {"rocfg_lskel/require_kernel_checked", "rocfg_lskel/allowed_program_types", "rocfg_lskel/require_pinned"},
		}
		got := map[uint64][]string{}
		for _, v := range vs {
			got[v.Record] = append(got[v.Record], v.Artifact+"/"+string(v.Rule))
			if v.Reason == "" {
				t.Errorf("violation without a reason: %+v", v)
			}
		}
		for rec, w := range want {
			slices.Sort(w)
			g := got[rec]
			slices.Sort(g)
			if !slices.Equal(w, g) {
				t.Errorf("record %d: violations %v, want %v", rec, g, w)
			}
		}
		for rec := range got {
			if _, ok := want[rec]; !ok {
				t.Errorf("record %d: unexpected violations %v", rec, got[rec])
			}
		}
	})
	t.Run("signer not allowed", func(t *testing.T) {
		p := &Policy{Signers: []SignerRule{{Subject: "CN=someone else"}}}
		vs := Evaluate(res, p)
		if len(vs) != 4 { // counter, pair, unsigned counter, pending rocfg
			t.Errorf("violations %v, want one per load", violationSet(vs))
		}
		for _, v := range vs {
			if v.Rule != RuleSigners {
				t.Errorf("rule %s", v.Rule)
			}
		}
	})
	t.Run("zero policy", func(t *testing.T) {
		if vs := Evaluate(res, &Policy{}); len(vs) != 0 {
			t.Errorf("zero policy: %v", violationSet(vs))
		}
		if vs := Evaluate(res, nil); vs != nil {
			t.Errorf("nil policy: %v", vs)
		}
	})
}

// TestPolicyCleanKernel proves the strict example policy holds when only a
// kernel-checked, pinned, allowed load is in the kernel; a refused load
// beside it put nothing in the kernel and is not evaluated.
func TestPolicyCleanKernel(t *testing.T) {
	b := newTestAgent(t, "sim", tpm.AKECCP256)
	b.load(fixtureMeasurement(t, "pair.signed.lskel.h", measure.KernelCheckVerified), measure.OutcomeLoaded)
	b.load(fixtureMeasurement(t, "rocfg.lskel.h", measure.KernelCheckNotSubmitted), measure.OutcomeRefused)
	n := freshNonce(t, 1)
	res, err := Verify(b.quote(n, 0), b.opts(n))
	if err != nil {
		t.Fatal(err)
	}
	if vs := Evaluate(res, loadPolicy(t, "strict.yaml")); len(vs) != 0 {
		t.Errorf("violations: %v", violationSet(vs))
	}
}

// TestParsePolicyRefuses proves the parser rejects what it does not
// understand instead of ignoring it.
func TestParsePolicyRefuses(t *testing.T) {
	for name, doc := range map[string]string{
		"no version":      "require_signed: true\n",
		"unknown key":     "version: 1\nrequire_sigend: true\n",
		"unknown scheme":  "version: 1\nallowed_schemes: [ima]\n",
		"short digest":    "version: 1\nartifacts:\n  x:\n    loader_sha256: abcd\n",
		"bad hex":         "version: 1\nallowed_signers:\n  - skid: zz\n",
		"empty signer":    "version: 1\nallowed_signers:\n  - {}\n",
		"unknown type":    "version: 1\nallowed_program_types: [teleport]\n",
		"two documents":   "version: 1\n---\nversion: 1\n",
		"program no hash": "version: 1\nartifacts:\n  x:\n    programs:\n      p: ''\n",
		"not a mapping":   "- 1\n",
	} {
		if _, err := ParsePolicy([]byte(doc)); !errors.Is(err, ErrPolicy) {
			t.Errorf("%s: %v, want ErrPolicy", name, err)
		}
	}
	p := loadPolicy(t, "minimal.yaml")
	if !p.RequireSigned || !p.ForbidUnmeasured || p.RequireKernelChecked {
		t.Errorf("minimal policy: %+v", p)
	}
	if v, ok := progTypeByName("BPF_PROG_TYPE_XDP"); !ok || v != 6 {
		t.Errorf("BPF_PROG_TYPE_XDP = %d, %v", v, ok)
	}
}

// TestPolicyRules: the rules a policy applies are those its fields set,
// plus binding always and allow_simulator unless the simulator is allowed.
func TestPolicyRules(t *testing.T) {
	zero := []Rule{RuleSimulator, RuleBinding}
	if got := (*Policy)(nil).Rules(); !slices.Equal(got, zero) {
		t.Errorf("nil policy: %v", got)
	}
	if got := (&Policy{AllowSimulator: true}).Rules(); !slices.Equal(got, []Rule{RuleBinding}) {
		t.Errorf("simulator allowed: %v", got)
	}
	p, err := ParsePolicy([]byte(`version: 1
require_signed: true
allowed_signers: [{subject: x}]
artifacts:
  a: {programs: {p: ` + strings.Repeat("00", 32) + `}}
allowed_boot_apps: [` + strings.Repeat("11", 32) + `]
required_lockdown: integrity
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []Rule{RuleRequireSigned, RuleSigners, RuleProgramDigest, RuleSimulator, RuleBinding, RuleBootApps, RuleLockdown}
	if got := p.Rules(); !slices.Equal(got, want) {
		t.Errorf("rules %v, want %v", got, want)
	}
}
