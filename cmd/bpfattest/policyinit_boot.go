package main

import (
	"crypto"
	"encoding/hex"
	"fmt"
	"slices"

	"github.com/bpfattest/bpfattest/attest"
)

// defaultForbiddenCmdlineWords are kernel parameters policy init forbids
// when the known-good host does not use them: they hand the boot to a
// shell or another init, or weaken the kernel's own defences.
func defaultForbiddenCmdlineWords() []string {
	return []string{"init", "rdinit", "single", "emergency", "systemd.debug_shell", "nokaslr"}
}

// bootPolicyFromResult writes the boot rules a known-good host satisfies:
// the firmware log required when it verified, Secure Boot when on, its
// boot applications and kernel pinned, the default forbidden command-line
// words it does not use, its lockdown mode and unprivileged BPF setting as
// the least allowed. Notes say what could not be pinned and why.
func bootPolicyFromResult(res *attest.Result) (bootYAML, []string) {
	var y bootYAML
	var notes []string
	b := res.Boot()
	if b.Chain == nil {
		why := b.Problem
		notes = append(notes, fmt.Sprintf("no verified boot chain (%s): the policy pins no boot application, kernel or command line", why))
	} else {
		c := b.Chain
		y.RequireFirmwareLog = true
		switch {
		case c.SecureBoot.Known && c.SecureBoot.Enabled:
			y.RequireSecureBoot = true
		case c.SecureBoot.Known:
			notes = append(notes, "secure boot is disabled on the host: require_secure_boot is off")
		default:
			notes = append(notes, fmt.Sprintf("secure boot state unknown (%s): require_secure_boot is off", c.SecureBoot.Problem))
		}
		for _, app := range c.BootApps {
			d := app.Digests[crypto.SHA256]
			if d == nil {
				notes = append(notes, "the boot chain has no sha256 bank: boot applications and kernel are not pinned")
				y.AllowedBootApps = nil
				break
			}
			if h := hex.EncodeToString(d); !slices.Contains(y.AllowedBootApps, h) {
				y.AllowedBootApps = append(y.AllowedBootApps, h)
			}
		}
		if k := b.KernelImage(); k != nil {
			y.AllowedKernelSHA256 = []string{hex.EncodeToString(k.SHA256)}
		}
		switch cmdline := b.Cmdline(); {
		case cmdline == "":
			notes = append(notes, "no kernel command line measured (no GRUB kernel_cmdline event): forbidden_cmdline_words is not set")
		case c.Grub.UnreadEvents > 0:
			notes = append(notes, "pcr 8 has events that are not GRUB strings: forbidden_cmdline_words is not set")
		default:
			for _, w := range defaultForbiddenCmdlineWords() {
				p := &attest.Policy{Boot: attest.BootPolicy{ForbiddenCmdlineWords: []string{w}}}
				if v := attest.Evaluate(res, p); len(v) > 0 {
					notes = append(notes, fmt.Sprintf("the host's boot breaks forbidden_cmdline_words [%s] (%s): it is not forbidden", w, v[0].Reason))
					continue
				}
				y.ForbiddenCmdlineWords = append(y.ForbiddenCmdlineWords, w)
			}
		}
	}
	switch k := b.Kernel; {
	case k == nil:
		notes = append(notes, "the boot header records no kernel facts: required_lockdown and require_unprivileged_bpf_disabled are not set")
	default:
		if slices.Contains(attest.LockdownModes(), k.Lockdown) {
			y.RequiredLockdown = k.Lockdown
		}
		if k.UnprivilegedBPFDisabled.Known() && k.UnprivilegedBPFDisabled > 0 {
			y.RequireUnprivilegedBPFDisabled = true
		} else {
			notes = append(notes, fmt.Sprintf("kernel.unprivileged_bpf_disabled is %s on the host: require_unprivileged_bpf_disabled is off", k.UnprivilegedBPFDisabled))
		}
	}
	return y, notes
}
