package main

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/bpfattest/bpfattest/attest"
	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/measure"
)

// The verdicts of one host, from best to worst.
const (
	statusCompliant    = "compliant"
	statusNonCompliant = "non-compliant"
	statusUnverified   = "could-not-verify"
	statusUnreachable  = "unreachable"
)

// verdict is what verify prints and scan collects for one host: the
// status, why, and what the verified log shows in the kernel. Everything
// but Host, Agent, Status and Reason comes from a verified Result.
type verdict struct {
	Host     string `json:"host"`
	Agent    string `json:"agent"`
	Status   string `json:"status"`
	Reason   string `json:"reason,omitempty"`
	AKPinned string `json:"ak_pinned,omitempty"`

	BootID     string            `json:"boot_id,omitempty"`
	ResetCount uint32            `json:"reset_count,omitempty"`
	Rebooted   bool              `json:"rebooted,omitempty"`
	FromRecord uint64            `json:"from_record"`
	NextRecord uint64            `json:"next_record"`
	PCR        int               `json:"pcr"`
	PCRValues  map[string]string `json:"pcr_values,omitempty"`

	Programs   []programView    `json:"programs"`
	Pending    []programView    `json:"pending,omitempty"`
	Unmeasured []unmeasuredView `json:"unmeasured,omitempty"`
	Violations []violationView  `json:"violations"`
}

type programView struct {
	Record       uint64            `json:"record"`
	Name         string            `json:"name"`
	Scheme       string            `json:"scheme"`
	Verdict      string            `json:"signature_verdict"`
	KernelCheck  string            `json:"kernel_check"`
	Signer       string            `json:"signer,omitempty"`
	SignerCert   string            `json:"signer_cert_sha256,omitempty"`
	LoaderSHA256 string            `json:"loader_sha256"`
	DataSHA256   string            `json:"data_sha256"`
	Programs     map[string]string `json:"programs"`
	KernelIDs    []uint32          `json:"kernel_prog_ids,omitempty"`
}

type unmeasuredView struct {
	Record uint64 `json:"record"`
	ID     uint32 `json:"prog_id"`
	Name   string `json:"name"`
	Type   string `json:"type"`
	Tag    string `json:"tag"`
}

type violationView struct {
	Record   uint64 `json:"record"`
	Artifact string `json:"artifact"`
	Rule     string `json:"rule"`
	Reason   string `json:"reason"`
}

// exitCode maps the status to verify's exit code.
func (v *verdict) exitCode() int {
	switch v.Status {
	case statusCompliant:
		return exitCompliant
	case statusNonCompliant:
		return exitNonCompliant
	}
	return exitUnverified
}

// fill records a verified Result and its policy violations.
func (v *verdict) fill(res *attest.Result, viol []attest.Violation) {
	v.Status = statusCompliant
	if len(viol) > 0 {
		v.Status = statusNonCompliant
	}
	v.BootID, v.ResetCount, v.Rebooted = res.BootID(), res.Clock().ResetCount, res.Rebooted()
	v.FromRecord, v.NextRecord, v.PCR = res.FromRecord(), res.NextRecord(), res.PCR()
	v.PCRValues = map[string]string{}
	for h, d := range res.PCRValues() {
		v.PCRValues[cel.BankName(h)] = hex.EncodeToString(d)
	}
	v.Programs = []programView{}
	for _, p := range res.Programs() {
		v.Programs = append(v.Programs, viewProgram(&p))
	}
	for _, p := range res.Pending() {
		v.Pending = append(v.Pending, viewProgram(&p))
	}
	for _, u := range res.Unmeasured() {
		v.Unmeasured = append(v.Unmeasured, unmeasuredView{Record: u.Record, ID: u.Program.ID, Name: u.Program.Name,
			Type: progTypeName(u.Program.Type), Tag: hex.EncodeToString(u.Program.Tag[:])})
	}
	v.Violations = []violationView{}
	for _, x := range viol {
		v.Violations = append(v.Violations, violationView{x.Record, x.Artifact, string(x.Rule), x.Reason})
	}
}

