package ear

import (
	"fmt"
	"slices"
	"strings"

	"github.com/bpfattest/bpfattest/attest"
	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/measure/cms"
	"github.com/bpfattest/bpfattest/verifier"
)

// Appraise maps one host's verdict to its EAR appraisal: a value for each
// claim of the vector, the reason for each, and the status, which is the
// vector's worst tier, or contraindicated for a host whose evidence did not
// verify (could-not-verify, unreachable): a host nobody appraised must not
// pass a relying party's check of the status. docs/ear.md is the table this
// function implements, one line per claim and value.
//
// The appraisal carries the verdict (VerdictClaim) and its nonce (the
// evidence's, when it verified); policy identifiers are FromVerdict's.
// Appraise panics on a nil verdict.
func Appraise(v *verifier.Verdict) *Appraisal {
	a := &appraiser{v: v, why: map[string]string{}}
	status := a.appraise()
	out := &Appraisal{Profile: AppraisalProfile, Status: status, Vector: &a.vec, Reasons: a.why, Verdict: v}
	if verified(v) && len(v.Nonce) > 0 {
		out.Nonce = Nonce(slices.Clone(v.Nonce))
	}
	return out
}

func verified(v *verifier.Verdict) bool {
	return v.Status == verifier.StatusCompliant || v.Status == verifier.StatusNonCompliant
}

// appraiser builds one vector and the reason for each claim.
type appraiser struct {
	v   *verifier.Verdict
	vec Vector
	why map[string]string
}

func (a *appraiser) set(name string, c Claim, format string, args ...any) {
	switch name {
	case InstanceIdentity:
		a.vec.InstanceIdentity = c
	case Configuration:
		a.vec.Configuration = c
	case Executables:
		a.vec.Executables = c
	case Hardware:
		a.vec.Hardware = c
	default:
		panic("ear: no such claim " + name)
	}
	a.why[name] = fmt.Sprintf(format, args...)
}

// claimed are the claims this verifier appraises.
var claimed = []string{InstanceIdentity, Configuration, Executables, Hardware}

func (a *appraiser) all(c Claim, format string, args ...any) {
	for _, n := range claimed {
		a.set(n, c, format, args...)
	}
}

func (a *appraiser) appraise() Tier {
	v := a.v
	switch v.Status {
	case verifier.StatusCompliant, verifier.StatusNonCompliant:
		a.identity()
		a.hardware()
		a.configuration()
		a.executables()
		return a.vec.Worst()
	case verifier.StatusUnreachable:
		a.all(NoClaim, "no evidence: the agent could not be reached (%s)", v.Reason)
	case verifier.StatusUnverified:
		switch v.Check {
		case "":
			a.all(NoClaim, "no evidence the verifier could check: %s", v.Reason)
		case attest.BadOptions.String():
			a.all(VerifierMalfunction, "the verifier could not appraise the evidence (its own options or state): %s", v.Reason)
		case attest.AKMismatch.String():
			a.all(CryptoFailed, "the evidence is not signed by the pinned attestation key: %s", v.Reason)
			a.set(InstanceIdentity, IdentityNotRecognized, "the quote is signed by another attestation key than the one pinned for this host (%s): %s", orUnknown(v.AKPinned), v.Reason)
		default:
			a.all(CryptoFailed, "the evidence failed the %q check: %s", v.Check, v.Reason)
		}
	default:
		a.all(NoClaim, "verdict status %q is not one this mapping knows", v.Status)
	}
	return TierContraindicated
}

func orUnknown(s string) string {
	if s == "" {
		return "pinning unknown"
	}
	return "pinned: " + s
}

