package verifier

import (
	"cmp"
	"encoding/hex"
	"fmt"

	"github.com/bpfattest/bpfattest/attest"
	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/lskel"
)

// The statuses of one host's verdict, from best to worst.
const (
	StatusCompliant    = "compliant"        // verified, and the policy holds
	StatusNonCompliant = "non-compliant"    // verified, and the policy is broken
	StatusUnverified   = "could-not-verify" // the agent answered, but not with evidence that verifies
	StatusUnreachable  = "unreachable"      // the agent could not be reached in time
)

// Verdict is the result of verifying one host: the status, why, and what
// the verified log shows in the kernel. Everything but Host, Agent, Status,
// Reason and AKPinned comes from a verified attest.Result. Its JSON form is
// what bpfattest verify --json prints and scan reports.
type Verdict struct {
	Host   string `json:"host"`
	Agent  string `json:"agent"`
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
	// Check names the verification check the evidence failed (attest's
	// Check, "bad signature", "replay mismatch", …) when the status is
	// could-not-verify because of it; empty otherwise.
	Check    string `json:"check,omitempty"`
	AKPinned string `json:"ak_pinned,omitempty"`
	// TPM is the TPM the enrolled EK certificate names (Host.TPM).
	TPM *TPM `json:"tpm,omitempty"`

	BootID     string            `json:"boot_id,omitempty"`
	ResetCount uint32            `json:"reset_count,omitempty"`
	Rebooted   bool              `json:"rebooted,omitempty"`
	FromRecord uint64            `json:"from_record"`
	NextRecord uint64            `json:"next_record"`
	PCR        int               `json:"pcr"`
	PCRValues  map[string]string `json:"pcr_values,omitempty"`
	// Nonce is the verifier's fresh nonce the verified quote answers
	// (base64 in JSON); set only when the evidence verified.
	Nonce []byte `json:"nonce,omitempty"`
	// Boot is what the verification says about the boot (verdict_boot.go).
	Boot *Boot `json:"boot,omitempty"`

	// AKProvenance says why the verifier trusts the AK: "ek-certified"
	// (enrolled through the TPM's EK certificate chain and a credential
	// activation), "operator-pinned" (an AK file given by an operator),
	// "trust-on-first-use" (the agent's word at first contact), or
	// "simulator" when the agent says its TPM is the in-process simulator,
	// whatever the pinning. TPMKind is the agent's word on its TPM (device,
	// swtpm, simulator) and Observer how it finds programs others load
	// (events, sweep, none), from its latest verified agent-start record.
	AKProvenance string `json:"ak_provenance,omitempty"`
	TPMKind      string `json:"tpm_kind,omitempty"`
	Observer     string `json:"observer,omitempty"`

	Programs   []Program    `json:"programs"`
	Pending    []Program    `json:"pending,omitempty"`
	Unmeasured []Unmeasured `json:"unmeasured,omitempty"`
	// History is what the verified records say happened in the range,
	// besides what is loaded now.
	History    *History    `json:"history,omitempty"`
	Violations []Violation `json:"violations"`
	// PolicyRules are the rules the policy applied (attest.Policy.Rules,
	// by YAML key): a rule not listed could not be broken, so "no
	// violation" says nothing about it.
	PolicyRules []string `json:"policy_rules,omitempty"`
}

// History is the verified range's story (attest.History), for people and
// tools: nothing the log recorded is left out of a verdict.
type History struct {
	FromRecord   uint64         `json:"from_record"`
	NextRecord   uint64         `json:"next_record"`
	Refused      []Attempt      `json:"refused_loads"`
	Failed       []Attempt      `json:"failed_loads"`
	Gone         []Attempt      `json:"loads_gone"`
	Unmeasured   []Unmeasured   `json:"unmeasured_seen"`
	Transient    []Transient    `json:"transient_programs"`
	AgentStarts  []AgentStart   `json:"agent_starts"`
	Restarts     int            `json:"agent_restarts"`
	Recoveries   []RecoveryView `json:"recoveries"`
	EventsLost   []EventsLost   `json:"events_lost"`
	PreviousBoot *PreviousBootV `json:"previous_boot,omitempty"`
	Summary      []string       `json:"summary"`
}