func viewProgram(p *attest.Program) programView {
	m := p.Measurement
	out := programView{Record: p.Record, Name: m.Name, Scheme: m.Scheme.String(), Verdict: m.Verdict.String(),
		KernelCheck: m.KernelCheck.String(), LoaderSHA256: hex.EncodeToString(m.LoaderSHA256[:]),
		DataSHA256: hex.EncodeToString(m.DataSHA256[:]), Programs: map[string]string{}}
	out.Signer, out.SignerCert = signerText(m.Signer)
	for _, d := range m.Programs {
		out.Programs[d.Name] = hex.EncodeToString(d.Digest[:])
	}
	for _, k := range p.Kernel {
		out.KernelIDs = append(out.KernelIDs, k.ID)
	}
	return out
}

func signerText(s *measure.Signer) (name, cert string) {
	if s == nil {
		return "", ""
	}
	name = s.Subject
	if name == "" {
		name = s.ID
	}
	return name, hex.EncodeToString(s.CertSHA256)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printVerdict writes the verdict for people: the status line first, then
// the boot, what is loaded, and each violation with its record.
func printVerdict(w io.Writer, v *verdict) error {
	var b strings.Builder
	fmt.Fprintf(&b, "host:       %s (%s)\n", v.Host, v.Agent)
	fmt.Fprintf(&b, "verdict:    %s\n", strings.ToUpper(v.Status))
	if v.Reason != "" {
		fmt.Fprintf(&b, "reason:     %s\n", v.Reason)
	}
	if v.Status == statusCompliant || v.Status == statusNonCompliant {
		fmt.Fprintf(&b, "ak:         pinned by %s\n", v.AKPinned)
		reboot := ""
		if v.Rebooted {
			reboot = " (rebooted since the last verification)"
		}
		fmt.Fprintf(&b, "boot:       %s, reset count %d%s\n", v.BootID, v.ResetCount, reboot)
		switch {
		case v.FromRecord == v.NextRecord:
			fmt.Fprintf(&b, "log:        no new records since the last verification (%d verified), pcr %d\n", v.NextRecord, v.PCR)
		default:
			fmt.Fprintf(&b, "log:        records %d..%d replayed to the quoted pcr %d\n", v.FromRecord, v.NextRecord-1, v.PCR)
		}
		banks := make([]string, 0, len(v.PCRValues))
		for bank := range v.PCRValues {
			banks = append(banks, bank)
		}
		slices.Sort(banks)
		for _, bank := range banks {
			fmt.Fprintf(&b, "  %-8s %s\n", bank, v.PCRValues[bank])
		}
		fmt.Fprintf(&b, "loaded:     %d measured load(s)\n", len(v.Programs))
		for _, p := range v.Programs {
			writeProgram(&b, "", p)
		}
		for _, p := range v.Pending {
			writeProgram(&b, "pending ", p)
		}
		for _, u := range v.Unmeasured {
			fmt.Fprintf(&b, "  record %d: UNMEASURED program %d %q type %s tag %s\n", u.Record, u.ID, u.Name, u.Type, u.Tag)
		}
		fmt.Fprintf(&b, "violations: %d\n", len(v.Violations))
		for _, x := range v.Violations {
			fmt.Fprintf(&b, "  record %d (%s): %s: %s\n", x.Record, x.Artifact, x.Rule, x.Reason)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeProgram(b *strings.Builder, prefix string, p programView) {
	signer := p.Signer
	if signer == "" {
		signer = "-"
	}
	fmt.Fprintf(b, "  record %d: %s%s scheme=%s verdict=%s kernel_check=%s signer=%q\n",
		p.Record, prefix, p.Name, p.Scheme, p.Verdict, p.KernelCheck, signer)
	fmt.Fprintf(b, "    loader_sha256=%s data_sha256=%s\n", p.LoaderSHA256, p.DataSHA256)
	names := make([]string, 0, len(p.Programs))
	for n := range p.Programs {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintf(b, "    program %s sha256=%s\n", n, p.Programs[n])
	}
}
