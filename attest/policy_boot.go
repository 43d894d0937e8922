package attest

import (
	"bytes"
	"crypto"
	"fmt"
	"slices"
	"strings"

	"github.com/bpfattest/bpfattest/bootchain"
	"github.com/bpfattest/bpfattest/cel"
)

// BootPolicy is what a verifier requires of the boot (docs/policy.md),
// judged on Result.Boot: the verified firmware log and the kernel's facts
// from the boot header. The zero BootPolicy requires nothing.
type BootPolicy struct {
	// RequireFirmwareLog: a firmware log verified against the quoted boot
	// PCRs for this boot.
	RequireFirmwareLog bool
	// RequireSecureBoot: the verified log shows Secure Boot enabled (and
	// go-attestation could read its state).
	RequireSecureBoot bool
	// BootApps, when not empty, are the allowed SHA-256 digests of boot
	// applications: every PCR 4 code measurement (the PE/COFF Authenticode
	// hash of shim, GRUB, systemd-boot, a kernel or a unified kernel image)
	// must be one of them.
	BootApps [][]byte
	// Kernels, when not empty, are the allowed SHA-256 digests of the
	// booted kernel (Boot.KernelImage: the file GRUB measured into PCR 9,
	// else the last PCR 4 boot application).
	Kernels [][]byte
	// Lockdown, when set, is the least lockdown mode the kernel must
	// enforce: "none", "integrity" or "confidentiality".
	Lockdown string
	// ForbiddenCmdlineWords must not be in the kernel command line GRUB
	// measured: a word with "=" matches a parameter exactly, a word
	// without one matches a parameter of that name with or without a
	// value ("init" matches "init=/bin/sh").
	ForbiddenCmdlineWords []string
	// RequireUnprivilegedBPFDisabled: kernel.unprivileged_bpf_disabled was
	// 1 or 2 when the boot's log started.
	RequireUnprivilegedBPFDisabled bool
}

// The boot rules, by YAML key.
const (
	RuleRequireFirmwareLog             Rule = "require_firmware_log"
	RuleRequireSecureBoot              Rule = "require_secure_boot"
	RuleBootApps                       Rule = "allowed_boot_apps"
	RuleKernels                        Rule = "allowed_kernel_sha256"
	RuleLockdown                       Rule = "required_lockdown"
	RuleForbiddenCmdline               Rule = "forbidden_cmdline_words"
	RuleRequireUnprivilegedBPFDisabled Rule = "require_unprivileged_bpf_disabled"
)

// BootArtifact is the Artifact of a boot violation; its Record is 0, the
// boot header.
const BootArtifact = "boot"

// LockdownModes are the kernel's lockdown modes, weakest first
// (security/lockdown/lockdown.c).
func LockdownModes() []string { return []string{"none", "integrity", "confidentiality"} }

// KernelImage is the booted kernel as the verified firmware log
// identifies it.
type KernelImage struct {
	// Source is "grub" (the file GRUB read into PCR 9 and named as the
	// kernel on its command line: SHA-256 of the file's bytes) or
	// "boot-app" (the last PCR 4 boot application: its Authenticode hash).
	Source string
	// Path is GRUB's logged path (a label, not covered by the digest).
	Path string
	// Event is the event's position in the firmware log.
	Event  int
	SHA256 []byte
}

// KernelImage returns the booted kernel as the verified chain identifies
// it, or nil (no chain, no SHA-256 bank, nothing measured).
func (b *Boot) KernelImage() *KernelImage {
	if b == nil || b.Chain == nil {
		return nil
	}
	c := b.Chain
	if c.Grub != nil && c.Grub.Kernel != nil {
		if d := c.Grub.Kernel.Digests[crypto.SHA256]; d != nil {
			return &KernelImage{Source: "grub", Path: c.Grub.Kernel.Path, Event: c.Grub.Kernel.Event, SHA256: bytes.Clone(d)}
		}
		return nil
	}
	if app := c.LastStage(); app != nil && app.Digests[crypto.SHA256] != nil {
		return &KernelImage{Source: "boot-app", Event: app.Event, SHA256: bytes.Clone(app.Digests[crypto.SHA256])}
	}
	return nil
}

