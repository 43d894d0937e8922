package attest

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"github.com/bpfattest/bpfattest/measure"
	"github.com/bpfattest/bpfattest/measure/cms"
)

// Policy is what a verifier requires of the programs a verified Result
// shows in the kernel. The zero Policy requires nothing. ParsePolicy reads
// one from YAML (docs/policy.md).
type Policy struct {
	// RequireSigned: every load must have a signature that verified
	// against a trusted signer (verdict OK) and an intact hash chain from
	// the signature to the programs.
	RequireSigned bool
	// RequireKernelChecked: the kernel itself must have verified every
	// load's signature, not only the agent in userspace.
	RequireKernelChecked bool
	// ForbidUnmeasured: no program may be in the kernel that no measured
	// load created.
	ForbidUnmeasured bool
	// Schemes, when not empty, are the signing schemes allowed.
	Schemes []measure.Scheme
	// Signers, when not empty, are the signers allowed: a load's signer
	// must match one rule.
	Signers []SignerRule
	// ProgramTypes, when not empty, are the program types (enum
	// bpf_prog_type) allowed, for measured and unmeasured programs.
	ProgramTypes []uint32
	// Artifacts pins digests by artifact name.
	Artifacts map[string]ArtifactPin
	// RequirePinned: every load must be of an artifact named in Artifacts.
	RequirePinned bool
	// Boot is what the boot must be (policy_boot.go).
	Boot BootPolicy
}

// SignerRule matches a signer on every field it sets; at least one is set.
type SignerRule struct {
	CertSHA256 []byte // SHA-256 of the signer's certificate (DER)
	SKID       []byte // subject key identifier
	Subject    string // certificate subject, as measured
}

// ArtifactPin fixes an artifact's digests. Nil fields are not pinned.
type ArtifactPin struct {
	LoaderSHA256 []byte
	DataSHA256   []byte
	// Programs maps an original program's name to its SHA-256; a program
	// of the artifact not listed is a violation once any is listed.
	Programs map[string][]byte
}

// Rule names the policy rule a Violation breaks; the values are the YAML
// keys.
type Rule string

// Rules.
const (
	RuleRequireSigned        Rule = "require_signed"
	RuleRequireKernelChecked Rule = "require_kernel_checked"
	RuleForbidUnmeasured     Rule = "forbid_unmeasured"
	RuleSchemes              Rule = "allowed_schemes"
	RuleSigners              Rule = "allowed_signers"
	RuleProgramTypes         Rule = "allowed_program_types"
	RuleLoaderDigest         Rule = "loader_sha256"
	RuleDataDigest           Rule = "data_sha256"
	RuleProgramDigest        Rule = "programs"
	RuleRequirePinned        Rule = "require_pinned"
)

// Violation is one way a verified Result breaks a Policy.
type Violation struct {
	// Record is the measurement record of the load, or the record of the
	// unmeasured program.
	Record uint64
	// Artifact names the artifact (or the kernel's name for an
	// unmeasured program).
	Artifact string
	Rule     Rule
	Reason   string
}

func (v Violation) String() string {
	return fmt.Sprintf("record %d (%s): %s: %s", v.Record, v.Artifact, v.Rule, v.Reason)
}

