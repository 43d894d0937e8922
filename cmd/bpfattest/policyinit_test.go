package main

import (
	"bytes"
	"fmt"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bpfattest/bpfattest/attest"
	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/verifier"
)

// TestPolicyInit writes a policy from a real known-good agent (signed
// counter and pair loads) on a host that has programs loaded before the
// agent started, as every systemd host has: it parses, pins the fixture
// signer, the kernel scheme and every digest bpftool generated, allows the
// pre-agent programs by name, type and tag, forbids any other unmeasured
// program (now or at any time of a verified range) and requires pinning.
// Verifying the same host against it breaks no rule with its loads or its
// pre-agent programs (the kernel is shared: programs other processes load
// meanwhile show as unmeasured and are not this test's to judge); one more
// program loaded behind the agent's back breaks it, by its id; a host that
// loaded the unsigned counter breaks the pins.
func TestPolicyInit(t *testing.T) {
	testutil.RequireRoot(t)
	cert := testutil.LskelFile(t, "keys/TEST_ONLY_signing_cert.pem")
	// The host's own programs, loaded before its agent starts.
	preDev, preDevID := loadNamed(t, ebpf.CGroupDevice, "sd_devices")
	defer preDev.Close()
	preFw, preFwID := loadNamed(t, ebpf.CGroupSKB, "sd_fw_ingress")
	defer preFw.Close()
	good := spawnAgent(t, "--trust", cert)
	other := spawnAgent(t, "--trust", cert, "--allow-unsigned")
	loadInto(t, good, "headers/counter.signed.lskel.h", exitOK)
	loadInto(t, good, "headers/pair.signed.lskel.h", exitOK)
	loadInto(t, other, "headers/counter.lskel.h", exitOK)

	out := filepath.Join(t.TempDir(), "policy.yaml")
	state := filepath.Join(t.TempDir(), "good.json")
	var stdout, stderr bytes.Buffer
	code := runPolicy(t.Context(), []string{"init", "--agent", good.listen, "--insecure-loopback", "--out", out, "--state", state, "--tofu"}, &stdout, &stderr)
	if code != exitFailed || !strings.Contains(stderr.String(), "--allow-simulator") {
		t.Errorf("policy init of a simulator host without --allow-simulator: exit %d\n%s", code, stderr.String())
	}
	stdout.Reset()
	stderr.Reset()
	code = runPolicy(t.Context(), []string{"init", "--agent", good.listen, "--insecure-loopback", "--out", out, "--state", state, "--tofu", "--allow-simulator"}, &stdout, &stderr)
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
	if !pol.RequireSigned || !pol.ForbidUnmeasured || !pol.ForbidUnmeasuredHistory || !pol.RequirePinned || !pol.AllowSimulator ||
		len(pol.Signers) != 1 || len(pol.Artifacts) != 2 {
		t.Errorf("policy %+v\n%s", pol, b)
	}
	for _, want := range []string{
		"cert_sha256: f8dbdbb8a9f82452b2a27c9f80bed2349d817a2d8cba7d68bc1bb50a68248f2d",
		"allowed_schemes: [kernel-lskel]",
		"allowed_program_types: [raw_tracepoint]",
		"loader_sha256: ea178a90ade84d51dfef64c0208f670e0c1b5fa772a361a4aab14545717af9c7",
		"data_sha256: 6fda7f08f3366b7649e0bd940a57efeecfcf8eab8f24ddb25f53025a32db31c3",
		"count_sys_enter: 5988fc88e006b6316d2553e8a7f34eaf77a19c02ab52349182477f1fc66a8237",
		"loader_sha256: faa50a6f0f1ea695c8cdc2919d4b8ee4aeb116ca1e750a50bae525575ebda3e9",
		"pair_exit: 5daf9f0e05c1aa9cc5880bafb7dcdea2977b49994adf51f5fe45516873831ba1",
		"- name: sd_devices\n    type: cgroup_device\n    tag: " + progTag(t, preDev),
		"- name: sd_fw_ingress\n    type: cgroup_skb\n    tag: " + progTag(t, preFw),
	} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("policy lacks %q:\n%s", want, b)
		}
	}
	if !strings.Contains(stdout.String(), "allowed by name, type and tag") {
		t.Errorf("no note on the allowed pre-agent programs:\n%s", stdout.String())
	}
	if _, err := verifier.ReadHost(state); err != nil {
		t.Errorf("state file: %v", err)
	}

	// ours reports whether a violation is about this test's programs or
	// loads (the kernel is shared: others' programs are not ours to judge).
	ours := func(v verifier.Verdict, x verifier.Violation, ids ...uint32) bool {
		for _, p := range append(v.Programs, v.Pending...) {
			if x.Record == p.Record {
				return true
			}
		}
		for _, id := range ids {
			if strings.Contains(x.Reason, fmt.Sprintf("program %d ", id)) {
				return true
			}
		}
		return false
	}
	t.Run("same host", func(t *testing.T) {
		_, v, stderr := verifyJSON(t, "--agent", good.listen, "--insecure-loopback", "--policy", out, "--state", state)
		if v.Status != verifier.StatusCompliant && v.Status != verifier.StatusNonCompliant {
			t.Fatalf("%+v\n%s", v, stderr)
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
			if ours(v, x, preDevID, preFwID) {
				t.Errorf("known-good host breaks its own policy: %+v", x)
			}
		}
	})

	t.Run("one more program", func(t *testing.T) {
		sneaky, sneakyID := loadNamed(t, ebpf.SocketFilter, "sneaky")
		defer sneaky.Close()
		code, v, stderr := verifyJSON(t, "--agent", good.listen, "--insecure-loopback", "--policy", out, "--state", state)
		found := false
		for _, x := range v.Violations {
			if ours(v, x, sneakyID) && x.Rule == string(attest.RuleForbidUnmeasured) {
				found = true
			} else if ours(v, x, preDevID, preFwID) {
				t.Errorf("an allowed program or a measured load breaks the policy: %+v", x)
			}
		}
		if code != exitNonCompliant || !found {
			t.Errorf("exit %d, violations %+v: want program %d named under forbid_unmeasured\n%s", code, v.Violations, sneakyID, stderr)
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
		if code := runPolicy(t.Context(), []string{"init", "--agent", other.listen, "--insecure-loopback", "--out", p, "--tofu", "--allow-simulator"}, &stdout, &stderr); code != exitOK {
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

// loadNamed loads "r0 = 1; exit" as a program of type typ named name and
// returns it with its id.
func loadNamed(t *testing.T, typ ebpf.ProgramType, name string) (*ebpf.Program, uint32) {
	t.Helper()
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         name,
		Type:         typ,
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 1), asm.Return()},
		License:      "GPL",
	})
	if err != nil {
		t.Fatalf("load %s program %s: %v", typ, name, err)
	}
	info, err := p.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := info.ID()
	return p, uint32(id)
}

func progTag(t *testing.T, p *ebpf.Program) string {
	t.Helper()
	info, err := p.Info()
	if err != nil {
		t.Fatal(err)
	}
	return info.Tag
}