// Cmdline returns the kernel command line GRUB measured (its kernel_cmdline
// string: the kernel's path, then the parameters), "" when none.
func (b *Boot) Cmdline() string {
	if b == nil || b.Chain == nil || b.Chain.Grub == nil {
		return ""
	}
	return b.Chain.Grub.KernelCmdline
}

// evaluate returns the boot's violations of p.
func (p *BootPolicy) evaluate(b *Boot) []Violation {
	var out []Violation
	add := func(r Rule, format string, args ...any) {
		out = append(out, Violation{0, BootArtifact, r, fmt.Sprintf(format, args...)})
	}
	noChain := func() string {
		if b == nil {
			return "no boot chain"
		}
		return "no verified boot chain: " + b.Problem
	}
	var c *bootchain.State
	if b != nil {
		c = b.Chain
	}
	if p.RequireFirmwareLog && c == nil {
		add(RuleRequireFirmwareLog, "%s", noChain())
	}
	if p.RequireSecureBoot {
		switch {
		case c == nil:
			add(RuleRequireSecureBoot, "%s", noChain())
		case !c.SecureBoot.Known:
			add(RuleRequireSecureBoot, "secure boot state unknown: %s", c.SecureBoot.Problem)
		case !c.SecureBoot.Enabled:
			add(RuleRequireSecureBoot, "secure boot disabled")
		}
	}
	if len(p.BootApps) > 0 {
		if c == nil {
			add(RuleBootApps, "%s", noChain())
		}
		for _, app := range bootApps(c) {
			d := app.Digests[crypto.SHA256]
			switch {
			case d == nil:
				add(RuleBootApps, "boot application at event %d has no sha256 digest", app.Event)
			case !containsDigest(p.BootApps, d):
				add(RuleBootApps, "boot application at event %d (%s) sha256 %x is not allowed", app.Event, bootchain.EventTypeName(app.Type), d)
			}
		}
	}
	if len(p.Kernels) > 0 {
		k := b.KernelImage()
		switch {
		case c == nil:
			add(RuleKernels, "%s", noChain())
		case k == nil:
			add(RuleKernels, "no kernel measured in the sha256 bank (no GRUB kernel file, no PCR 4 boot application)")
		case !containsDigest(p.Kernels, k.SHA256):
			add(RuleKernels, "kernel (%s) sha256 %x is not allowed", describeKernel(k), k.SHA256)
		}
	}
	if len(p.ForbiddenCmdlineWords) > 0 {
		switch {
		case c == nil:
			add(RuleForbiddenCmdline, "%s", noChain())
		case c.Grub == nil || c.Grub.KernelCmdline == "":
			add(RuleForbiddenCmdline, "no kernel command line measured (no GRUB kernel_cmdline event in PCR 8)")
		case c.Grub.UnreadEvents > 0:
			add(RuleForbiddenCmdline, "PCR 8 has %d events that are not GRUB strings: the command line cannot be judged", c.Grub.UnreadEvents)
		default:
			for _, w := range p.ForbiddenCmdlineWords {
				if param, ok := cmdlineHas(c.Grub.KernelCmdline, w); ok {
					add(RuleForbiddenCmdline, "kernel command line has %q", param)
				}
			}
		}
	}
	var k *cel.KernelInfo
	if b != nil {
		k = b.Kernel
	}
	const noFacts = "the boot header does not record the kernel's facts (an agent that predates them)"
	if p.Lockdown != "" {
		modes := LockdownModes()
		switch {
		case k == nil:
			add(RuleLockdown, "%s", noFacts)
		case k.Lockdown == "":
			add(RuleLockdown, "the kernel's lockdown mode was not readable")
		case !slices.Contains(modes, k.Lockdown):
			add(RuleLockdown, "lockdown mode %q is not one this verifier knows", k.Lockdown)
		case slices.Index(modes, k.Lockdown) < slices.Index(modes, p.Lockdown):
			add(RuleLockdown, "lockdown %s, required at least %s", k.Lockdown, p.Lockdown)
		}
	}
	if p.RequireUnprivilegedBPFDisabled {
		switch {
		case k == nil:
			add(RuleRequireUnprivilegedBPFDisabled, "%s", noFacts)
		case !k.UnprivilegedBPFDisabled.Known():
			add(RuleRequireUnprivilegedBPFDisabled, "kernel.unprivileged_bpf_disabled was not readable")
		case k.UnprivilegedBPFDisabled == 0:
			add(RuleRequireUnprivilegedBPFDisabled, "kernel.unprivileged_bpf_disabled is 0: unprivileged users may load BPF programs")
		}
	}
	return out
}

