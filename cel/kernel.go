package cel

import (
	"errors"
	"fmt"
)

// KernelInfo is what the running kernel says about itself that a firmware
// event log cannot: the release, the lockdown mode and the sysctls that
// decide who may load BPF and how it is compiled. The agent reads them
// when it starts a boot's log and records them in the boot header, which
// is extended like every record: a verifier trusts them as much as the
// agent that read them (a kernel already compromised at that point could
// have lied), and they are the values at the start of the log (sysctls
// can change later; lockdown can only be raised).
type KernelInfo struct {
	// Release is the kernel release (uname -r); "" when not readable.
	Release string
	// Lockdown is the lockdown mode the kernel enforces, the selected
	// word of /sys/kernel/security/lockdown ("none", "integrity",
	// "confidentiality"); "" when not readable (no lockdown LSM, no
	// securityfs).
	Lockdown string
	// UnprivilegedBPFDisabled is kernel.unprivileged_bpf_disabled (0: any
	// user may load some program types, 1: only privileged users, for good;
	// 2: only privileged users, until root writes 0 again).
	UnprivilegedBPFDisabled Sysctl
	// BPFJITEnable, BPFJITHarden and BPFJITKallsyms are net.core.bpf_jit_*.
	BPFJITEnable   Sysctl
	BPFJITHarden   Sysctl
	BPFJITKallsyms Sysctl
}

// Sysctl is a small integer sysctl's value as read, or SysctlUnread.
type Sysctl int

// SysctlUnread is the value of a sysctl that could not be read (absent on
// this kernel, or not permitted).
const SysctlUnread Sysctl = -1

// Known reports whether the sysctl was read.
func (s Sysctl) Known() bool { return s >= 0 }

func (s Sysctl) String() string {
	if !s.Known() {
		return "unread"
	}
	return fmt.Sprint(int(s))
}

// maxKernelString bounds the release and lockdown strings: a release is
// at most 64 bytes (utsname), a lockdown mode one short word.
const maxKernelString = 64

const (
	kernelRelease = iota + 1
	kernelLockdown
	kernelUnprivBPF
	kernelJITEnable
	kernelJITHarden
	kernelJITKallsyms
)

// The kernel field of a boot header is itself a sequence of fields in
// ascending tag order, every one present exactly once: 1 release (string),
// 2 lockdown (string), then the sysctls 3 unprivileged_bpf_disabled, 4
// bpf_jit_enable, 5 bpf_jit_harden, 6 bpf_jit_kallsyms, each one byte, or
// no bytes when the sysctl was not read.
//
// MarshalBinary returns that encoding (the kernel field's value).
func (k *KernelInfo) MarshalBinary() ([]byte, error) {
	var errs []error
	for _, s := range []struct {
		name, v string
	}{{"release", k.Release}, {"lockdown", k.Lockdown}} {
		if len(s.v) > maxKernelString {
			errs = append(errs, fmt.Errorf("%s of %d bytes, limit %d", s.name, len(s.v), maxKernelString))
		}
	}
	var w fieldWriter
	w.str(kernelRelease, k.Release)
	w.str(kernelLockdown, k.Lockdown)
	for _, s := range k.sysctls() {
		switch {
		case s.v == SysctlUnread:
			w.bytes(s.tag, nil)
		case s.v < 0 || s.v > 0xff:
			errs = append(errs, fmt.Errorf("%s = %d, want 0..255 or unread", s.name, int(s.v)))
		default:
			w.u8(s.tag, byte(s.v))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return w.b, nil
}

type kernelSysctl struct {
	tag  byte
	name string
	v    Sysctl
}

func (k *KernelInfo) sysctls() []kernelSysctl {
	return []kernelSysctl{
		{kernelUnprivBPF, "unprivileged_bpf_disabled", k.UnprivilegedBPFDisabled},
		{kernelJITEnable, "bpf_jit_enable", k.BPFJITEnable},
		{kernelJITHarden, "bpf_jit_harden", k.BPFJITHarden},
		{kernelJITKallsyms, "bpf_jit_kallsyms", k.BPFJITKallsyms},
	}
}

// ParseKernelInfo decodes what KernelInfo.MarshalBinary wrote; errors are
// *FieldError, wrapping ErrMalformed.
func ParseKernelInfo(b []byte) (*KernelInfo, error) { return parseKernelInfo(b, 0) }

// parseKernelInfo decodes a boot header's kernel field, whose value starts
// at offset base of the content.
func parseKernelInfo(b []byte, base int) (*KernelInfo, error) {
	r := fieldReader{b: b, what: "boot_header kernel"}
	k := &KernelInfo{}
	k.Release = r.boundedStr(kernelRelease, "release")
	k.Lockdown = r.boundedStr(kernelLockdown, "lockdown")
	k.UnprivilegedBPFDisabled = r.sysctl(kernelUnprivBPF, "unprivileged_bpf_disabled")
	k.BPFJITEnable = r.sysctl(kernelJITEnable, "bpf_jit_enable")
	k.BPFJITHarden = r.sysctl(kernelJITHarden, "bpf_jit_harden")
	k.BPFJITKallsyms = r.sysctl(kernelJITKallsyms, "bpf_jit_kallsyms")
	if err := r.done(); err != nil {
		var fe *FieldError
		if errors.As(err, &fe) {
			fe.Offset += base
		}
		return nil, err
	}
	return k, nil
}

func (r *fieldReader) boundedStr(tag byte, name string) string {
	start := r.pos
	s := r.str(tag, name)
	if r.err == nil && len(s) > maxKernelString {
		r.fail(name, start, "%d bytes, limit %d", len(s), maxKernelString)
	}
	return s
}

// sysctl reads a sysctl field: one byte, or none when it was not read.
func (r *fieldReader) sysctl(tag byte, name string) Sysctl {
	start := r.pos
	v := r.next(tag, name)
	switch {
	case r.err != nil:
		return SysctlUnread
	case len(v) > 1:
		r.fail(name, start, "length %d, want 0 (unread) or 1", len(v))
		return SysctlUnread
	case len(v) == 0:
		return SysctlUnread
	}
	return Sysctl(v[0])
}