// Evaluate returns every violation of p by the boot res shows (p.Boot,
// as record 0, artifact "boot") and by the programs it shows in the
// kernel: loads with programs present, pending loads (their loader may be
// running) and unmeasured programs. Failed loads put nothing in the kernel
// and are not evaluated. A nil or zero Policy has no violations. The order
// is the records' order.
func Evaluate(res *Result, p *Policy) []Violation {
	if res == nil || p == nil {
		return nil
	}
	out := p.Boot.evaluate(res.boot)
	loads := append(slices.Clone(res.programs), res.pending...)
	slices.SortFunc(loads, func(a, b Program) int { return cmpU64(a.Record, b.Record) })
	for i := range loads {
		out = append(out, p.evaluateLoad(&loads[i])...)
	}
	for _, u := range res.unmeasured {
		name := u.Program.Name
		if p.ForbidUnmeasured {
			out = append(out, Violation{u.Record, name, RuleForbidUnmeasured,
				fmt.Sprintf("program %d (tag %x) is in the kernel without a measured load", u.Program.ID, u.Program.Tag)})
		}
		if len(p.ProgramTypes) > 0 && !slices.Contains(p.ProgramTypes, u.Program.Type) {
			out = append(out, Violation{u.Record, name, RuleProgramTypes,
				fmt.Sprintf("unmeasured program %d has type %s", u.Program.ID, progTypeName(u.Program.Type))})
		}
	}
	slices.SortStableFunc(out, func(a, b Violation) int { return cmpU64(a.Record, b.Record) })
	return out
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (p *Policy) evaluateLoad(prog *Program) []Violation {
	m := prog.Measurement
	var out []Violation
	add := func(r Rule, format string, args ...any) {
		out = append(out, Violation{prog.Record, m.Name, r, fmt.Sprintf(format, args...)})
	}
	if p.RequireSigned {
		if m.Verdict != cms.VerdictOK {
			add(RuleRequireSigned, "signature verdict %s (scheme %s)", m.Verdict, m.Scheme)
		}
		for _, l := range []struct {
			name string
			link measure.Link
		}{{"excl hash", m.ExclLink}, {"data hash", m.DataLink}} {
			// An unsigned load's links are absent; its verdict says enough.
			if m.Verdict == cms.VerdictOK && l.link != measure.LinkHolds && l.link != measure.LinkKernelBound {
				add(RuleRequireSigned, "%s link %s: the signature does not cover the programs", l.name, l.link)
			}
		}
	}
	if p.RequireKernelChecked && m.KernelCheck != measure.KernelCheckVerified {
		add(RuleRequireKernelChecked, "kernel check %s", m.KernelCheck)
	}
	if len(p.Schemes) > 0 && !slices.Contains(p.Schemes, m.Scheme) {
		add(RuleSchemes, "scheme %s", m.Scheme)
	}
	if len(p.Signers) > 0 && !p.signerAllowed(m) {
		add(RuleSigners, "signer %s", describeSigner(m))
	}
	if len(p.ProgramTypes) > 0 {
		for _, pd := range m.Programs {
			if !slices.Contains(p.ProgramTypes, pd.Type) {
				add(RuleProgramTypes, "program %q has type %s", pd.Name, progTypeName(pd.Type))
			}
		}
	}
	pin, pinned := p.Artifacts[m.Name]
	if !pinned {
		if p.RequirePinned {
			add(RuleRequirePinned, "artifact %q is not pinned", m.Name)
		}
		return out
	}
	if pin.LoaderSHA256 != nil && !bytes.Equal(pin.LoaderSHA256, m.LoaderSHA256[:]) {
		add(RuleLoaderDigest, "loader sha256 %x, pinned %x", m.LoaderSHA256, pin.LoaderSHA256)
	}
	if pin.DataSHA256 != nil && !bytes.Equal(pin.DataSHA256, m.DataSHA256[:]) {
		add(RuleDataDigest, "data sha256 %x, pinned %x", m.DataSHA256, pin.DataSHA256)
	}
	if len(pin.Programs) > 0 {
		for _, pd := range m.Programs {
			want, ok := pin.Programs[pd.Name]
			switch {
			case !ok:
				add(RuleProgramDigest, "program %q is not pinned", pd.Name)
			case !bytes.Equal(want, pd.Digest[:]):
				add(RuleProgramDigest, "program %q sha256 %x, pinned %x", pd.Name, pd.Digest, want)
			}
		}
	}
	return out
}

// signerAllowed reports whether a rule matches the load's signer. Only a
// signature that verified (verdict OK) has a signer to match.
func (p *Policy) signerAllowed(m *measure.Measurement) bool {
	s := m.Signer
	if s == nil || m.Verdict != cms.VerdictOK {
		return false
	}
	for _, r := range p.Signers {
		if r.CertSHA256 == nil && r.SKID == nil && r.Subject == "" {
			continue
		}
		if (r.CertSHA256 == nil || bytes.Equal(r.CertSHA256, s.CertSHA256)) &&
			(r.SKID == nil || bytes.Equal(r.SKID, s.KeyID)) &&
			(r.Subject == "" || r.Subject == s.Subject) {
			return true
		}
	}
	return false
}

func describeSigner(m *measure.Measurement) string {
	s := m.Signer
	if s == nil {
		return fmt.Sprintf("none (verdict %s)", m.Verdict)
	}
	var parts []string
	if len(s.CertSHA256) > 0 {
		parts = append(parts, fmt.Sprintf("cert_sha256 %x", s.CertSHA256))
	}
	if len(s.KeyID) > 0 {
		parts = append(parts, fmt.Sprintf("skid %x", s.KeyID))
	}
	if s.Subject != "" {
		parts = append(parts, fmt.Sprintf("subject %q", s.Subject))
	}
	if s.ID != "" {
		parts = append(parts, "id "+s.ID)
	}
	return strings.Join(parts, ", ") + fmt.Sprintf(" (verdict %s)", m.Verdict)
}
