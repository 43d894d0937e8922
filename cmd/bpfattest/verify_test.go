package main

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
	"github.com/bpfattest/bpfattest/verifier"
)

// signedPolicy is what the verifier tests require: signed by the fixture
// signer. Unmeasured programs are not forbidden: every agent of a test
// shares this machine's kernel and sees the others' programs.
// signedPolicy is the tests' policy: signed by the fixture key. The test
// agents run on the in-process simulator, which a policy must allow.
const signedPolicy = `version: 1
require_signed: true
allowed_signers:
  - cert_sha256: f8dbdbb8a9f82452b2a27c9f80bed2349d817a2d8cba7d68bc1bb50a68248f2d
allow_simulator: true
`

func writeTemp(t testing.TB, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// verifyJSON runs verify with --json and decodes the verdict.
func verifyJSON(t *testing.T, args ...string) (int, verifier.Verdict, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := runVerify(t.Context(), append(args, "--json"), &stdout, &stderr)
	var v verifier.Verdict
	if stdout.Len() > 0 {
		if err := json.Unmarshal(stdout.Bytes(), &v); err != nil {
			t.Fatalf("verdict JSON: %v\n%s", err, stdout.String())
		}
	}
	return code, v, stderr.String()
}

// TestVerifyCLI drives `bpfattest verify` against real agents: a host
// with a signed load is compliant (exit 0) on first contact with --tofu
// and again incrementally from the stored State; a refused unsigned load
// puts nothing in the kernel and changes nothing; a host that loaded an
// unsigned artifact is non-compliant (exit 1) with the violation's record
// and rule; a state file pinning another agent's AK is could-not-verify
// (exit 2, ak mismatch), as is an unreachable agent.
func TestVerifyCLI(t *testing.T) {
	cert := testutil.LskelFile(t, "keys/TEST_ONLY_signing_cert.pem")
	good := spawnAgent(t, "--trust", cert)
	bad := spawnAgent(t, "--trust", cert, "--allow-unsigned")
	loadInto(t, good, "headers/counter.signed.lskel.h", exitOK)
	loadInto(t, bad, "headers/pair.signed.lskel.h", exitOK)
	loadInto(t, bad, "headers/counter.lskel.h", exitOK)
	policy := writeTemp(t, "policy.yaml", signedPolicy)
	state := filepath.Join(t.TempDir(), "good.json")

	code, v, stderr := verifyJSON(t, "--agent", good.listen, "--insecure-loopback", "--policy", policy, "--state", state, "--tofu")
	if code != exitCompliant || v.Status != verifier.StatusCompliant {
		t.Fatalf("first contact: exit %d %+v\n%s", code, v, stderr)
	}
	if len(v.Programs) != 1 || v.Programs[0].Name != "counter_lskel" || v.Programs[0].Verdict != "OK" ||
		v.Programs[0].Programs["count_sys_enter"] == "" || v.FromRecord != 0 || v.AKPinned != verifier.PinTOFU {
		t.Errorf("first verdict: %+v", v)
	}
	hf, err := verifier.ReadHost(state)
	if err != nil || hf.State == nil || hf.State.NextRecord() != v.NextRecord {
		t.Fatalf("state file: %v %+v", err, hf)
	}

	t.Run("incremental", func(t *testing.T) {
		loadInto(t, good, "headers/counter.lskel.h", exitFailed) // refused: not signed
		code, v2, stderr := verifyJSON(t, "--agent", good.listen, "--insecure-loopback", "--policy", policy, "--state", state)
		if code != exitCompliant || v2.FromRecord != v.NextRecord || v2.NextRecord <= v.NextRecord || len(v2.Programs) != 1 {
			t.Fatalf("exit %d, verdict %+v (previous next record %d)\n%s", code, v2, v.NextRecord, stderr)
		}
	})

	t.Run("non-compliant", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		code := runVerify(t.Context(), []string{"--agent", bad.listen, "--insecure-loopback", "--policy", policy, "--tofu"}, &stdout, &stderr)
		out := stdout.String()
		if code != exitNonCompliant || !strings.Contains(out, "verdict:    NON-COMPLIANT") {
			t.Fatalf("exit %d\n%s%s", code, out, stderr.String())
		}
		for _, want := range []string{"(counter_lskel): require_signed: signature verdict UNSIGNED", "pair_lskel scheme=kernel-lskel verdict=OK",
			"program pair_enter sha256=", "loader_sha256="} {
			if !strings.Contains(out, want) {
				t.Errorf("verdict lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("other agent's AK", func(t *testing.T) {
		code, v, _ := verifyJSON(t, "--agent", bad.listen, "--insecure-loopback", "--policy", policy, "--state", state)
		if code != exitUnverified || v.Status != verifier.StatusUnverified || !strings.Contains(v.Reason, "ak mismatch") {
			t.Fatalf("exit %d %+v", code, v)
		}
		if after, err := verifier.ReadHost(state); err != nil || after.State.NextRecord() < hf.State.NextRecord() {
			t.Errorf("a failed verification changed the state file: %v", err)
		}
	})

	t.Run("pinned AK file", func(t *testing.T) {
		ak := pem.EncodeToMemory(&pem.Block{Type: verifier.AKPEMType, Bytes: hf.AKPublic})
		code, v, stderr := verifyJSON(t, "--agent", good.listen, "--insecure-loopback", "--policy", policy,
			"--ak", writeTemp(t, "ak.pem", string(ak)))
		if code != exitCompliant || v.AKPinned != verifier.PinAKFile {
			t.Fatalf("exit %d %+v\n%s", code, v, stderr)
		}
	})

	t.Run("unreachable", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		code, v, _ := verifyJSON(t, "--agent", addr, "--insecure-loopback", "--policy", policy, "--tofu")
		if code != exitUnverified || v.Status != verifier.StatusUnreachable {
			t.Fatalf("exit %d %+v", code, v)
		}
	})
}

// TestVerifyUsage proves verify never pins an AK silently and refuses
// unusable flags with exit 2 before dialling.
func TestVerifyUsage(t *testing.T) {
	policy := writeTemp(t, "policy.yaml", signedPolicy)
	noPin := filepath.Join(t.TempDir(), "absent.json")
	for name, args := range map[string][]string{
		"no policy":        {"--agent", "127.0.0.1:1", "--insecure-loopback", "--tofu"},
		"no pin":           {"--agent", "127.0.0.1:1", "--insecure-loopback", "--policy", policy},
		"new state no pin": {"--agent", "127.0.0.1:1", "--insecure-loopback", "--policy", policy, "--state", noPin},
		"ak and tofu":      {"--agent", "127.0.0.1:1", "--insecure-loopback", "--policy", policy, "--tofu", "--ak", policy},
		"bad policy":       {"--agent", "127.0.0.1:1", "--insecure-loopback", "--policy", writeTemp(t, "p.yaml", "version: 2\n"), "--tofu"},
		"no agent":         {"--policy", policy, "--tofu"},
		"positional":       {"--agent", "127.0.0.1:1", "--insecure-loopback", "--policy", policy, "--tofu", "x"},
	} {
		var stdout, stderr bytes.Buffer
		if code := runVerify(t.Context(), args, &stdout, &stderr); code != exitUsage {
			t.Errorf("%s: exit %d, want %d: %s", name, code, exitUsage, stderr.String())
		}
	}
}

// TestVerifyReboot proves verify follows an agent across a TPM reset: the
// agent on swtpm is verified, stopped, the TPM rebooted (resetCount + 1)
// and the agent started again on the same state directory; the stored
// State's next record belongs to the old boot, so verify asks again from
// record 0 and Verify accepts the new boot from its header (rebooted).
func TestVerifyReboot(t *testing.T) {
	testutil.RequireRoot(t)
	sw := tpmtest.StartSwtpm(t, tpmtest.SwtpmOptions{})
	dir := t.TempDir()
	args := []string{"--tpm", sw.Spec(), "--trust", testutil.LskelFile(t, "keys/TEST_ONLY_signing_cert.pem")}
	a, err := startDaemon(dir, args)
	if err != nil {
		t.Fatal(err)
	}
	loadInto(t, a, "headers/counter.signed.lskel.h", exitOK)
	loadInto(t, a, "headers/pair.signed.lskel.h", exitOK)
	policy := writeTemp(t, "policy.yaml", signedPolicy)
	state := filepath.Join(t.TempDir(), "host.json")
	code, v, stderr := verifyJSON(t, "--agent", a.listen, "--insecure-loopback", "--policy", policy, "--state", state, "--tofu")
	if code != exitCompliant {
		t.Fatalf("before reboot: exit %d %+v\n%s", code, v, stderr)
	}
	stopAgent(t, a)
	if err := sw.Reboot(); err != nil {
		t.Fatal(err)
	}
	a, err = startDaemon(dir, args)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopAgent(t, a) })
	code, v2, stderr := verifyJSON(t, "--agent", a.listen, "--insecure-loopback", "--policy", policy, "--state", state)
	if code != exitCompliant || !v2.Rebooted || v2.ResetCount != v.ResetCount+1 || v2.FromRecord != 0 || len(v2.Programs) != 0 {
		t.Fatalf("after reboot: exit %d %+v (before: %+v)\n%s", code, v2, v, stderr)
	}
}
