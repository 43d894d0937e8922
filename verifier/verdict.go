package verifier

import (
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
	Host     string `json:"host"`
	Agent    string `json:"agent"`
	Status   string `json:"status"`
	Reason   string `json:"reason,omitempty"`
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
	// Boot is what the verification says about the boot (verdict_boot.go).
	Boot *Boot `json:"boot,omitempty"`

	Programs   []Program    `json:"programs"`
	Pending    []Program    `json:"pending,omitempty"`
	Unmeasured []Unmeasured `json:"unmeasured,omitempty"`
	Violations []Violation  `json:"violations"`
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
}

// Unmeasured is a program in the kernel that no measured load created.
type Unmeasured struct {
	Record uint64 `json:"record"`
	ID     uint32 `json:"prog_id"`
	Name   string `json:"name"`
	Type   string `json:"type"`
	Tag    string `json:"tag"`
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

// fill records a verified Result and its policy violations.
func (v *Verdict) fill(res *attest.Result, viol []attest.Violation) {
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
	v.Boot = BootOf(res.Boot())
	v.Programs = []Program{}
	for _, p := range res.Programs() {
		v.Programs = append(v.Programs, viewProgram(&p))
	}
	for _, p := range res.Pending() {
		v.Pending = append(v.Pending, viewProgram(&p))
	}
	for _, u := range res.Unmeasured() {
		v.Unmeasured = append(v.Unmeasured, Unmeasured{Record: u.Record, ID: u.Program.ID, Name: u.Program.Name,
			Type: lskel.ProgTypeName(u.Program.Type), Tag: hex.EncodeToString(u.Program.Tag[:])})
	}
	v.Violations = []Violation{}
	for _, x := range viol {
		v.Violations = append(v.Violations, Violation{x.Record, x.Artifact, string(x.Rule), x.Reason})
	}
}

func viewProgram(p *attest.Program) Program {
	m := p.Measurement
	out := Program{Record: p.Record, Name: m.Name, Scheme: m.Scheme.String(), Verdict: m.Verdict.String(),
		KernelCheck: m.KernelCheck.String(), LoaderSHA256: hex.EncodeToString(m.LoaderSHA256[:]),
		DataSHA256: hex.EncodeToString(m.DataSHA256[:]), Programs: map[string]string{}}
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