// Attempt is one load in the history: what was asked, by whom, and what
// came of it.
type Attempt struct {
	Record       uint64  `json:"record"`
	ResultRecord uint64  `json:"result_record,omitempty"`
	Name         string  `json:"name"`
	Verdict      string  `json:"signature_verdict"`
	Outcome      string  `json:"outcome,omitempty"`
	Reason       string  `json:"reason,omitempty"`
	Step         string  `json:"step,omitempty"`
	Errno        uint32  `json:"errno,omitempty"`
	Died         bool    `json:"died_with_agent,omitempty"`
	RequesterUID *uint32 `json:"requester_uid,omitempty"`
	RequesterPID uint32  `json:"requester_pid,omitempty"`
	RequesterExe string  `json:"requester_exe,omitempty"`
}

// Transient is a program that came and went between two reads of the
// kernel's program events: its id, tag and the process behind the event.
type Transient struct {
	Record    uint64 `json:"record"`
	ID        uint32 `json:"prog_id"`
	Tag       string `json:"tag"`
	LoaderPID uint32 `json:"pid,omitempty"`
	Loader    string `json:"process,omitempty"`
	Released  bool   `json:"seen_at_release,omitempty"`
}

// AgentStart is one agent process taking over the log.
type AgentStart struct {
	Record   uint64 `json:"record"`
	Version  string `json:"version"`
	PID      uint32 `json:"pid"`
	Observer string `json:"observer,omitempty"`
	TPM      string `json:"tpm,omitempty"`
	NoKernel bool   `json:"no_kernel,omitempty"`
}

// RecoveryView is what one start-up reconciliation did.
type RecoveryView struct {
	Record uint64 `json:"record"`
	Action string `json:"action"`
	RecNum uint64 `json:"acted_on_record"`
	Detail string `json:"detail"`
}

// EventsLost is one time the kernel dropped program events.
type EventsLost struct {
	Record uint64 `json:"record"`
	Count  uint64 `json:"at_least"`
}

// PreviousBootV is a boot whose end was never verified.
type PreviousBootV struct {
	BootID         string `json:"boot_id"`
	ResetCount     uint32 `json:"reset_count"`
	UnverifiedFrom uint64 `json:"unverified_from_record"`
}

// Program is one measured load in a Verdict: its measurement record and
// what the measurement says.
type Program struct {
	Record uint64 `json:"record"`
	Name   string `json:"name"`

	// How it is signed: the scheme, the userspace verdict, whether the
	// kernel checked the signature, and who signed.
	Scheme      string `json:"scheme"`
	Verdict     string `json:"signature_verdict"`
	KernelCheck string `json:"kernel_check"`
	Signer      string `json:"signer,omitempty"`
	SignerCert  string `json:"signer_cert_sha256,omitempty"`

	// What was loaded: the loader's and the data map's digests, and each
	// original program's, by name (hex SHA-256).
	LoaderSHA256 string            `json:"loader_sha256"`
	DataSHA256   string            `json:"data_sha256"`
	Programs     map[string]string `json:"programs"`

	// KernelIDs are the ids of the programs the load created that are
	// still in the kernel.
	KernelIDs []uint32 `json:"kernel_prog_ids,omitempty"`
	// Binding lists how the kernel's programs disagree with the
	// measurement, if they do.
	Binding []string `json:"binding_mismatch,omitempty"`
}

// Unmeasured is a program no measured load created: in the kernel now
// (Verdict.Unmeasured) or seen in the range (History.Unmeasured, Gone set
// for those no longer there).
type Unmeasured struct {
	Record    uint64 `json:"record"`
	ID        uint32 `json:"prog_id"`
	Name      string `json:"name"`
	Type      string `json:"type,omitempty"`
	Tag       string `json:"tag"`
	Discovery string `json:"discovery"`
	LoaderPID uint32 `json:"loader_pid,omitempty"`
	Loader    string `json:"loader,omitempty"`
	Gone      bool   `json:"gone,omitempty"`
	// Allowed: an allowed_unmeasured entry of the policy names it (in the
	// kernel now only: Verdict.Unmeasured).
	Allowed bool `json:"allowed,omitempty"`
}

// Violation is one policy violation.
type Violation struct {
	Record   uint64 `json:"record"`
	Artifact string `json:"artifact"`
	Rule     string `json:"rule"`
	Reason   string `json:"reason"`
}

