package main

import (
	"bytes"
	"crypto"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bpfattest/bpfattest/attest"
	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
	"github.com/bpfattest/bpfattest/verifier"
)

// TestVerifyBootChainCLI: go-attestation's Ubuntu 21.04 firmware log
// (shim, GRUB, PCR 14 MokList events) is replayed into a swtpm before
// bpfattestd starts on it with --firmware-log pointing at a copy;
// `bpfattest verify --json` shows the boot section (the log verified,
// PCR 14's start derived from it, Secure Boot off as the log says, GRUB's
// kernel and command line, the kernel's facts), and so does the text
// verdict. `policy init` pins that boot; the host satisfies it, and a
// policy requiring Secure Boot is broken with its reason. A daemon serving
// the log with one byte changed cannot be verified.
func TestVerifyBootChainCLI(t *testing.T) {
	const name = "ubuntu_2104_shielded_vm_no_secure_boot_eventlog"
	fw := testutil.GoAttestationLogs(t, name)[name]
	l, err := tpmtest.ParseFirmwareLog(fw)
	if err != nil {
		t.Fatal(err)
	}
	daemon := func(served []byte) *agentProc {
		sw := tpmtest.StartSwtpm(t, tpmtest.SwtpmOptions{})
		d := tpmtest.Open(t, sw.Spec())
		tpmtest.ReplayFirmwareLog(t, d, fw)
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "binary_bios_measurements")
		if err := os.WriteFile(path, served, 0o600); err != nil {
			t.Fatal(err)
		}
		return spawnAgent(t, "--tpm", sw.Spec(), "--firmware-log", path)
	}
	a := daemon(fw)
	open := writeTemp(t, "policy.yaml", "version: 1\n")
	state := filepath.Join(t.TempDir(), "host.json")
	code, v, stderr := verifyJSON(t, "--agent", a.listen, "--insecure-loopback", "--policy", open, "--state", state, "--tofu")
	if code != exitCompliant {
		t.Fatalf("exit %d %+v\n%s", code, v, stderr)
	}
	b := v.Boot
	if b == nil {
		t.Fatal("verdict without a boot section")
	}
	pcr14 := hex.EncodeToString(l.Replay(14, crypto.SHA256))
	if b.FirmwareLog != "verified" || !b.AgentPCRStartFromFirmware || b.AgentPCRStart["sha256"] != pcr14 {
		t.Errorf("boot %+v, want pcr 14 start %s", b, pcr14)
	}
	if b.SecureBoot == nil || !b.SecureBoot.Known || b.SecureBoot.Enabled {
		t.Errorf("secure boot %+v, the log says off", b.SecureBoot)
	}
	if b.Kernel == nil || b.Kernel.Source != "grub" || b.Kernel.Path != "/boot/vmlinuz-5.11.0-1006-gcp" || !strings.Contains(b.Cmdline, "console=ttyS0") {
		t.Errorf("kernel %+v, cmdline %q", b.Kernel, b.Cmdline)
	}
	if len(b.BootApps) != 2 || !b.KernelFacts || b.KernelRelease == "" {
		t.Errorf("boot apps %d, kernel facts %v %q", len(b.BootApps), b.KernelFacts, b.KernelRelease)
	}

	// The text verdict, from the state: the chain verified earlier.
	var stdout, errb bytes.Buffer
	if code := runVerify(t.Context(), []string{"--agent", a.listen, "--insecure-loopback", "--policy", open, "--state", state}, &stdout, &errb); code != exitCompliant {
		t.Fatalf("text verify: exit %d\n%s%s", code, stdout.String(), errb.String())
	}
	for _, want := range []string{"firmware:   event log verified earlier against the quoted boot pcrs 0-9", "secure boot:  disabled",
		"kernel:       /boot/vmlinuz-5.11.0-1006-gcp, the file GRUB read (pcr 9)", "pcr 14 start: sha256 " + pcr14, "kernel:     release "} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("text verdict lacks %q:\n%s", want, stdout.String())
		}
	}

	t.Run("policy init", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "policy.yaml")
		var stdout, stderr bytes.Buffer
		if code := runPolicy(t.Context(), []string{"init", "--agent", a.listen, "--insecure-loopback", "--out", out, "--tofu"}, &stdout, &stderr); code != exitOK {
			t.Fatalf("exit %d\n%s%s", code, stdout.String(), stderr.String())
		}
		doc, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		pol, err := attest.ParsePolicy(doc)
		if err != nil {
			t.Fatal(err)
		}
		if !pol.Boot.RequireFirmwareLog || pol.Boot.RequireSecureBoot || len(pol.Boot.BootApps) != 2 || len(pol.Boot.Kernels) != 1 ||
			hex.EncodeToString(pol.Boot.Kernels[0]) != b.Kernel.SHA256 || len(pol.Boot.ForbiddenCmdlineWords) == 0 {
			t.Errorf("boot policy %+v\n%s", pol.Boot, doc)
		}
		if !strings.Contains(stdout.String(), "secure boot is disabled on the host") {
			t.Errorf("no note on secure boot:\n%s", stdout.String())
		}
		code, v, _ := verifyJSON(t, "--agent", a.listen, "--insecure-loopback", "--policy", out, "--tofu")
		for _, x := range v.Violations {
			if x.Artifact == attest.BootArtifact {
				t.Errorf("the host breaks its own boot policy: %+v (exit %d)", x, code)
			}
		}
	})

	t.Run("secure boot required", func(t *testing.T) {
		pol := writeTemp(t, "sb.yaml", "version: 1\nrequire_secure_boot: true\n")
		code, v, _ := verifyJSON(t, "--agent", a.listen, "--insecure-loopback", "--policy", pol, "--tofu")
		if code != exitNonCompliant || len(v.Violations) != 1 || v.Violations[0].Rule != "require_secure_boot" || v.Violations[0].Reason != "secure boot disabled" {
			t.Errorf("exit %d, violations %+v", code, v.Violations)
		}
	})

	t.Run("changed firmware log", func(t *testing.T) {
		changed := bytes.Clone(fw)
		i := bytes.Index(changed, []byte("kernel_cmdline: "))
		changed[i+30] ^= 1
		bad := daemon(changed)
		code, v, _ := verifyJSON(t, "--agent", bad.listen, "--insecure-loopback", "--policy", open, "--tofu")
		if code != exitUnverified || v.Status != verifier.StatusUnverified || !strings.Contains(v.Reason, "boot chain: firmware log: bootchain: event data mismatch") {
			t.Errorf("exit %d %s: %s", code, v.Status, v.Reason)
		}
	})
}
