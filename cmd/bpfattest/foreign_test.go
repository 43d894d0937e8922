package main

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"

	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
	"github.com/bpfattest/bpfattest/verifier"
)

// TestForeignExtendCLI: a foreign tpm2_pcrextend of the agent's PCR (the
// independent tpm2-tools, against the daemon's swtpm) gives verify exit 2
// with the reason "log does not match PCR", not UNREACHABLE; the daemon
// stays up, refuses loads saying why, and restarted on the same state it
// starts and serves again instead of failing in a loop.
func TestForeignExtendCLI(t *testing.T) {
	testutil.RequireRoot(t)
	extend := testutil.RequireTool(t, "tpm2_pcrextend")
	ver, _ := exec.Command(extend, "--version").CombinedOutput()
	t.Logf("reference: %s", strings.TrimSpace(string(ver)))
	sw := tpmtest.StartSwtpm(t, tpmtest.SwtpmOptions{})
	dir := t.TempDir()
	cert := testutil.LskelFile(t, "keys/TEST_ONLY_signing_cert.pem")
	args := []string{"--tpm", sw.Spec(), "--trust", cert}
	a, err := startDaemon(dir, args)
	if err != nil {
		t.Fatal(err)
	}
	loadInto(t, a, "headers/counter.signed.lskel.h", exitOK)
	policy := writeTemp(t, "policy.yaml", signedPolicy)
	if code, v, stderr := verifyJSON(t, "--agent", a.listen, "--insecure-loopback", "--policy", policy, "--tofu"); code == exitUnverified {
		t.Fatalf("before the foreign extend: exit %d %+v\n%s", code, v, stderr)
	}

	out, err := exec.Command(extend, "--tcti", sw.TCTI(), "14:sha256="+strings.Repeat("00", 32)).CombinedOutput()
	if err != nil {
		t.Fatalf("tpm2_pcrextend: %v\n%s", err, out)
	}
	unverified := func(a *agentProc, when string) {
		t.Helper()
		code, v, stderr := verifyJSON(t, "--agent", a.listen, "--insecure-loopback", "--policy", policy, "--tofu")
		if code != exitUnverified || v.Status != verifier.StatusUnverified || !strings.Contains(v.Reason, "log does not match PCR") {
			t.Errorf("%s: exit %d status %q reason %q, want exit 2, could-not-verify: log does not match PCR\n%s", when, code, v.Status, v.Reason, stderr)
		}
	}
	unverified(a, "after the foreign extend")
	var stdout, stderr bytes.Buffer
	code := runLoad(t.Context(), []string{testutil.LskelFile(t, "headers/counter.signed.lskel.h"), "--socket", a.socket}, &stdout, &stderr)
	if code == exitOK || !strings.Contains(stderr.String(), "does not replay to the pcr") {
		t.Errorf("load after the foreign extend: exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	select {
	case <-a.exited:
		t.Fatalf("the daemon exited after the foreign extend\n%s", a.log())
	default:
	}
	unverified(a, "still up")
	stopAgent(t, a)

	again, err := startDaemon(dir, args)
	if err != nil {
		t.Fatalf("restart after the foreign extend: %v", err)
	}
	defer stopAgent(t, again)
	unverified(again, "restarted")
}