func bootApps(c *bootchain.State) []bootchain.BootApp {
	if c == nil {
		return nil
	}
	return c.BootApps
}

func containsDigest(list [][]byte, d []byte) bool {
	return slices.ContainsFunc(list, func(x []byte) bool { return bytes.Equal(x, d) })
}

func describeKernel(k *KernelImage) string {
	if k.Source == "grub" {
		return fmt.Sprintf("GRUB's %s, event %d", k.Path, k.Event)
	}
	return fmt.Sprintf("last boot application, event %d", k.Event)
}

// cmdlineHas reports whether the command line (its first word is the
// kernel's path) has a parameter the word forbids, and returns it.
func cmdlineHas(cmdline, word string) (string, bool) {
	params := strings.Fields(cmdline)
	if len(params) > 0 {
		params = params[1:]
	}
	for _, p := range params {
		name, _, _ := strings.Cut(p, "=")
		if p == word || (!strings.Contains(word, "=") && name == word) {
			return p, true
		}
	}
	return "", false
}

// bootFile is the YAML form of a BootPolicy, inline in the policy file.
type bootFile struct {
	RequireFirmwareLog             bool     `yaml:"require_firmware_log"`
	RequireSecureBoot              bool     `yaml:"require_secure_boot"`
	AllowedBootApps                []string `yaml:"allowed_boot_apps"`
	AllowedKernelSHA256            []string `yaml:"allowed_kernel_sha256"`
	RequiredLockdown               string   `yaml:"required_lockdown"`
	ForbiddenCmdlineWords          []string `yaml:"forbidden_cmdline_words"`
	RequireUnprivilegedBPFDisabled bool     `yaml:"require_unprivileged_bpf_disabled"`
}

func (f *bootFile) policy() (BootPolicy, error) {
	p := BootPolicy{
		RequireFirmwareLog:             f.RequireFirmwareLog,
		RequireSecureBoot:              f.RequireSecureBoot,
		RequireUnprivilegedBPFDisabled: f.RequireUnprivilegedBPFDisabled,
	}
	for _, l := range []struct {
		key  string
		in   []string
		into *[][]byte
	}{{"allowed_boot_apps", f.AllowedBootApps, &p.BootApps}, {"allowed_kernel_sha256", f.AllowedKernelSHA256, &p.Kernels}} {
		for i, s := range l.in {
			d, err := hexField(s, 32)
			if err != nil || d == nil {
				return p, fmt.Errorf("%s[%d]: want 32 bytes of hex", l.key, i)
			}
			*l.into = append(*l.into, d)
		}
	}
	if f.RequiredLockdown != "" && !slices.Contains(LockdownModes(), f.RequiredLockdown) {
		return p, fmt.Errorf("required_lockdown: %q, want one of %s", f.RequiredLockdown, strings.Join(LockdownModes(), ", "))
	}
	p.Lockdown = f.RequiredLockdown
	for i, w := range f.ForbiddenCmdlineWords {
		if w == "" || strings.ContainsFunc(w, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			return p, fmt.Errorf("forbidden_cmdline_words[%d]: %q is not one command-line word", i, w)
		}
		p.ForbiddenCmdlineWords = append(p.ForbiddenCmdlineWords, w)
	}
	return p, nil
}
