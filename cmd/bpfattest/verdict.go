package main

import (
	"encoding/json"
	"fmt"
	"io"
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
		fmt.Fprintf(&b, "ak:         pinned by %s\n", v.AKPinned)
		writeTPM(&b, v.TPM)
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
}
