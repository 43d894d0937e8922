package attest

import (
	"crypto"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/internal/testutil"
)

// TestBootPolicy evaluates each boot rule on the verified boot of a shim
// host (the Ubuntu 21.04 log: Secure Boot off, GRUB with "panic=-1" on its
// kernel command line) and on a Result without a firmware log: each broken
// rule is one violation, of record 0, artifact "boot", with its reason.
func TestBootPolicy(t *testing.T) {
	fw := testutil.GoAttestationLogs(t, logUbuntu)[logUbuntu]
	a := bootAgent(t, "sim", fw)
	n := freshNonce(t, 0)
	res, err := Verify(a.quoteBoot(n, 0, fw), a.bootOpts(n, nil))
	if err != nil {
		t.Fatal(err)
	}
	b := res.Boot()
	var apps []string
	for _, app := range b.Chain.BootApps {
		apps = append(apps, hex.EncodeToString(app.Digests[crypto.SHA256]))
	}
	kernel := hex.EncodeToString(b.KernelImage().SHA256)
	other := strings.Repeat("ab", 32)

	n2 := freshNonce(t, 1)
	o := a.bootOpts(n2, nil)
	o.StartingValues = b.Chain.StartingValues()
	noLog, err := Verify(a.quoteBoot(n2, 0, nil), o)
	if err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		name   string
		yaml   string
		res    *Result
		want   Rule
		reason string
	}{
		{"firmware log present", "require_firmware_log: true", res, "", ""},
		{"firmware log missing", "require_firmware_log: true", noLog, RuleRequireFirmwareLog, "no verified boot chain: no firmware log"},
		{"secure boot off", "require_secure_boot: true", res, RuleRequireSecureBoot, "secure boot disabled"},
		{"secure boot, no log", "require_secure_boot: true", noLog, RuleRequireSecureBoot, "no firmware log"},
		{"boot apps allowed", "allowed_boot_apps: [" + strings.Join(apps, ", ") + "]", res, "", ""},
		{"a boot app not allowed", "allowed_boot_apps: [" + apps[0] + "]", res, RuleBootApps, apps[1]},
		{"kernel allowed", "allowed_kernel_sha256: [" + kernel + "]", res, "", ""},
		{"kernel not allowed", "allowed_kernel_sha256: [" + other + "]", res, RuleKernels, "vmlinuz-5.11.0-1006-gcp"},
		{"kernel, no log", "allowed_kernel_sha256: [" + kernel + "]", noLog, RuleKernels, "no firmware log"},
		{"cmdline clean", "forbidden_cmdline_words: [init, single, nokaslr]", res, "", ""},
		{"cmdline word by name", "forbidden_cmdline_words: [panic]", res, RuleForbiddenCmdline, `"panic=-1"`},
		{"cmdline word exact", "forbidden_cmdline_words: [ro]", res, RuleForbiddenCmdline, `"ro"`},
		{"cmdline other value", "forbidden_cmdline_words: [panic=0]", res, "", ""},
		{"cmdline, no log", "forbidden_cmdline_words: [init]", noLog, RuleForbiddenCmdline, "no firmware log"},
		{"lockdown integrity", "required_lockdown: integrity", res, "", ""},
		{"lockdown none", "required_lockdown: none", noLog, "", ""},
		{"lockdown confidentiality", "required_lockdown: confidentiality", res, RuleLockdown, "lockdown integrity, required at least confidentiality"},
		{"unprivileged bpf disabled", "require_unprivileged_bpf_disabled: true", res, "", ""},
	} {
		p, err := ParsePolicy([]byte("version: 1\n" + c.yaml + "\n"))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		v := Evaluate(c.res, p)
		switch {
		case c.want == "" && len(v) > 0:
			t.Errorf("%s: %v", c.name, v)
		case c.want != "" && (len(v) != 1 || v[0].Rule != c.want || v[0].Record != 0 || v[0].Artifact != BootArtifact || !strings.Contains(v[0].Reason, c.reason)):
			t.Errorf("%s: %v, want one %s violation saying %q", c.name, v, c.want, c.reason)
		}
	}
}