// Reasons lists why a host is not compliant, one line each.
func (v *Verdict) Reasons() []string {
	if v.Reason != "" {
		return []string{v.Reason}
	}
	out := make([]string, 0, len(v.Violations))
	for _, x := range v.Violations {
		out = append(out, fmt.Sprintf("record %d (%s): %s: %s", x.Record, x.Artifact, x.Rule, x.Reason))
	}
	return out
}

// fill records a verified Result and the violations of pol.
func (v *Verdict) fill(res *attest.Result, pol *attest.Policy) {
	viol := attest.Evaluate(res, pol)
	v.Status = StatusCompliant
	if len(viol) > 0 {
		v.Status = StatusNonCompliant
	}
	v.BootID, v.ResetCount, v.Rebooted = res.BootID(), res.Clock().ResetCount, res.Rebooted()
	v.FromRecord, v.NextRecord, v.PCR = res.FromRecord(), res.NextRecord(), res.PCR()
	v.PCRValues = map[string]string{}
	for h, d := range res.PCRValues() {
		v.PCRValues[cel.BankName(h)] = hex.EncodeToString(d)
	}
	v.AKProvenance = provenance(v.AKPinned)
	if a := res.Agent(); a != nil {
		v.TPMKind, v.Observer = a.TPM, a.Observer
		if a.NoKernel {
			v.Observer = cel.ObserverNone
		}
		if a.TPM == cel.TPMSimulator {
			v.AKProvenance = "simulator"
		}
	}
	v.Boot = BootOf(res.Boot())
	v.Programs = []Program{}
	for _, p := range res.Programs() {
		v.Programs = append(v.Programs, viewProgram(&p))
	}
	for _, p := range res.Pending() {
		v.Pending = append(v.Pending, viewProgram(&p))
	}
	for _, u := range res.Unmeasured() {
		vu := viewUnmeasured(u)
		vu.Allowed = pol.AllowsUnmeasured(u.Program)
		v.Unmeasured = append(v.Unmeasured, vu)
	}
	v.History = viewHistory(res.History())
	v.Violations = []Violation{}
	for _, x := range viol {
		v.Violations = append(v.Violations, Violation{x.Record, x.Artifact, string(x.Rule), x.Reason})
	}
	for _, r := range pol.Rules() {
		v.PolicyRules = append(v.PolicyRules, string(r))
	}
}

// provenance names why the AK is trusted, from how it was pinned.
func provenance(pinned string) string {
	switch pinned {
	case PinEKCredential:
		return "ek-certified"
	case PinAKFile:
		return "operator-pinned"
	case PinTOFU:
		return "trust-on-first-use"
	}
	return ""
}

func viewProgram(p *attest.Program) Program {
	m := p.Measurement
	out := Program{Record: p.Record, Name: m.Name, Scheme: m.Scheme.String(), Verdict: m.Verdict.String(),
		KernelCheck: m.KernelCheck.String(), LoaderSHA256: hex.EncodeToString(m.LoaderSHA256[:]),
		DataSHA256: hex.EncodeToString(m.DataSHA256[:]), Programs: map[string]string{}, Binding: p.Binding}
	if m.Signer != nil {
		out.Signer, out.SignerCert = m.Signer.Name(), hex.EncodeToString(m.Signer.CertSHA256)
	}
	for _, d := range m.Programs {
		out.Programs[d.Name] = hex.EncodeToString(d.Digest[:])
	}
	for _, k := range p.Kernel {
		out.KernelIDs = append(out.KernelIDs, k.ID)
	}
	return out
}

func viewUnmeasured(u attest.Unmeasured) Unmeasured {
	p := u.Program
	out := Unmeasured{Record: u.Record, ID: p.ID, Name: p.Name, Tag: hex.EncodeToString(p.Tag[:]),
		Discovery: p.Discovery.String(), LoaderPID: p.PID, Loader: p.Exe, Gone: u.Gone}
	if out.Loader == "" {
		out.Loader = p.Comm
	}
	out.Type = lskel.ProgTypeName(p.Type)
	return out
}

func viewAttempt(p attest.Program) Attempt {
	m := p.Measurement
	a := Attempt{Record: p.Record, ResultRecord: p.ResultRecord, Name: m.Name, Verdict: m.Verdict.String(), Died: p.Died}
	if r := p.Result; r != nil {
		a.Outcome, a.Reason, a.Step, a.Errno = r.Outcome.String(), r.Reason, r.Step, r.Errno
	}
	if r := m.Requester; r != nil {
		uid := r.UID
		a.RequesterUID, a.RequesterPID, a.RequesterExe = &uid, r.PID, r.Exe
	}
	return a
}

