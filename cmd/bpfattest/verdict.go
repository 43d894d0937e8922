package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/bpfattest/bpfattest/verifier"
)

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printVerdict writes the verdict for people: the status line first, then
// the boot, what is loaded, and each violation with its record.
func printVerdict(w io.Writer, v *verifier.Verdict) error {
	var b strings.Builder
	fmt.Fprintf(&b, "host:       %s (%s)\n", v.Host, v.Agent)
	fmt.Fprintf(&b, "verdict:    %s\n", strings.ToUpper(v.Status))
	if v.Reason != "" {
		fmt.Fprintf(&b, "reason:     %s\n", v.Reason)
	}
	if v.Status == verifier.StatusCompliant || v.Status == verifier.StatusNonCompliant {
		fmt.Fprintf(&b, "ak:         pinned by %s (%s)\n", v.AKPinned, v.AKProvenance)
		writeTPM(&b, v.TPM)
		if v.TPMKind != "" || v.Observer != "" {
			fmt.Fprintf(&b, "agent:      tpm %s, observer %s (the agent's word, from its start record)\n", orDash(v.TPMKind), orDash(v.Observer))
		}
		reboot := ""
		if v.Rebooted {
			reboot = " (rebooted since the last verification)"
		}
		fmt.Fprintf(&b, "boot:       %s, reset count %d%s\n", v.BootID, v.ResetCount, reboot)
		writeBoot(&b, v.Boot, v.PCR)
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
			fmt.Fprintf(&b, "  record %d: UNMEASURED program %d %q type %s tag %s (%s%s)\n", u.Record, u.ID, u.Name, u.Type, u.Tag, u.Discovery, loaderText(u))
		}
		writeHistory(&b, v.History)
		fmt.Fprintf(&b, "violations: %d\n", len(v.Violations))
		for _, x := range v.Violations {
			fmt.Fprintf(&b, "  record %d (%s): %s: %s\n", x.Record, x.Artifact, x.Rule, x.Reason)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeHistory tells what the verified range recorded besides what is
// loaded now: a summary line per kind, then each event with its record.
func writeHistory(b *strings.Builder, h *verifier.History) {
	if h == nil {
		return
	}
	if len(h.Summary) == 0 {
		fmt.Fprintf(b, "history:    nothing else happened in records %d..%d\n", h.FromRecord, max(h.NextRecord, 1)-1)
		return
	}
	fmt.Fprintf(b, "history:    records %d..%d\n", h.FromRecord, max(h.NextRecord, 1)-1)
	for _, line := range h.Summary {
		fmt.Fprintf(b, "  %s\n", line)
	}
	for _, a := range h.Refused {
		fmt.Fprintf(b, "  record %d: REFUSED %s (verdict %s)%s: %s\n", a.Record, a.Name, a.Verdict, requesterText(a), a.Reason)
	}
	for _, a := range h.Failed {
		what := strings.ToUpper(a.Outcome)
		if a.Died {
			what = "DIED WITH THE AGENT"
		}
		detail := a.Reason
		if a.Step != "" {
			detail = fmt.Sprintf("%s errno %d %s", a.Step, a.Errno, a.Reason)
		}
		fmt.Fprintf(b, "  record %d: %s %s%s: %s\n", a.Record, what, a.Name, requesterText(a), strings.TrimSpace(detail))
	}
	for _, a := range h.Gone {
		fmt.Fprintf(b, "  record %d: %s left the kernel (every program unloaded)\n", a.Record, a.Name)
	}
	for _, u := range h.Unmeasured {
		state := "still loaded"
		if u.Gone {
			state = "gone"
		}
		fmt.Fprintf(b, "  record %d: unmeasured program %d %q tag %s (%s%s), %s\n", u.Record, u.ID, u.Name, u.Tag, u.Discovery, loaderText(u), state)
	}
	for _, tr := range h.Transient {
		by := ""
		if tr.LoaderPID != 0 {
			by = fmt.Sprintf(" (pid %d %s)", tr.LoaderPID, tr.Loader)
		}
		fmt.Fprintf(b, "  record %d: transient program %d tag %s%s came and went\n", tr.Record, tr.ID, tr.Tag, by)
	}
	for _, a := range h.AgentStarts {
		fmt.Fprintf(b, "  record %d: agent %s started (pid %d, tpm %s, observer %s)\n", a.Record, a.Version, a.PID, orDash(a.TPM), orDash(a.Observer))
	}
	for _, r := range h.Recoveries {
		fmt.Fprintf(b, "  record %d: recovery %s of record %d: %s\n", r.Record, r.Action, r.RecNum, r.Detail)
	}
	for _, e := range h.EventsLost {
		fmt.Fprintf(b, "  record %d: the kernel dropped at least %d program events; a sweep followed\n", e.Record, e.Count)
	}
	for _, c := range h.Counted {
		fmt.Fprintf(b, "  record %d: uid %d gid %d: %d load(s) refused%s and %d turned away before measuring, counted without a record each\n",
			c.Record, c.UID, c.GID, c.Refused, verdictCounts(c.Verdicts), c.Throttled)
	}
}

// verdictCounts renders refusals by signature verdict: " (BADSIG 3, UNSIGNED 1)".
func verdictCounts(m map[string]uint64) string {
	if len(m) == 0 {
		return ""
	}
	parts := make([]string, 0, len(m))
	for _, v := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", v, m[v]))
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

func requesterText(a verifier.Attempt) string {
	if a.RequesterUID == nil {
		return ""
	}
	s := fmt.Sprintf(" asked by uid %d pid %d", *a.RequesterUID, a.RequesterPID)
	if a.RequesterExe != "" {
		s += " (" + a.RequesterExe + ")"
	}
	return s
}

func loaderText(u verifier.Unmeasured) string {
	switch {
	case u.LoaderPID == 0:
		return ""
	case u.Loader != "":
		return fmt.Sprintf(", loaded by pid %d %s", u.LoaderPID, u.Loader)
	}
	return fmt.Sprintf(", loaded by pid %d", u.LoaderPID)
}

func writeProgram(b *strings.Builder, prefix string, p verifier.Program) {
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
	for _, m := range p.Binding {
		fmt.Fprintf(b, "    BINDING MISMATCH: %s\n", m)
	}
}
