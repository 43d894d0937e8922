package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bpfattest/bpfattest/internal/testutil"
)

// TestDemo runs the README's main command in process, as root: the agent
// loads the sample into the real kernel, the filter answers, the tampered
// copy is refused, and the quote verifies.
func TestDemo(t *testing.T) {
	testutil.RequireRoot(t)
	code, out, errs := run(t, "demo")
	if code != exitOK {
		t.Fatalf("demo exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	for _, want := range []string{
		"verdict OK",
		"outcome=loaded",
		"packet of 126 bytes -> 96",
		"packet of  46 bytes -> 46",
		"packet of  16 bytes -> 0",
		"embedded data hash BROKEN",
		"no bpf() call made",
		"quote verified",
		"rocfg_lskel: scheme kernel-lskel, verdict OK",
		"outcome=refused",
		"REPLAYED FIRMWARE LOG",
		"event log verified against the quoted boot pcrs 0-9",
		"secure boot:  enabled",
		"authority:  CN=TEST-ONLY bpfattest demo Secure Boot key",
		"kernel:       /boot/vmlinuz-6.18-demo, the file GRUB read (pcr 9)",
		"cmdline:      /boot/vmlinuz-6.18-demo root=/dev/vda1 ro lockdown=integrity",
		"derived from the firmware log and checked against the boot header",
		"boot chain: firmware log: bootchain: event data mismatch",
		"kernel.release=",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	if strings.Contains(out, "SKIPPED") {
		t.Errorf("demo skipped a step as root:\n%s", out)
	}
}

// TestDemoUnprivileged runs the demo binary as nobody: the agent runs
// without kernel access and still measures, logs and refuses the load, and
// the quote verifies; the output says plainly what was skipped.
func TestDemoUnprivileged(t *testing.T) {
	testutil.RequireRoot(t) // to switch to nobody
	setpriv := testutil.RequireTool(t, "setpriv")
	bin := filepath.Join(t.TempDir(), "bpfattest")
	build := exec.Command("go", "build", "-o", bin, ".")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	if err := os.Chmod(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", bin, "demo")
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "TMPDIR="+os.TempDir())
	b, err := cmd.CombinedOutput()
	out := string(b)
	if err != nil {
		t.Fatalf("unprivileged demo: %v\n%s", err, out)
	}
	for _, want := range []string{"SKIPPED: every kernel step", "SKIPPED: the kernel load", "kernel access unavailable: ",
		"embedded data hash BROKEN", "quote verified", "bpf_measurement", "no_kernel=true", "outcome=refused",
		"REPLAYED FIRMWARE LOG", "secure boot:  enabled", "derived from the firmware log and checked against the boot header"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