// TestBootPolicyKernelFacts judges the kernel's facts: missing (an agent
// that predates them), unread, and each lockdown mode against each
// requirement.
func TestBootPolicyKernelFacts(t *testing.T) {
	modes := LockdownModes()
	for _, c := range []struct {
		name   string
		kernel *cel.KernelInfo
		rule   Rule
		reason string
	}{
		{"no facts", nil, RuleLockdown, "does not record"},
		{"lockdown unread", &cel.KernelInfo{UnprivilegedBPFDisabled: 1}, RuleLockdown, "not readable"},
		{"lockdown unknown", &cel.KernelInfo{Lockdown: "paranoid", UnprivilegedBPFDisabled: 1}, RuleLockdown, `"paranoid"`},
		{"no facts, bpf", nil, RuleRequireUnprivilegedBPFDisabled, "does not record"},
		{"bpf unread", &cel.KernelInfo{Lockdown: "confidentiality", UnprivilegedBPFDisabled: cel.SysctlUnread}, RuleRequireUnprivilegedBPFDisabled, "not readable"},
		{"bpf allowed", &cel.KernelInfo{Lockdown: "confidentiality"}, RuleRequireUnprivilegedBPFDisabled, "is 0"},
	} {
		p := &Policy{Boot: BootPolicy{Lockdown: "none", RequireUnprivilegedBPFDisabled: true}}
		v := p.Boot.evaluate(&Boot{Kernel: c.kernel})
		if !slices.ContainsFunc(v, func(v Violation) bool { return v.Rule == c.rule && strings.Contains(v.Reason, c.reason) }) {
			t.Errorf("%s: %v, want %s saying %q", c.name, v, c.rule, c.reason)
		}
	}
	for i, have := range modes {
		for j, want := range modes {
			p := BootPolicy{Lockdown: want}
			v := p.evaluate(&Boot{Kernel: &cel.KernelInfo{Lockdown: have}})
			if (len(v) > 0) != (i < j) {
				t.Errorf("lockdown %s against at least %s: %v", have, want, v)
			}
		}
	}
	for _, s := range []cel.Sysctl{1, 2} {
		p := BootPolicy{RequireUnprivilegedBPFDisabled: true}
		if v := p.evaluate(&Boot{Kernel: &cel.KernelInfo{UnprivilegedBPFDisabled: s}}); len(v) > 0 {
			t.Errorf("unprivileged_bpf_disabled %d: %v", s, v)
		}
	}
	if v := (&BootPolicy{}).evaluate(nil); len(v) > 0 {
		t.Errorf("zero boot policy: %v", v)
	}
}

// TestParseBootPolicy reads the boot keys and refuses bad values.
func TestParseBootPolicy(t *testing.T) {
	d := strings.Repeat("0a", 32)
	p, err := ParsePolicy([]byte(fmt.Sprintf(`version: 1
require_firmware_log: true
require_secure_boot: true
allowed_boot_apps: [%s]
allowed_kernel_sha256: ["%s"]
required_lockdown: integrity
forbidden_cmdline_words: [init, "module.sig_enforce=0"]
require_unprivileged_bpf_disabled: true
`, d, strings.ReplaceAll(strings.ToUpper(d), "0A", "0A:")[:95])))
	if err != nil {
		t.Fatal(err)
	}
	b := p.Boot
	if !b.RequireFirmwareLog || !b.RequireSecureBoot || !b.RequireUnprivilegedBPFDisabled || b.Lockdown != "integrity" ||
		len(b.BootApps) != 1 || len(b.Kernels) != 1 || b.Kernels[0][31] != 0x0a || !slices.Equal(b.ForbiddenCmdlineWords, []string{"init", "module.sig_enforce=0"}) {
		t.Errorf("boot policy %+v", b)
	}
	for name, doc := range map[string]string{
		"short boot app":   "allowed_boot_apps: [0a0a]",
		"not hex kernel":   "allowed_kernel_sha256: [" + strings.Repeat("zz", 32) + "]",
		"unknown lockdown": "required_lockdown: paranoid",
		"empty word":       `forbidden_cmdline_words: [""]`,
		"two words":        `forbidden_cmdline_words: ["init single"]`,
		"a word as a map":  "forbidden_cmdline_words: [{a: b}]",
		"secure boot yes":  "require_secure_boot: maybe",
	} {
		if _, err := ParsePolicy([]byte("version: 1\n" + doc + "\n")); !errors.Is(err, ErrPolicy) {
			t.Errorf("%s: %v, want ErrPolicy", name, err)
		}
	}
}
