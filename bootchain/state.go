package bootchain

import (
	"crypto"
	"slices"
)

// State is what a verified firmware log says about the boot. Every digest
// in it is of a bank Verify replayed to a quoted value; strings are
// reported only when their event's digest is the hash of the string.
type State struct {
	// Banks are the quoted banks the log was replayed in, ascending.
	Banks []crypto.Hash
	// Unlogged are the quoted banks the log carries no digests for, left
	// out of the replay with Options.LoggedBanksOnly: nothing explains
	// their values.
	Unlogged []crypto.Hash
	// BootPCRs are the PCRs replayed, ascending.
	BootPCRs []int
	// Replayed lists, per bank and boot PCR, how many measured events the
	// log has for it and the value they replay to (the quoted value).
	Replayed []PCRReplay
	// Workarounds name the go-attestation firmware workarounds a replay
	// needed (events the firmware measured but did not log).
	Workarounds []Workaround
	// SecureBoot is the UEFI Secure Boot configuration recorded in PCR 7.
	SecureBoot SecureBoot
	// BootApps are PCR 4's code measurements in log order: the UEFI
	// applications the firmware (or shim) started. Every PCR 4 event whose
	// digest is not the hash of its data is one, whatever type the log
	// gives it (the type is not covered by the digest).
	BootApps []BootApp
	// LastBootApp is the index in BootApps of the last boot application,
	// the one taken as the last stage before the kernel (or the kernel, on
	// a boot without GRUB such as a unified kernel image); -1 if none.
	LastBootApp int
	// Grub is what GRUB measured into PCRs 8 and 9, nil if it measured
	// nothing (or those PCRs were not replayed).
	Grub *Grub
	// Agent is the agent PCR's value at the end of the firmware's events.
	Agent AgentStart
}

// PCRReplay is one boot PCR of one bank after the replay.
type PCRReplay struct {
	Bank   crypto.Hash
	PCR    int
	Events int
	Value  []byte
}

// Workaround is a go-attestation firmware workaround that made a PCR
// replay.
type Workaround struct {
	Bank   crypto.Hash
	PCR    int
	Detail string
}

// SecureBoot is go-attestation's reading of PCR 7 (and of the driver loads
// in PCR 2), summarised.
type SecureBoot struct {
	// Known is false when the state could not be read: PCR 7 not among the
	// boot PCRs, no quoted SHA-256 or SHA-1 bank (go-attestation compares
	// PCR 7 data with those only), or go-attestation refused PCR 7's events
	// (Problem says why: an unexpected event type, a variable measured
	// twice or after the separator, a UEFI debugger, Secure Boot enabled
	// without keys). A policy requiring Secure Boot must treat it as off.
	Known   bool
	Problem string
	// Enabled is the SecureBoot variable's value (1).
	Enabled bool
	// PK, KEK, DB and DBX are the signature databases as measured.
	PK, KEK, DB, DBX SignatureDB
	// BootAuthorities are the certificates that verified boot
	// applications after the PCR 7 separator (EV_EFI_VARIABLE_AUTHORITY:
	// db entries the firmware used, shim's vendor certificate, MOK
	// entries), in order.
	BootAuthorities []Cert
	// FirmwareAuthorities are those used before the separator (option
	// ROMs and drivers).
	FirmwareAuthorities []Cert
	// DMAProtectionDisabled is set when the firmware logged "DMA
	// Protection Disabled".
	DMAProtectionDisabled bool
}

// SignatureDB summarises a UEFI signature database variable.
type SignatureDB struct {
	Certs  []Cert
	Hashes int // EFI_CERT_SHA256 (and other hash) entries
}

// Cert names an X.509 certificate.
type Cert struct {
	Subject string
	SHA256  []byte // of the DER certificate
}

// BootApp is one code measurement of PCR 4, normally an
// EV_EFI_BOOT_SERVICES_APPLICATION event: the PE/COFF Authenticode hash of
// the image the firmware loaded (TCG PC Client PFP
// EV_EFI_BOOT_SERVICES_APPLICATION; UEFI §32.2.1 for the Authenticode
// hash), per replayed bank. It is not a hash of the file.
type BootApp struct {
	Event int
	// Type is the event type the log gives, a label (EventTypeName).
	Type    uint32
	Digests map[crypto.Hash][]byte
}

