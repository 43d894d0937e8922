package attest

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/bpfattest/bpfattest/cel"
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

	// AllowedUnmeasured lists programs that may be in the kernel without a
	// measured load (those a host loads before any agent, such as
	// systemd's cgroup programs): an unmeasured program matching a rule
	// breaks neither ForbidUnmeasured, ForbidUnmeasuredHistory nor
	// ProgramTypes.
	AllowedUnmeasured []UnmeasuredRule
	// ForbidUnmeasuredHistory: no program outside AllowedUnmeasured may
	// have been in the kernel without a measured load at any time the
	// verified range covers, even one gone before the quote.
	ForbidUnmeasuredHistory bool
	// MaxRefusedLoads, when set, bounds the loads the agent refused in the
	// verified range (a stream of refused bad signatures is an attack
	// under way).
	MaxRefusedLoads *int
	// ForbidLostEvents: the kernel must not have dropped program events
	// in the verified range (programs may then have come and gone unseen).
	ForbidLostEvents bool
	// RequireEventObserver: the agent must observe programs others load
	// through the kernel's program events, not sweeps only (a sweep misses
	// a program that lives between two sweeps).
	RequireEventObserver bool
	// AllowSimulator accepts an agent that says it extends and quotes with
	// the in-process TPM simulator (cel.TPMSimulator): demos and tests.
	// Refused by default, the zero Policy included: nothing a simulator
	// quotes is evidence, and an agent pinned on first use gives no other
	// sign of it. (The agent's word is no proof either way: an EK
	// certificate chain is what proves a hardware TPM.)
	AllowSimulator bool
	// Boot is what the boot must be (policy_boot.go).
	Boot BootPolicy
}

// UnmeasuredRule matches an unmeasured program on every field it sets; at
// least one is set.
type UnmeasuredRule struct {
	Name         string  // the kernel's program name
	Type         *uint32 // enum bpf_prog_type
	Tag          []byte  // the kernel tag (8 bytes)
	XlatedSHA256 []byte  // SHA-256 of the translated instructions
}

// Matches reports whether the rule matches program p.
func (r *UnmeasuredRule) Matches(p *measure.KernelProgram) bool {
	if r.Name == "" && r.Type == nil && r.Tag == nil && r.XlatedSHA256 == nil {
		return false
	}
	return (r.Name == "" || r.Name == p.Name) &&
		(r.Type == nil || *r.Type == p.Type) &&
		(r.Tag == nil || bytes.Equal(r.Tag, p.Tag[:])) &&
		(r.XlatedSHA256 == nil || bytes.Equal(r.XlatedSHA256, p.XlatedSHA256))
}

// MatchesTransient reports whether the rule matches a program that came
// and went, of which only the tag is known: a rule that sets a tag matches
// by the tag alone (it identifies the instructions; the name and type the
// rule also names could not be read).
func (r *UnmeasuredRule) MatchesTransient(p *measure.TransientProgram) bool {
	return r.Tag != nil && bytes.Equal(r.Tag, p.Tag[:])
}

// allowedTransient reports whether an AllowedUnmeasured rule matches p.
func (p *Policy) allowedTransient(tp *measure.TransientProgram) bool {
	for i := range p.AllowedUnmeasured {
		if p.AllowedUnmeasured[i].MatchesTransient(tp) {
			return true
		}
	}
	return false
}