// violated returns the violations of the rules for which claim, as
// "rule (artifact)" phrases, unique, in the verdict's order.
func (a *appraiser) violated(claim string) []string {
	var out []string
	for _, x := range a.v.Violations {
		if !slices.Contains(ruleClaims(x.Rule), claim) {
			continue
		}
		s := x.Rule
		if x.Artifact != "" {
			s += " (" + x.Artifact + ")"
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// ruleClaims returns the claims a violation of rule contraindicates. A
// rule this mapping does not know contraindicates executables: a new rule
// must never be a silent pass.
func ruleClaims(rule string) []string {
	switch attest.Rule(rule) {
	case attest.RuleSimulator:
		return []string{InstanceIdentity}
	case attest.RuleRequireFirmwareLog, attest.RuleRequireSecureBoot, attest.RuleLockdown,
		attest.RuleForbiddenCmdline, attest.RuleRequireUnprivilegedBPFDisabled:
		return []string{Configuration}
	case attest.RuleBootApps, attest.RuleKernels:
		// Boot code that is not allowed ran: both the boot chain's
		// configuration and the host's executables are contraindicated.
		return []string{Configuration, Executables}
	}
	return []string{Executables}
}

func (a *appraiser) hasRule(r attest.Rule) bool { return slices.Contains(a.v.PolicyRules, string(r)) }

func (a *appraiser) identity() {
	v := a.v
	switch p := v.AKProvenance; {
	case len(a.violated(InstanceIdentity)) > 0 || p == "simulator":
		a.set(InstanceIdentity, IdentityUntrustworthy, "the agent's start record says its TPM is the in-process simulator: its attestation key is software's")
	case p == "ek-certified":
		a.set(InstanceIdentity, IdentityRecognized, "the attestation key was enrolled through the TPM's EK certificate chain and a credential activation")
	case p == "operator-pinned":
		a.set(InstanceIdentity, IdentityRecognized, "the attestation key was pinned by an operator (an AK file)")
	case p == "trust-on-first-use":
		a.set(InstanceIdentity, IdentityFirstUse, "the attestation key is the one the agent presented at first contact (trust on first use): recognized, but nothing vouches for that first contact")
	default:
		a.set(InstanceIdentity, NoClaim, "the verdict does not say how the attestation key was pinned")
	}
}

func (a *appraiser) hardware() {
	v := a.v
	switch {
	case v.TPMKind == cel.TPMSimulator || v.TPMKind == cel.TPMSwtpm:
		a.set(Hardware, HardwareSoftwareTPM, "the agent's start record says its TPM is %s, software: no hardware protects its keys", v.TPMKind)
	case v.AKProvenance == "ek-certified":
		a.set(Hardware, HardwareGenuine, "the TPM's EK certificate chains to a root the verifier trusts%s", tpmName(v.TPM))
	default:
		a.set(Hardware, NoClaim, "no EK certificate: the host was not enrolled (bpfattest enroll)")
	}
}

func tpmName(t *verifier.TPM) string {
	if t == nil {
		return ""
	}
	var parts []string
	for _, s := range []string{t.Vendor, t.Manufacturer, t.Model, t.Firmware} {
		if s != "" {
			parts = append(parts, s)
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, " ") + ")"
}

// bootRules are the boot rules that approve a configuration (the mere
// presence of a firmware log does not).
var bootRules = []attest.Rule{attest.RuleRequireSecureBoot, attest.RuleBootApps, attest.RuleKernels,
	attest.RuleLockdown, attest.RuleForbiddenCmdline, attest.RuleRequireUnprivilegedBPFDisabled}

// chain reports whether a firmware log verified for the verdict's boot.
func (a *appraiser) chain() bool {
	b := a.v.Boot
	return b != nil && (b.FirmwareLog == "verified" || b.FirmwareLog == "verified earlier")
}

func (a *appraiser) configuration() {
	v := a.v
	if bad := a.violated(Configuration); len(bad) > 0 {
		a.set(Configuration, ConfigUnsupportable, "the policy's boot rules are broken: %s", strings.Join(bad, ", "))
		return
	}
	if !a.chain() {
		problem := "no boot section"
		if v.Boot != nil {
			problem = v.Boot.Problem
		}
		a.set(Configuration, NoClaim, "no firmware log verified for this boot (%s): nothing is claimed about the boot", problem)
		return
	}
	sb := v.Boot.SecureBoot
	switch {
	case sb != nil && sb.Known && !sb.Enabled:
		a.set(Configuration, ConfigVulnerable, "the verified firmware log shows Secure Boot disabled")
		return
	case sb != nil && sb.DMAProtectionDisabled:
		a.set(Configuration, ConfigVulnerable, "the verified firmware log shows DMA protection disabled")
		return
	case sb == nil || !sb.Known:
		problem := "not in the log"
		if sb != nil {
			problem = sb.Problem
		}
		a.set(Configuration, ConfigUnavailable, "the Secure Boot state could not be read from the verified firmware log: %s", problem)
		return
	}
	var rules []string
	for _, r := range bootRules {
		if a.hasRule(r) {
			rules = append(rules, string(r))
		}
	}
	if len(rules) == 0 {
		a.set(Configuration, NoClaim, "the boot chain verified with Secure Boot on, but the policy sets no boot rule: reported, not approved")
		return
	}
	a.set(Configuration, ConfigApproved, "the boot chain verified with Secure Boot on and the policy's boot rules hold: %s", strings.Join(rules, ", "))
}

// tampered are the signature verdicts of a signature that failed its
// cryptographic check (the agent refuses such loads: one in the kernel
// means an agent that did not).
var tampered = []string{cms.VerdictBadSig.String(), cms.VerdictUnexpected.String(), cms.VerdictFault.String()}

func (a *appraiser) executables() {
	v := a.v
	loads := append(slices.Clone(v.Programs), v.Pending...)
	var forged, unsigned, names []string
	for _, p := range loads {
		names = append(names, p.Name)
		switch {
		case slices.Contains(tampered, p.Verdict):
			forged = append(forged, fmt.Sprintf("%s (%s)", p.Name, p.Verdict))
		case p.Verdict != cms.VerdictOK.String():
			unsigned = append(unsigned, fmt.Sprintf("%s (%s)", p.Name, p.Verdict))
		}
	}
	var unknown []string
	for _, u := range v.Unmeasured {
		if !u.Allowed {
			unknown = append(unknown, fmt.Sprintf("%q (type %s)", u.Name, u.Type))
		}
	}
	bad := a.violated(Executables)
	switch {
	case len(forged) > 0:
		a.set(Executables, CryptoFailed, "a program in the kernel has a signature that failed its cryptographic check: %s", strings.Join(forged, ", "))
	case len(bad) > 0:
		a.set(Executables, ExecContraindicated, "the policy's program rules are broken: %s", strings.Join(bad, ", "))
	case len(unknown) > 0:
		a.set(Executables, ExecUnrecognized, "programs in the kernel without a measured load, which the policy does not name: %s", strings.Join(unknown, ", "))
	case len(unsigned) > 0:
		a.set(Executables, ExecUnrecognized, "programs in the kernel without a signature by a trusted signer (the policy lets them in, nothing vouches for them): %s", strings.Join(unsigned, ", "))
	case v.Observer == cel.ObserverNone:
		a.set(Executables, NoClaim, "the agent does not observe the kernel's programs (no kernel access): nothing is claimed about what runs")
	case a.chain() && a.hasRule(attest.RuleBootApps) && a.hasRule(attest.RuleKernels):
		a.set(Executables, ExecBootApproved, "every BPF program in the kernel is measured, signed by a trusted signer the policy allows and bound to its measurement (%s), and the boot applications and kernel are the ones the policy pins", loadList(names))
	default:
		a.set(Executables, ExecBPFApproved, "every BPF program in the kernel is measured, signed by a trusted signer the policy allows and bound to its measurement (%s); the boot's executables are not pinned by the policy", loadList(names))
	}
}

func loadList(names []string) string {
	if len(names) == 0 {
		return "no loads"
	}
	return fmt.Sprintf("%d load(s): %s", len(names), strings.Join(names, ", "))
}
