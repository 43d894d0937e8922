package ear

import (
	"slices"

	"github.com/bpfattest/bpfattest/attest"
	"github.com/bpfattest/bpfattest/verifier"
)

// A row is one line of docs/ear.md's mapping: a verdict, built by hand to
// hold exactly one reason for the row's value, and the value and status it
// must give.
type row struct {
	name   string // also the golden file's name
	claim  string
	want   Claim
	status Tier
	v      *verifier.Verdict
}

// base is a compliant verdict for a host whose every claim is affirming:
// enrolled through its EK on a TPM device, observing by events, one signed
// load, the boot chain verified with Secure Boot on and pinned by the
// policy.
func base() *verifier.Verdict {
	return &verifier.Verdict{
		Host: "web1", Agent: "10.0.0.11:7433", Status: verifier.StatusCompliant,
		AKPinned: verifier.PinEKCredential, AKProvenance: "ek-certified", TPMKind: "device", Observer: "events",
		TPM:   &verifier.TPM{Manufacturer: "id:49465800", Vendor: "IFX", Model: "SLB9670", Firmware: "id:00070055"},
		Nonce: []byte("0123456789abcdef0123456789abcdef"),
		Boot: &verifier.Boot{FirmwareLog: "verified", BootPCRs: attest.DefaultBootPCRs(),
			SecureBoot: &verifier.SecureBoot{Known: true, Enabled: true}},
		Programs: []verifier.Program{{Record: 2, Name: "counter_lskel", Scheme: "kernel-lskel", Verdict: "OK", KernelCheck: "unavailable",
			Signer: "CN=signer", Programs: map[string]string{"count_sys_enter": "5988fc88"}, KernelIDs: []uint32{41}}},
		Violations:  []verifier.Violation{},
		PolicyRules: []string{"require_signed", "allowed_signers", "allow_simulator", "binding", "require_firmware_log", "require_secure_boot", "allowed_boot_apps", "allowed_kernel_sha256"},
	}
}

// with returns base changed by f.
func with(f func(v *verifier.Verdict)) *verifier.Verdict {
	v := base()
	f(v)
	return v
}

func violate(v *verifier.Verdict, rule, artifact string) {
	v.Status = verifier.StatusNonCompliant
	v.Violations = append(v.Violations, verifier.Violation{Record: 2, Artifact: artifact, Rule: rule, Reason: "broken"})
}

func dropRules(v *verifier.Verdict, rules ...string) {
	v.PolicyRules = slices.DeleteFunc(v.PolicyRules, func(r string) bool { return slices.Contains(rules, r) })
}

func unverified(check, reason string) func(*verifier.Verdict) {
	return func(v *verifier.Verdict) {
		*v = verifier.Verdict{Host: v.Host, Agent: v.Agent, Status: verifier.StatusUnverified, Check: check, Reason: reason,
			AKPinned: v.AKPinned, TPM: v.TPM}
	}
}

