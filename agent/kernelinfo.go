package agent

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/internal/boundedfile"
)

// The kernel's own facts that the firmware event log cannot carry, read
// when the agent starts a boot's log (cel.KernelInfo, in the boot header).
// Reading is here; each file's format is one pure function below.

// kernelFiles are the files the facts are read from.
type kernelFiles struct {
	release, lockdown, unprivBPF, jitEnable, jitHarden, jitKallsyms string
}

// hostKernelFiles are the running kernel's: proc(5) for the release (the
// release uname(2) reports) and the sysctls, securityfs for lockdown
// (security/lockdown/lockdown.c).
func hostKernelFiles() kernelFiles {
	return kernelFiles{
		release:     "/proc/sys/kernel/osrelease",
		lockdown:    "/sys/kernel/security/lockdown",
		unprivBPF:   "/proc/sys/kernel/unprivileged_bpf_disabled",
		jitEnable:   "/proc/sys/net/core/bpf_jit_enable",
		jitHarden:   "/proc/sys/net/core/bpf_jit_harden",
		jitKallsyms: "/proc/sys/net/core/bpf_jit_kallsyms",
	}
}

// maxKernelFile bounds each file read: they hold a word or a number.
const maxKernelFile = 4 << 10

// readKernelInfo reads the facts. A file that cannot be read or parsed
// leaves its fact unread (the zero string or cel.SysctlUnread) and is
// named in the returned problems; nothing here fails the agent.
func readKernelInfo(f kernelFiles) (cel.KernelInfo, []string) {
	var problems []string
	read := func(path string) []byte {
		b, err := boundedfile.ReadFile(path, maxKernelFile)
		if err != nil {
			problems = append(problems, err.Error())
			return nil
		}
		return b
	}
	k := cel.KernelInfo{}
	if b := read(f.release); b != nil {
		var err error
		if k.Release, err = parseRelease(b); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", f.release, err))
		}
	}
	if b := read(f.lockdown); b != nil {
		var err error
		if k.Lockdown, err = parseLockdown(b); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", f.lockdown, err))
		}
	}
	for _, s := range []struct {
		path string
		v    *cel.Sysctl
	}{
		{f.unprivBPF, &k.UnprivilegedBPFDisabled},
		{f.jitEnable, &k.BPFJITEnable},
		{f.jitHarden, &k.BPFJITHarden},
		{f.jitKallsyms, &k.BPFJITKallsyms},
	} {
		*s.v = cel.SysctlUnread
		if b := read(s.path); b != nil {
			var err error
			if *s.v, err = parseSysctl(b); err != nil {
				problems = append(problems, fmt.Sprintf("%s: %v", s.path, err))
			}
		}
	}
	return k, problems
}

// maxFactLen is the longest release or lockdown word recorded (the boot
// header's limit).
const maxFactLen = 64

var errFact = errors.New("unexpected contents")

// parseRelease reads /proc/sys/kernel/osrelease: one line of printable
// ASCII without spaces, at most 64 bytes.
func parseRelease(b []byte) (string, error) {
	s := string(bytes.TrimSuffix(b, []byte("\n")))
	if s == "" || len(s) > maxFactLen {
		return "", fmt.Errorf("%w: release of %d bytes", errFact, len(s))
	}
	for _, c := range []byte(s) {
		if c <= ' ' || c > '~' {
			return "", fmt.Errorf("%w: release %q", errFact, s)
		}
	}
	return s, nil
}

// parseLockdown reads /sys/kernel/security/lockdown: the modes the kernel
// knows separated by spaces, the one it enforces in brackets ("none
// [integrity] confidentiality"). It returns that mode, a lower-case word.
func parseLockdown(b []byte) (string, error) {
	if !utf8.Valid(b) {
		return "", fmt.Errorf("%w: not UTF-8", errFact)
	}
	var mode string
	found := 0
	for _, w := range bytes.Fields(b) {
		inner, ok := bytes.CutPrefix(w, []byte("["))
		if !ok {
			continue
		}
		inner, ok = bytes.CutSuffix(inner, []byte("]"))
		if !ok {
			return "", fmt.Errorf("%w: %q", errFact, w)
		}
		mode, found = string(inner), found+1
	}
	if found != 1 {
		return "", fmt.Errorf("%w: %d modes in brackets, want 1", errFact, found)
	}
	if mode == "" || len(mode) > maxFactLen {
		return "", fmt.Errorf("%w: mode of %d bytes", errFact, len(mode))
	}
	for _, c := range []byte(mode) {
		if c < 'a' || c > 'z' {
			return "", fmt.Errorf("%w: mode %q", errFact, mode)
		}
	}
	return mode, nil
}

// parseSysctl reads a small integer sysctl: a decimal number from 0 to 255
// and a newline.
func parseSysctl(b []byte) (cel.Sysctl, error) {
	s := string(bytes.TrimSuffix(b, []byte("\n")))
	n, err := strconv.ParseUint(s, 10, 8)
	if err != nil || s != strconv.FormatUint(n, 10) {
		return cel.SysctlUnread, fmt.Errorf("%w: %q, want a number 0..255", errFact, s)
	}
	return cel.Sysctl(n), nil
}
