package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/bpfattest/bpfattest/verifier"
)

// writeTPM writes the TPM an enrolled EK certificate names.
func writeTPM(b *strings.Builder, t *verifier.TPM) {
	if t == nil {
		return
	}
	maker := t.Manufacturer
	if t.Vendor != "" {
		maker = t.Vendor + " (" + t.Manufacturer + ")"
	}
	fmt.Fprintf(b, "tpm:        %s, model %s, firmware %s (as the EK certificate names it)\n", orDash(maker), orDash(t.Model), orDash(t.Firmware))
}

// writeBoot writes the boot section of a verdict: the firmware's boot
// chain and the kernel's facts.
func writeBoot(b *strings.Builder, v *verifier.Boot, pcr int) {
	if v == nil {
		return
	}
	switch v.FirmwareLog {
	case "none":
		fmt.Fprintf(b, "firmware:   no verified boot chain: %s\n", v.Problem)
	default:
		fmt.Fprintf(b, "firmware:   event log %s against the quoted boot pcrs %s\n", v.FirmwareLog, pcrList(v.BootPCRs))
	}
	if sb := v.SecureBoot; sb != nil {
		switch {
		case !sb.Known:
			fmt.Fprintf(b, "  secure boot:  unknown (%s)\n", sb.Problem)
		case !sb.Enabled:
			fmt.Fprintf(b, "  secure boot:  disabled\n")
		default:
			fmt.Fprintf(b, "  secure boot:  enabled; db %d certificate(s), %d hash(es); dbx %d certificate(s), %d hash(es)\n",
				len(sb.DB.Certs), sb.DB.Hashes, len(sb.DBX.Certs), sb.DBX.Hashes)
		}
		for _, c := range sb.Authorities {
			fmt.Fprintf(b, "    authority:  %s (sha256 %s)\n", c.Subject, c.SHA256)
		}
	}
	for _, app := range v.BootApps {
		fmt.Fprintf(b, "  boot app:     event %d %s sha256 %s\n", app.Event, app.Type, orDash(app.SHA256))
	}
	if k := v.Kernel; k != nil {
		what := "the last boot application, its Authenticode hash"
		if k.Source == "grub" {
			what = fmt.Sprintf("%s, the file GRUB read (pcr 9)", k.Path)
		}
		fmt.Fprintf(b, "  kernel:       %s sha256 %s\n", what, k.SHA256)
	}
	if v.Cmdline != "" {
		fmt.Fprintf(b, "  cmdline:      %s\n", v.Cmdline)
	}
	if v.FirmwareLog != "none" {
		start := "the reset value (no firmware events on it)"
		if s, ok := v.AgentPCRStart["sha256"]; ok {
			start = "sha256 " + s
		}
		how := "derived from the firmware log and checked against the boot header"
		if !v.AgentPCRStartFromFirmware {
			how = "derived from the firmware log; the boot header was verified earlier without it"
		}
		fmt.Fprintf(b, "  pcr %d start: %s, %s\n", pcr, start, how)
	}
	for _, w := range v.Workarounds {
		fmt.Fprintf(b, "  workaround:   %s\n", w)
	}
	if len(v.UnloggedBanks) > 0 {
		fmt.Fprintf(b, "  not logged:   %s (quoted, not replayed: the firmware logs no digests for them)\n", strings.Join(v.UnloggedBanks, ", "))
	}
	if !v.KernelFacts {
		fmt.Fprintf(b, "kernel:     not recorded in the boot header\n")
		return
	}
	jit := "unread"
	if j := v.BPFJIT; j != nil {
		jit = fmt.Sprintf("enable %s, harden %s, kallsyms %s", intOrUnread(j.Enable), intOrUnread(j.Harden), intOrUnread(j.Kallsyms))
	}
	fmt.Fprintf(b, "kernel:     release %s, lockdown %s, unprivileged_bpf_disabled %s, bpf_jit %s (the boot header: as the agent read them)\n",
		orUnread(v.KernelRelease), orUnread(v.Lockdown), intOrUnread(v.UnprivilegedBPFDisabled), jit)
}

// pcrList writes PCR indices with runs as ranges: "0-9", "0-7,9".
func pcrList(pcrs []int) string {
	if len(pcrs) == 0 {
		return "none"
	}
	p := slices.Sorted(slices.Values(pcrs))
	var parts []string
	for i := 0; i < len(p); {
		j := i
		for j+1 < len(p) && p[j+1] == p[j]+1 {
			j++
		}
		if j > i {
			parts = append(parts, fmt.Sprintf("%d-%d", p[i], p[j]))
		} else {
			parts = append(parts, fmt.Sprint(p[i]))
		}
		i = j + 1
	}
	return strings.Join(parts, ",")
}

func intOrUnread(n *int) string {
	if n == nil {
		return "unread"
	}
	return fmt.Sprint(*n)
}

func orUnread(s string) string {
	if s == "" {
		return "unread"
	}
	return s
}