func rows() []row {
	return []row{
		// instance-identity
		{"identity-ek-certified", InstanceIdentity, IdentityRecognized, TierAffirming, base()},
		{"identity-operator-pinned", InstanceIdentity, IdentityRecognized, TierAffirming, with(func(v *verifier.Verdict) {
			v.AKPinned, v.AKProvenance = verifier.PinAKFile, "operator-pinned"
		})},
		{"identity-tofu", InstanceIdentity, IdentityFirstUse, TierWarning, with(func(v *verifier.Verdict) {
			v.AKPinned, v.AKProvenance = verifier.PinTOFU, "trust-on-first-use"
		})},
		{"identity-simulator-allowed", InstanceIdentity, IdentityUntrustworthy, TierContraindicated, with(func(v *verifier.Verdict) {
			v.AKPinned, v.AKProvenance, v.TPMKind = verifier.PinTOFU, "simulator", "simulator"
			dropRules(v, "allow_simulator")
		})},
		{"identity-simulator-refused", InstanceIdentity, IdentityUntrustworthy, TierContraindicated, with(func(v *verifier.Verdict) {
			v.AKPinned, v.AKProvenance, v.TPMKind = verifier.PinTOFU, "simulator", "simulator"
			violate(v, "allow_simulator", "")
		})},
		{"identity-unknown-pin", InstanceIdentity, NoClaim, TierAffirming, with(func(v *verifier.Verdict) {
			v.AKPinned, v.AKProvenance = "", ""
		})},
		{"identity-ak-mismatch", InstanceIdentity, IdentityNotRecognized, TierContraindicated,
			with(unverified("ak mismatch", "attest/verify: ak mismatch: the evidence's AK is not the pinned AK"))},
		// every claim: the evidence failed a check, no evidence, the verifier failed
		{"crypto-bad-signature", Executables, CryptoFailed, TierContraindicated,
			with(unverified("bad signature", "attest/verify: bad signature: ecdsa: verification error"))},
		{"crypto-replay-mismatch", Configuration, CryptoFailed, TierContraindicated,
			with(unverified("replay mismatch", "log does not match PCR: attest/verify: replay mismatch: sha256 pcr 14"))},
		{"crypto-boot-chain", Hardware, CryptoFailed, TierContraindicated,
			with(unverified("boot chain", "attest/verify: boot chain: bootchain: event data mismatch"))},
		{"no-evidence-unreachable", Executables, NoClaim, TierContraindicated, with(func(v *verifier.Verdict) {
			*v = verifier.Verdict{Host: v.Host, Agent: v.Agent, Status: verifier.StatusUnreachable, Reason: "quote: Unavailable: connection refused"}
		})},
		{"no-evidence-agent-error", InstanceIdentity, NoClaim, TierContraindicated,
			with(unverified("", "quote: OutOfRange: the log is longer than one quote carries"))},
		{"verifier-malfunction", Executables, VerifierMalfunction, TierContraindicated,
			with(unverified("bad options", "attest/verify: bad options: state of another pcr"))},
		// hardware
		{"hardware-ek-certified", Hardware, HardwareGenuine, TierAffirming, base()},
		{"hardware-not-enrolled", Hardware, NoClaim, TierAffirming, with(func(v *verifier.Verdict) {
			v.AKPinned, v.AKProvenance, v.TPM = verifier.PinAKFile, "operator-pinned", nil
		})},
		{"hardware-swtpm", Hardware, HardwareSoftwareTPM, TierContraindicated, with(func(v *verifier.Verdict) { v.TPMKind = "swtpm" })},
		{"hardware-simulator", Hardware, HardwareSoftwareTPM, TierContraindicated, with(func(v *verifier.Verdict) {
			v.TPMKind, v.AKProvenance = "simulator", "simulator"
			dropRules(v, "allow_simulator")
		})},
		// configuration
		{"config-approved", Configuration, ConfigApproved, TierAffirming, base()},
		{"config-no-firmware-log", Configuration, NoClaim, TierAffirming, with(func(v *verifier.Verdict) {
			v.Boot = &verifier.Boot{FirmwareLog: "none", Problem: "no firmware log", BootPCRs: attest.DefaultBootPCRs()}
			dropRules(v, "require_firmware_log", "require_secure_boot", "allowed_boot_apps", "allowed_kernel_sha256")
		})},
		{"config-no-boot-rules", Configuration, NoClaim, TierAffirming, with(func(v *verifier.Verdict) {
			dropRules(v, "require_firmware_log", "require_secure_boot", "allowed_boot_apps", "allowed_kernel_sha256")
		})},
		{"config-verified-earlier", Configuration, ConfigApproved, TierAffirming, with(func(v *verifier.Verdict) { v.Boot.FirmwareLog = "verified earlier" })},
		{"config-secure-boot-off", Configuration, ConfigVulnerable, TierWarning, with(func(v *verifier.Verdict) {
			v.Boot.SecureBoot.Enabled = false
			dropRules(v, "require_secure_boot")
		})},
		{"config-dma-protection-off", Configuration, ConfigVulnerable, TierWarning, with(func(v *verifier.Verdict) {
			v.Boot.SecureBoot.DMAProtectionDisabled = true
		})},
		{"config-secure-boot-unknown", Configuration, ConfigUnavailable, TierWarning, with(func(v *verifier.Verdict) {
			v.Boot.SecureBoot = &verifier.SecureBoot{Known: false, Problem: "a variable measured twice"}
			dropRules(v, "require_secure_boot")
		})},
		{"config-rule-broken", Configuration, ConfigUnsupportable, TierContraindicated, with(func(v *verifier.Verdict) {
			v.Boot.SecureBoot.Enabled = false
			violate(v, "require_secure_boot", "boot")
		})},
		{"config-no-log-required", Configuration, ConfigUnsupportable, TierContraindicated, with(func(v *verifier.Verdict) {
			v.Boot = &verifier.Boot{FirmwareLog: "none", Problem: "no firmware log"}
			violate(v, "require_firmware_log", "boot")
		})},
		// executables
		{"exec-bpf-and-boot-approved", Executables, ExecBootApproved, TierAffirming, base()},
		{"exec-bpf-approved", Executables, ExecBPFApproved, TierAffirming, with(func(v *verifier.Verdict) {
			dropRules(v, "allowed_kernel_sha256")
		})},
		{"exec-bpf-approved-no-chain", Executables, ExecBPFApproved, TierAffirming, with(func(v *verifier.Verdict) {
			v.Boot = &verifier.Boot{FirmwareLog: "none", Problem: "no firmware log"}
			dropRules(v, "require_firmware_log", "require_secure_boot", "allowed_boot_apps", "allowed_kernel_sha256")
		})},
		{"exec-allowed-unmeasured", Executables, ExecBootApproved, TierAffirming, with(func(v *verifier.Verdict) {
			v.Unmeasured = []verifier.Unmeasured{{Record: 1, ID: 7, Name: "sd_devices", Type: "cgroup_device", Tag: "8b9b2b1f0e5c4d3a", Allowed: true}}
		})},
		{"exec-unmeasured", Executables, ExecUnrecognized, TierWarning, with(func(v *verifier.Verdict) {
			v.Unmeasured = []verifier.Unmeasured{{Record: 5, ID: 110, Name: "sneaky", Type: "socket_filter", Tag: "0000006e0000005a"}}
		})},
		{"exec-unsigned-allowed", Executables, ExecUnrecognized, TierWarning, with(func(v *verifier.Verdict) {
			dropRules(v, "require_signed", "allowed_signers")
			v.Programs[0].Verdict, v.Programs[0].Scheme, v.Programs[0].Signer = "UNSIGNED", "unsigned", ""
		})},
		{"exec-unknown-signer-pending", Executables, ExecUnrecognized, TierWarning, with(func(v *verifier.Verdict) {
			dropRules(v, "require_signed", "allowed_signers")
			v.Pending = []verifier.Program{{Record: 9, Name: "pair_lskel", Scheme: "kernel-lskel", Verdict: "UNKNOWNKEY"}}
		})},
		{"exec-rule-broken", Executables, ExecContraindicated, TierContraindicated, with(func(v *verifier.Verdict) {
			v.Programs[0].Verdict = "UNSIGNED"
			violate(v, "require_signed", "counter_lskel")
			violate(v, "allowed_signers", "counter_lskel")
		})},
		{"exec-binding", Executables, ExecContraindicated, TierContraindicated, with(func(v *verifier.Verdict) {
			v.Programs[0].Binding = []string{"program 41 has tag 00, measured ff"}
			violate(v, "binding", "counter_lskel")
		})},
		{"exec-unmeasured-forbidden", Executables, ExecContraindicated, TierContraindicated, with(func(v *verifier.Verdict) {
			v.Unmeasured = []verifier.Unmeasured{{Record: 5, ID: 110, Name: "sneaky", Type: "socket_filter", Tag: "0000006e0000005a"}}
			v.PolicyRules = append(v.PolicyRules, "forbid_unmeasured")
			violate(v, "forbid_unmeasured", "sneaky")
		})},
		{"exec-boot-app-broken", Executables, ExecContraindicated, TierContraindicated, with(func(v *verifier.Verdict) {
			violate(v, "allowed_boot_apps", "boot")
		})},
		{"exec-unknown-rule", Executables, ExecContraindicated, TierContraindicated, with(func(v *verifier.Verdict) {
			violate(v, "a_rule_from_the_future", "counter_lskel")
		})},
		{"exec-bad-signature-loaded", Executables, CryptoFailed, TierContraindicated, with(func(v *verifier.Verdict) {
			v.Programs[0].Verdict = "BADSIG"
			violate(v, "require_signed", "counter_lskel")
		})},
		{"exec-no-observer", Executables, NoClaim, TierAffirming, with(func(v *verifier.Verdict) {
			v.Observer = "none"
			v.Programs = nil
		})},
		// the status when nothing is claimed
		{"status-none", Executables, NoClaim, TierNone, with(func(v *verifier.Verdict) {
			v.AKPinned, v.AKProvenance, v.TPM, v.Observer, v.Programs = "", "", nil, "none", nil
			v.Boot = &verifier.Boot{FirmwareLog: "none", Problem: "no firmware log"}
			dropRules(v, "require_firmware_log", "require_secure_boot", "allowed_boot_apps", "allowed_kernel_sha256")
		})},
	}
}
