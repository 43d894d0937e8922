package verifier

import (
	"crypto"
	"encoding/hex"
	"fmt"
	"slices"

	"github.com/bpfattest/bpfattest/attest"
	"github.com/bpfattest/bpfattest/bootchain"
	"github.com/bpfattest/bpfattest/cel"
)

// Boot is the boot section of a Verdict: what the verified firmware log
// says about the boot (when one verified for this boot) and what the
// kernel said about itself in the boot header. Digests are of the SHA-256
// bank, in hex.
type Boot struct {
	// FirmwareLog is "verified" (with this quote), "verified earlier"
	// (with an earlier quote of this boot, whose boot PCRs this quote
	// still matches) or "none"; Problem says why there is none.
	FirmwareLog string `json:"firmware_log"`
	Problem     string `json:"problem,omitempty"`
	// BootPCRs are the PCRs the quote covers besides the agent's.
	BootPCRs []int `json:"boot_pcrs"`

	SecureBoot *SecureBoot `json:"secure_boot,omitempty"`
	// BootApps are PCR 4's boot applications in log order (shim, GRUB,
	// systemd-boot, a kernel or a UKI): their Authenticode hashes.
	BootApps []BootApp `json:"boot_apps,omitempty"`
	// Kernel is the booted kernel as the log identifies it.
	Kernel *Kernel `json:"kernel,omitempty"`
	// Cmdline is the kernel command line GRUB measured (its first word
	// is the kernel's path).
	Cmdline string `json:"cmdline,omitempty"`
	// Grub is the rest of what GRUB measured: its commands (PCR 8) and
	// the files it read (PCR 9).
	Grub *Grub `json:"grub,omitempty"`
	// AgentPCRStartFromFirmware: the agent PCR's starting value was
	// checked against the value the firmware log's events on it fold to;
	// AgentPCRStart is that value per bank, when the log has events on it.
	AgentPCRStartFromFirmware bool              `json:"agent_pcr_start_from_firmware"`
	AgentPCRStart             map[string]string `json:"agent_pcr_start,omitempty"`
	// Workarounds are the firmware quirks the replay needed; UnloggedBanks
	// the quoted banks the firmware does not log (not replayed).
	Workarounds   []string `json:"workarounds,omitempty"`
	UnloggedBanks []string `json:"unlogged_banks,omitempty"`

	// The kernel's facts from the boot header; null when not read (or an
	// agent that predates them: KernelFacts false).
	KernelFacts             bool    `json:"kernel_facts"`
	KernelRelease           string  `json:"kernel_release,omitempty"`
	Lockdown                string  `json:"lockdown,omitempty"`
	UnprivilegedBPFDisabled *int    `json:"unprivileged_bpf_disabled"`
	BPFJIT                  *BPFJIT `json:"bpf_jit,omitempty"`
}

// SecureBoot is the UEFI Secure Boot configuration the log shows.
type SecureBoot struct {
	// Known is false when it could not be read (Problem says why): a
	// policy requiring Secure Boot then fails.
	Known   bool   `json:"known"`
	Problem string `json:"problem,omitempty"`
	Enabled bool   `json:"enabled"`
	// DB and DBX summarise the allowed and forbidden signature databases;
	// PK and KEK the keys that may change them.
	PK  SignatureDB `json:"pk"`
	KEK SignatureDB `json:"kek"`
	DB  SignatureDB `json:"db"`
	DBX SignatureDB `json:"dbx"`
	// Authorities are the certificates that verified boot applications
	// (db entries, shim's vendor certificate, MOK).
	Authorities []Cert `json:"authorities,omitempty"`
	// DMAProtectionDisabled: the firmware logged "DMA Protection Disabled".
	DMAProtectionDisabled bool `json:"dma_protection_disabled,omitempty"`
}

// SignatureDB is a UEFI signature database: its certificates by subject,
// and how many hash entries it has.
type SignatureDB struct {
	Certs  []Cert `json:"certs,omitempty"`
	Hashes int    `json:"hashes"`
}

// Cert names a certificate: subject and SHA-256 of the DER.
type Cert struct {
	Subject string `json:"subject"`
	SHA256  string `json:"sha256"`
}

// BootApp is one PCR 4 boot application.
type BootApp struct {
	Event  int    `json:"event"`
	Type   string `json:"type"`
	SHA256 string `json:"sha256,omitempty"`
}

// Kernel is the booted kernel: "grub" (the file GRUB read, PCR 9: SHA-256
// of its bytes; Path is GRUB's label) or "boot-app" (the last PCR 4 boot
// application: its Authenticode hash).
type Kernel struct {
	Source string `json:"source"`
	Path   string `json:"path,omitempty"`
	SHA256 string `json:"sha256"`
}