// Grub is what GRUB measured (its TPM module, or the distributions'
// equivalent patches): the strings of PCR 8 and the files of PCR 9.
type Grub struct {
	// Commands are the "grub_cmd: " strings of PCR 8, in order.
	Commands []string
	// KernelCmdline is the last "kernel_cmdline: " string: the booted
	// kernel's path followed by its command line, as GRUB passed them.
	// Empty if GRUB booted no Linux kernel.
	KernelCmdline string
	// ModuleCmdlines are the "module_cmdline: " strings, in order.
	ModuleCmdlines []string
	// UnreadEvents counts PCR 8 events that are not GRUB strings and
	// whose data nothing binds to their digest: measured, replayed, but
	// not readable. A policy on the command line should want none.
	UnreadEvents int
	// Files are the files GRUB read (PCR 9): the path GRUB logged and the
	// digest of the file's bytes, in order. Every PCR 9 event whose digest
	// is not the hash of its data is one, whatever its type.
	Files []GrubFile
	// Kernel is the entry of Files that is the kernel KernelCmdline names
	// (the last one with its path before the command line), or nil.
	Kernel *GrubFile
}

// GrubFile is one file GRUB measured into PCR 9. Path is a label: GRUB's
// event carries it, but the digest covers only the file's bytes.
type GrubFile struct {
	Event   int
	Path    string
	Digests map[crypto.Hash][]byte
}

// AgentStart is the agent PCR's value after the firmware's events on it:
// the value the agent's own log starts from (shim extends PCR 14 with
// MokList, MokListX and MokListTrusted before any agent runs).
type AgentStart struct {
	// PCR is the agent's PCR, -1 when Options.AgentPCR was NoAgentPCR.
	PCR int
	// Events is how many firmware events the log has for it.
	Events int
	// Start is the value those events fold to from the PCR's reset value,
	// for every bank the log carries (the reset value when Events is 0).
	Start map[crypto.Hash][]byte
	// Quoted reports whether the quote covered the agent PCR in every
	// replayed bank. Verify cannot check Start itself (the quoted value
	// includes the agent's own extends): the agent log's replay from Start
	// to the quoted value does. When Quoted is false and Events is not
	// zero, Start is derived from the log but nothing checked it.
	Quoted bool
}

// StartingValues returns the agent PCR's starting values per bank, the
// form attest.VerifyOptions.StartingValues takes. It is nil when there is
// no agent PCR.
func (s *State) StartingValues() map[crypto.Hash][]byte {
	if s.Agent.PCR < 0 {
		return nil
	}
	out := make(map[crypto.Hash][]byte, len(s.Agent.Start))
	for h, v := range s.Agent.Start {
		out[h] = slices.Clone(v)
	}
	return out
}

// LastStage returns the last boot application, or nil.
func (s *State) LastStage() *BootApp {
	if s.LastBootApp < 0 || s.LastBootApp >= len(s.BootApps) {
		return nil
	}
	return &s.BootApps[s.LastBootApp]
}

// Clone returns a deep copy of s: changing it changes neither s nor the
// values s holds.
func (s *State) Clone() *State {
	if s == nil {
		return nil
	}
	c := *s
	c.Banks = slices.Clone(s.Banks)
	c.Unlogged = slices.Clone(s.Unlogged)
	c.BootPCRs = slices.Clone(s.BootPCRs)
	c.Replayed = slices.Clone(s.Replayed)
	for i := range c.Replayed {
		c.Replayed[i].Value = slices.Clone(s.Replayed[i].Value)
	}
	c.Workarounds = slices.Clone(s.Workarounds)
	c.SecureBoot = s.SecureBoot.clone()
	c.BootApps = slices.Clone(s.BootApps)
	for i := range c.BootApps {
		c.BootApps[i].Digests = cloneDigests(s.BootApps[i].Digests)
	}
	if s.Grub != nil {
		g := *s.Grub
		g.Commands = slices.Clone(g.Commands)
		g.ModuleCmdlines = slices.Clone(g.ModuleCmdlines)
		g.Files = slices.Clone(g.Files)
		for i := range g.Files {
			g.Files[i].Digests = cloneDigests(g.Files[i].Digests)
		}
		if g.Kernel != nil {
			k := *g.Kernel
			k.Digests = cloneDigests(k.Digests)
			g.Kernel = &k
		}
		c.Grub = &g
	}
	c.Agent.Start = cloneDigests(s.Agent.Start)
	return &c
}

func (sb SecureBoot) clone() SecureBoot {
	c := sb
	for _, db := range []*SignatureDB{&c.PK, &c.KEK, &c.DB, &c.DBX} {
		db.Certs = cloneCerts(db.Certs)
	}
	c.BootAuthorities = cloneCerts(sb.BootAuthorities)
	c.FirmwareAuthorities = cloneCerts(sb.FirmwareAuthorities)
	return c
}

func cloneCerts(cs []Cert) []Cert {
	out := slices.Clone(cs)
	for i := range out {
		out[i].SHA256 = slices.Clone(out[i].SHA256)
	}
	return out
}

func cloneDigests(m map[crypto.Hash][]byte) map[crypto.Hash][]byte {
	if m == nil {
		return nil
	}
	out := make(map[crypto.Hash][]byte, len(m))
	for h, v := range m {
		out[h] = slices.Clone(v)
	}
	return out
}
