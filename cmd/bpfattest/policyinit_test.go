package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bpfattest/bpfattest/attest"
	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/verifier"
)

// TestPolicyInit writes a policy from a real known-good agent (signed
// counter and pair loads): it parses, pins the fixture signer, the kernel
// scheme and every digest bpftool generated, forbids unmeasured programs
// and requires pinning. Verifying the same host against it breaks no rule
// with its measured loads (the kernel is shared: programs other processes
// load show as unmeasured and are not this test's to judge); a host that
// loaded the unsigned counter breaks the pins.
func TestPolicyInit(t *testing.T) {
	cert := testutil.LskelFile(t, "keys/TEST_ONLY_signing_cert.pem")
	good := spawnAgent(t, "--trust", cert)
	other := spawnAgent(t, "--trust", cert, "--allow-unsigned")
	loadInto(t, good, "headers/counter.signed.lskel.h", exitOK)
	loadInto(t, good, "headers/pair.signed.lskel.h", exitOK)
	loadInto(t, other, "headers/counter.lskel.h", exitOK)

	out := filepath.Join(t.TempDir(), "policy.yaml")
	state := filepath.Join(t.TempDir(), "good.json")
	var stdout, stderr bytes.Buffer
	code := runPolicy(t.Context(), []string{"init", "--agent", good.listen, "--insecure-loopback", "--out", out, "--state", state, "--tofu"}, &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := attest.ParsePolicy(b)
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if !pol.RequireSigned || !pol.ForbidUnmeasured || !pol.RequirePinned || len(pol.Signers) != 1 || len(pol.Artifacts) != 2 {
		t.Errorf("policy %+v\n%s", pol, b)
	}
	for _, want := range []string{
		"cert_sha256: f8dbdbb8a9f82452b2a27c9f80bed2349d817a2d8cba7d68bc1bb50a68248f2d",
		"allowed_schemes: [kernel-lskel]",
		"loader_sha256: ea178a90ade84d51dfef64c0208f670e0c1b5fa772a361a4aab14545717af9c7",
		"data_sha256: 6fda7f08f3366b7649e0bd940a57efeecfcf8eab8f24ddb25f53025a32db31c3",
		"count_sys_enter: 5988fc88e006b6316d2553e8a7f34eaf77a19c02ab52349182477f1fc66a8237",
		"loader_sha256: faa50a6f0f1ea695c8cdc2919d4b8ee4aeb116ca1e750a50bae525575ebda3e9",
		"pair_exit: 5daf9f0e05c1aa9cc5880bafb7dcdea2977b49994adf51f5fe45516873831ba1",
	} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("policy lacks %q:\n%s", want, b)
		}
	}
	if _, err := verifier.ReadHost(state); err != nil {
		t.Errorf("state file: %v", err)
	}

	t.Run("same host", func(t *testing.T) {
		_, v, stderr := verifyJSON(t, "--agent", good.listen, "--insecure-loopback", "--policy", out, "--state", state)
		if v.Status != verifier.StatusCompliant && v.Status != verifier.StatusNonCompliant {
			t.Fatalf("%+v\n%s", v, stderr)
		}
		// The kernel is shared: programs other processes loaded are
		// unmeasured records of this agent and may break the policy. The
		// host's own measured loads must not.
		foreign := map[uint64]bool{}
		for _, u := range v.Unmeasured {
			foreign[u.Record] = true
		}
		measured := 0
		for _, p := range v.Programs {
			if p.Name == "counter_lskel" || p.Name == "pair_lskel" {
				measured++
			}
		}
		if measured != 2 {
			t.Errorf("verdict lists %d of the two loads: %+v", measured, v.Programs)
		}
		for _, x := range v.Violations {
			if !foreign[x.Record] {
				t.Errorf("known-good host breaks its own policy: %+v", x)
			}
		}
	})

	t.Run("other host", func(t *testing.T) {
		code, v, _ := verifyJSON(t, "--agent", other.listen, "--insecure-loopback", "--policy", out, "--tofu")
		rules := map[string]bool{}
		for _, x := range v.Violations {
			rules[x.Rule] = true
		}
		if code != exitNonCompliant || !rules["require_signed"] || !rules["allowed_schemes"] || !rules["loader_sha256"] {
			t.Errorf("exit %d violations %+v", code, v.Violations)
		}
	})

	t.Run("unsigned host notes", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		p := filepath.Join(t.TempDir(), "p.yaml")
		if code := runPolicy(t.Context(), []string{"init", "--agent", other.listen, "--insecure-loopback", "--out", p, "--tofu"}, &stdout, &stderr); code != exitOK {
			t.Fatalf("exit %d\n%s", code, stderr.String())
		}
		if !strings.Contains(stdout.String(), "require_signed is off") {
			t.Errorf("no note on the unsigned load:\n%s", stdout.String())
		}
	})

	t.Run("usage", func(t *testing.T) {
		for name, args := range map[string][]string{
			"no subcommand": {},
			"other":         {"show"},
			"no out":        {"init", "--agent", good.listen, "--insecure-loopback", "--tofu"},
			"no pin":        {"init", "--agent", good.listen, "--insecure-loopback", "--out", out},
		} {
			var stdout, stderr bytes.Buffer
			if code := runPolicy(t.Context(), args, &stdout, &stderr); code != exitUsage {
				t.Errorf("%s: exit %d", name, code)
			}
		}
	})
}