// allowedUnmeasured reports whether an AllowedUnmeasured rule matches p.
func (p *Policy) allowedUnmeasured(kp *measure.KernelProgram) bool {
	for i := range p.AllowedUnmeasured {
		if p.AllowedUnmeasured[i].Matches(kp) {
			return true
		}
	}
	return false
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
	RuleUnmeasuredHistory    Rule = "forbid_unmeasured_history"
	RuleMaxRefused           Rule = "max_refused_loads"
	RuleLostEvents           Rule = "forbid_lost_events"
	RuleEventObserver        Rule = "require_event_observer"
	RuleSimulator            Rule = "allow_simulator"
	// RuleBinding is broken by a load result whose programs disagree with
	// their measurement (count, names, types, kernel tags): the record does
	// not describe what the measured artifact loads. Every policy has it,
	// even the zero one.
	RuleBinding Rule = "binding"
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

// Evaluate returns every violation of p by what res shows: the boot (p.Boot,
// as record 0, artifact "boot"), the programs in the kernel (loads with
// programs present, pending loads, whose loader may be running, and
// unmeasured programs), and the history of the verified range (programs
// that came and went, refused loads, lost events, the agent's observer).
// Failed loads put nothing in the kernel and are judged only by the history
// rules. A load whose programs disagree with its measurement breaks
// RuleBinding, and an agent on the simulator RuleSimulator, whatever the
// policy. The order is the records' order.
func Evaluate(res *Result, p *Policy) []Violation {
	if res == nil {
		return nil
	}
	if p == nil {
		p = &Policy{}
	}
	out := p.Boot.evaluate(res.bootReport())
	lists := res.list()
	loads := append(slices.Clone(lists.programs), lists.pending...)
	slices.SortFunc(loads, func(a, b Program) int { return cmpU64(a.Record, b.Record) })
	bound := map[uint64]bool{}
	for i := range loads {
		out = append(out, p.evaluateLoad(&loads[i])...)
		bound[loads[i].Record] = true
	}
	// A load that stood in the range and whose programs have since left
	// still told a lie if it did not bind.
	for _, l := range res.history.Loaded {
		if !bound[l.Record] && len(l.Binding) > 0 {
			out = append(out, bindingViolation(&l))
		}
	}
	flagged := map[uint64]bool{}
	for _, u := range lists.unmeasured {
		if p.allowedUnmeasured(u.Program) {
			continue
		}
		name := u.Program.Name
		if p.ForbidUnmeasured {
			flagged[u.Record] = true
			out = append(out, Violation{u.Record, name, RuleForbidUnmeasured,
				fmt.Sprintf("program %d (tag %x) is in the kernel without a measured load%s", u.Program.ID, u.Program.Tag, loadedBy(u.Program))})
		}
		if len(p.ProgramTypes) > 0 && !slices.Contains(p.ProgramTypes, u.Program.Type) {
			out = append(out, Violation{u.Record, name, RuleProgramTypes,
				fmt.Sprintf("unmeasured program %d has type %s", u.Program.ID, progTypeName(u.Program.Type))})
		}
	}
	out = append(out, p.evaluateHistory(res, flagged)...)
	slices.SortStableFunc(out, func(a, b Violation) int { return cmpU64(a.Record, b.Record) })
	return out
}

// evaluateHistory applies the rules about the verified range.
func (p *Policy) evaluateHistory(res *Result, flagged map[uint64]bool) []Violation {
	h := &res.history
	var out []Violation
	if p.ForbidUnmeasuredHistory {
		for _, u := range h.Unmeasured {
			if flagged[u.Record] || p.allowedUnmeasured(u.Program) {
				continue
			}
			state := "still in the kernel"
			if u.Gone {
				state = "gone before the quote"
			}
			out = append(out, Violation{u.Record, u.Program.Name, RuleUnmeasuredHistory,
				fmt.Sprintf("program %d (tag %x, %s) was in the kernel without a measured load%s; %s",
					u.Program.ID, u.Program.Tag, u.Program.Discovery, loadedBy(u.Program), state)})
		}
		for _, tr := range h.Transient {
			if p.allowedTransient(&tr.Program) {
				continue
			}
			by := ""
			if tr.Program.PID != 0 {
				by = fmt.Sprintf(" by pid %d", tr.Program.PID)
				if n := cmp.Or(tr.Program.Exe, tr.Program.Comm); n != "" {
					by += " (" + n + ")"
				}
				if tr.Program.Released {
					by = " (released" + by + ")"
				} else {
					by = " (loaded" + by + ")"
				}
			}
			out = append(out, Violation{tr.Record, "", RuleUnmeasuredHistory,
				fmt.Sprintf("program %d (tag %x) came and went without a measured load%s", tr.Program.ID, tr.Program.Tag, by)})
		}
	}
	if refused := uint64(len(h.Refused)) + h.CountedRefused(); p.MaxRefusedLoads != nil && refused > uint64(max(*p.MaxRefusedLoads, 0)) {
		// Refusals the agent counted without a record each are refusals
		// all the same.
		v := Violation{Rule: RuleMaxRefused}
		var detail string
		reasons := map[string]int{}
		for _, r := range h.Refused {
			reasons[r.Result.Reason]++
		}
		first := ""
		if len(h.Refused) > 0 {
			v.Record, v.Artifact, first = h.Refused[0].Record, h.Refused[0].Measurement.Name, h.Refused[0].Result.Reason
		} else {
			for _, c := range h.Counted {
				if r, _ := c.Requests.Total(); r > 0 {
					v.Record, first = c.Record, "counted without a record each"
					break
				}
			}
		}
		detail = fmt.Sprintf("%d loads refused in records %d..%d, at most %d allowed (%d recorded one by one with %d distinct reasons, %d counted; first: %s)",
			refused, h.From, h.Next-1, *p.MaxRefusedLoads, len(h.Refused), len(reasons), h.CountedRefused(), first)
		v.Reason = detail
		out = append(out, v)
	}
	if p.ForbidLostEvents {
		for _, e := range h.EventsLost {
			out = append(out, Violation{e.Record, "", RuleLostEvents,
				fmt.Sprintf("the kernel dropped at least %d program events: programs may have come and gone unseen", e.Count)})
		}
	}
	if a := res.list().agent; a != nil && a.TPM == cel.TPMSimulator && !p.AllowSimulator {
		out = append(out, Violation{res.from, "", RuleSimulator,
			"the agent says it extends and quotes with the in-process TPM simulator: nothing it quotes is evidence (allow_simulator, for demos and tests)"})
	}
	if p.RequireEventObserver {
		a := res.list().agent
		switch {
		case a == nil:
			out = append(out, Violation{res.from, "", RuleEventObserver, "no verified agent-start record says how the agent observes programs"})
		case a.Observer != cel.ObserverEvents:
			obs := a.Observer
			if obs == "" {
				obs = "sweeps (an agent that predates program events)"
			}
			out = append(out, Violation{res.from, "", RuleEventObserver,
				fmt.Sprintf("the agent observes programs by %s, not by the kernel's program events", obs)})
		}
	}
	return out
}

// loadedBy says which process loaded an unmeasured program, where an event
// said.
func loadedBy(p *measure.KernelProgram) string {
	switch {
	case p.PID == 0:
		return ""
	case p.Exe != "":
		return fmt.Sprintf(", loaded by pid %d (%s)", p.PID, p.Exe)
	case p.Comm != "":
		return fmt.Sprintf(", loaded by pid %d (%s)", p.PID, p.Comm)
	}
	return fmt.Sprintf(", loaded by pid %d", p.PID)
}

func bindingViolation(prog *Program) Violation {
	return Violation{prog.Record, prog.Measurement.Name, RuleBinding,
		"the kernel's programs named by load result " + strconv.FormatUint(prog.ResultRecord, 10) +
			" are not the measured ones: " + strings.Join(prog.Binding, "; ")}
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
	if len(prog.Binding) > 0 {
		out = append(out, bindingViolation(prog))
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
