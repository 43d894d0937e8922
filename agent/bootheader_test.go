package agent_test

import (
	"bytes"
	"crypto"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/bpfattest/bpfattest/agent"
	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/internal/tpm"
)

// TestSimulatorBoot: the simulator boot hook runs before the agent starts
// its log, so the boot header starts from what it extended (as from what
// shim extends on a real host), and the header records the kernel's own
// facts, as this machine's kernel states them.
func TestSimulatorBoot(t *testing.T) {
	var extended map[crypto.Hash][]byte
	cfg := agent.Config{TPM: "sim", StateDir: t.TempDir(), ObserverInterval: -1, NoKernel: true,
		SimulatorBoot: func(d *tpm.Device) error {
			digests := map[crypto.Hash][]byte{}
			for _, h := range d.Banks() {
				digests[h] = bytes.Repeat([]byte{0x14}, h.Size())
			}
			if err := d.Extend(14, digests); err != nil {
				return err
			}
			var err error
			extended, err = d.ReadPCR(14)
			return err
		}}
	a, err := agent.New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	recs, err := a.Records(0)
	if err != nil {
		t.Fatal(err)
	}
	boot, err := cel.ParseBootInfo(recs[0].Content)
	if err != nil {
		t.Fatal(err)
	}
	for h, v := range extended {
		if !bytes.Equal(boot.Start[h], v) || bytes.Equal(v, make([]byte, h.Size())) {
			t.Errorf("%v: header starts at %x, the hook left %x", h, boot.Start[h], v)
		}
	}
	k := boot.Kernel
	if k == nil {
		t.Fatal("boot header without the kernel's facts")
	}
	release, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		t.Fatal(err)
	}
	if k.Release != strings.TrimSpace(string(release)) || *k != a.Status().Kernel {
		t.Errorf("kernel facts %+v, status %+v, release %q", *k, a.Status().Kernel, release)
	}
	if lockdown, err := os.ReadFile("/sys/kernel/security/lockdown"); err == nil && !strings.Contains(string(lockdown), "["+k.Lockdown+"]") {
		t.Errorf("lockdown %q, the kernel says %q", k.Lockdown, lockdown)
	}

	// A hook that fails stops New.
	a.Close()
	boom := errors.New("boom")
	cfg.StateDir, cfg.SimulatorBoot = t.TempDir(), func(*tpm.Device) error { return boom }
	if _, err := agent.New(t.Context(), cfg); !errors.Is(err, boom) {
		t.Errorf("New with a failing hook: %v", err)
	}
}