// Grub is what GRUB measured besides the kernel command line.
type Grub struct {
	Commands       []string   `json:"commands,omitempty"`
	ModuleCmdlines []string   `json:"module_cmdlines,omitempty"`
	Files          []GrubFile `json:"files,omitempty"`
	// UnreadEvents counts PCR 8 events that are not GRUB strings.
	UnreadEvents int `json:"unread_events,omitempty"`
}

// GrubFile is a file GRUB read: the path it logged (a label) and the
// SHA-256 of the bytes.
type GrubFile struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
}

// BPFJIT is net.core.bpf_jit_*; null when not read.
type BPFJIT struct {
	Enable   *int `json:"enable"`
	Harden   *int `json:"harden"`
	Kallsyms *int `json:"kallsyms"`
}

// BootOf is the Verdict's form of a Result's Boot.
func BootOf(b *attest.Boot) *Boot {
	if b == nil {
		return nil
	}
	v := &Boot{FirmwareLog: "none", Problem: b.Problem, BootPCRs: slices.Clone(b.BootPCRs)}
	if v.BootPCRs == nil {
		v.BootPCRs = []int{}
	}
	if c := b.Chain; c != nil {
		v.FirmwareLog = "verified"
		if b.FromState {
			v.FirmwareLog = "verified earlier"
		}
		v.SecureBoot = viewSecureBoot(&c.SecureBoot)
		for _, app := range c.BootApps {
			v.BootApps = append(v.BootApps, BootApp{Event: app.Event, Type: bootchain.EventTypeName(app.Type),
				SHA256: hex.EncodeToString(app.Digests[crypto.SHA256])})
		}
		if k := b.KernelImage(); k != nil {
			v.Kernel = &Kernel{Source: k.Source, Path: k.Path, SHA256: hex.EncodeToString(k.SHA256)}
		}
		v.Cmdline = b.Cmdline()
		if g := c.Grub; g != nil {
			vg := &Grub{Commands: g.Commands, ModuleCmdlines: g.ModuleCmdlines, UnreadEvents: g.UnreadEvents}
			for _, f := range g.Files {
				vg.Files = append(vg.Files, GrubFile{Path: f.Path, SHA256: hex.EncodeToString(f.Digests[crypto.SHA256])})
			}
			v.Grub = vg
		}
		v.AgentPCRStartFromFirmware = b.StartDerived
		if c.Agent.Events > 0 {
			v.AgentPCRStart = map[string]string{}
			for h, s := range c.StartingValues() {
				v.AgentPCRStart[cel.BankName(h)] = hex.EncodeToString(s)
			}
		}
		for _, w := range c.Workarounds {
			v.Workarounds = append(v.Workarounds, fmt.Sprintf("%s pcr %d: %s", cel.BankName(w.Bank), w.PCR, w.Detail))
		}
		for _, h := range c.Unlogged {
			v.UnloggedBanks = append(v.UnloggedBanks, cel.BankName(h))
		}
	}
	if k := b.Kernel; k != nil {
		v.KernelFacts = true
		v.KernelRelease, v.Lockdown = k.Release, k.Lockdown
		v.UnprivilegedBPFDisabled = sysctl(k.UnprivilegedBPFDisabled)
		v.BPFJIT = &BPFJIT{Enable: sysctl(k.BPFJITEnable), Harden: sysctl(k.BPFJITHarden), Kallsyms: sysctl(k.BPFJITKallsyms)}
	}
	return v
}

func viewSecureBoot(sb *bootchain.SecureBoot) *SecureBoot {
	db := func(d bootchain.SignatureDB) SignatureDB {
		return SignatureDB{Certs: viewCerts(d.Certs), Hashes: d.Hashes}
	}
	return &SecureBoot{Known: sb.Known, Problem: sb.Problem, Enabled: sb.Enabled,
		PK: db(sb.PK), KEK: db(sb.KEK), DB: db(sb.DB), DBX: db(sb.DBX),
		Authorities: viewCerts(sb.BootAuthorities), DMAProtectionDisabled: sb.DMAProtectionDisabled}
}

func viewCerts(cs []bootchain.Cert) []Cert {
	var out []Cert
	for _, c := range cs {
		out = append(out, Cert{Subject: c.Subject, SHA256: hex.EncodeToString(c.SHA256)})
	}
	return out
}

func sysctl(s cel.Sysctl) *int {
	if !s.Known() {
		return nil
	}
	n := int(s)
	return &n
}