// viewHistory turns the verified range's history into its JSON form, with
// a summary line per kind of event for people.
func viewHistory(h attest.History) *History {
	out := &History{FromRecord: h.From, NextRecord: h.Next, Refused: []Attempt{}, Failed: []Attempt{}, Gone: []Attempt{},
		Unmeasured: []Unmeasured{}, Transient: []Transient{}, AgentStarts: []AgentStart{}, Recoveries: []RecoveryView{}, EventsLost: []EventsLost{},
		Restarts: h.Restarts(), Summary: []string{}}
	for _, p := range h.Refused {
		out.Refused = append(out.Refused, viewAttempt(p))
	}
	for _, p := range h.Failed {
		out.Failed = append(out.Failed, viewAttempt(p))
	}
	for _, p := range h.Gone {
		out.Gone = append(out.Gone, viewAttempt(p))
	}
	for _, u := range h.Unmeasured {
		out.Unmeasured = append(out.Unmeasured, viewUnmeasured(u))
	}
	for _, t := range h.Transient {
		p := t.Program
		out.Transient = append(out.Transient, Transient{Record: t.Record, ID: p.ID, Tag: hex.EncodeToString(p.Tag[:]),
			LoaderPID: p.PID, Loader: cmp.Or(p.Exe, p.Comm), Released: p.Released})
	}
	for _, a := range h.AgentStarts {
		out.AgentStarts = append(out.AgentStarts, AgentStart{Record: a.Record, Version: a.Info.Version, PID: a.Info.PID,
			Observer: a.Info.Observer, TPM: a.Info.TPM, NoKernel: a.Info.NoKernel})
	}
	for _, r := range h.Recoveries {
		out.Recoveries = append(out.Recoveries, RecoveryView{Record: r.Record, Action: r.Info.Action.String(), RecNum: r.Info.RecNum, Detail: r.Info.Detail})
	}
	lost := uint64(0)
	for _, e := range h.EventsLost {
		out.EventsLost = append(out.EventsLost, EventsLost{Record: e.Record, Count: e.Count})
		lost += e.Count
	}
	if p := h.PreviousBoot; p != nil {
		out.PreviousBoot = &PreviousBootV{BootID: p.BootID, ResetCount: p.ResetCount, UnverifiedFrom: p.NextRecord}
	}
	say := func(format string, args ...any) { out.Summary = append(out.Summary, fmt.Sprintf(format, args...)) }
	if p := out.PreviousBoot; p != nil {
		say("the TPM was reset since the last verification: records %d and later of boot %s (reset count %d) were never verified", p.UnverifiedFrom, p.BootID, p.ResetCount)
	}
	if n := len(out.Refused); n > 0 {
		reasons := map[string]int{}
		for _, a := range out.Refused {
			reasons[a.Reason]++
		}
		say("%d load(s) refused by the agent (%d distinct reasons; first: %s)", n, len(reasons), out.Refused[0].Reason)
	}
	if n := len(out.Failed); n > 0 {
		say("%d load(s) failed, mismatched or died with the agent", n)
	}
	gone := 0
	for _, u := range out.Unmeasured {
		if u.Gone {
			gone++
		}
	}
	if n := len(out.Unmeasured); n > 0 {
		say("%d unmeasured program(s) recorded, %d of them gone before the quote", n, gone)
	}
	if n := len(out.Transient); n > 0 {
		say("%d program(s) came and went between two reads of the kernel's program events (ids, tags and processes recorded)", n)
	}
	if n := len(out.Gone); n > 0 {
		say("%d measured load(s) left the kernel entirely", n)
	}
	if out.Restarts > 0 {
		say("%d agent restart(s) within the boot", out.Restarts)
	}
	if n := len(out.Recoveries); n > 0 {
		say("%d start-up recovery action(s) on the log", n)
	}
	if lost > 0 {
		say("the kernel dropped at least %d program event(s) in %d burst(s): programs may have come and gone unseen (each was followed by a sweep)", lost, len(out.EventsLost))
	}
	return out
}
