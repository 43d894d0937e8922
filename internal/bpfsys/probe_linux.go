//go:build amd64 || arm64 || riscv64 || loong64 || ppc64le || ppc64 || s390x || mips64 || mips64le

package bpfsys

import (
	"context"
	"errors"
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// ProbeSignedLoad tells whether the running kernel verifies BPF program
// signatures. It needs the rights to load a program (CAP_BPF + CAP_SYS_ADMIN
// for BPF_PROG_TYPE_SYSCALL).
//
// It loads "r0 = 0; exit" as a sleepable BPF_PROG_TYPE_SYSCALL program twice
// with the 168-byte attr. First without a signature: that must succeed, or
// the probe cannot tell anything and returns the error. Then with the
// two-byte signature 30 00 against keyring_id 0 (the builtin system keyring,
// which always resolves, so the keyring lookup cannot fail first):
//
//   - EOPNOTSUPP: the kernel knows the signature fields but was built without
//     CONFIG_SYSTEM_DATA_VERIFICATION (bpf_verify_pkcs7_signature is a stub):
//     SignaturesUnsupported.
//   - E2BIG or EINVAL: a kernel older than 6.18 without the signature fields
//     (non-zero bytes past its last BPF_PROG_LOAD field): SignaturesUnsupported.
//     A 6.18 kernel cannot answer EINVAL here: the size is far below 8192 and
//     keyring 0 resolves.
//   - EBADMSG (what pkcs7_parse_message answers for 30 00), EKEYREJECTED,
//     ENOKEY, ENOPKG, EMSGSIZE, EKEYREVOKED or EKEYEXPIRED: the kernel's
//     PKCS#7 code looked at the signature: SignaturesChecked.
//   - success: the kernel ignored the signature: SignaturesUnsupported.
//   - anything else (EPERM, an LSM's EACCES, ...): SignaturesUnknown and the
//     error.
func ProbeSignedLoad(ctx context.Context) (SignatureSupport, error) {
	if err := probeLoad(ctx, nil); err != nil {
		return SignaturesUnknown, fmt.Errorf("bpfsys/probe: unsigned baseline load: %w", err)
	}
	// A DER SEQUENCE of length zero: not a CMS message, so a verifying
	// kernel rejects it while parsing, before any key is used.
	err := probeLoad(ctx, []byte{0x30, 0x00})
	var se *SyscallError
	switch {
	case err == nil:
		return SignaturesUnsupported, nil
	case !errors.As(err, &se):
		return SignaturesUnknown, fmt.Errorf("bpfsys/probe: %w", err)
	}
	switch se.Errno {
	case unix.EOPNOTSUPP, unix.E2BIG, unix.EINVAL:
		return SignaturesUnsupported, nil
	case unix.EBADMSG, unix.EKEYREJECTED, unix.ENOKEY, unix.ENOPKG, unix.EMSGSIZE,
		unix.EKEYREVOKED, unix.EKEYEXPIRED:
		return SignaturesChecked, nil
	}
	return SignaturesUnknown, fmt.Errorf("bpfsys/probe: signed load: %w", err)
}

// probeLoad loads the probe program, with sig when not nil, and closes it.
func probeLoad(ctx context.Context, sig []byte) error {
	insns := []byte{0xb7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0} // r0 = 0; exit
	license := cString("GPL")
	attr := progLoadAttr{
		progType:  bpfProgTypeSyscall,
		insnCnt:   uint32(len(insns) / 8),
		insns:     ptr(insns),
		license:   ptr(license),
		progFlags: bpfFSleepable,
		progName:  objName("bpfattest_probe"),
	}
	if sig != nil {
		attr.signature = ptr(sig)
		attr.signatureSize = uint32(len(sig))
		attr.keyringID = 0
	}
	fd, _, err := loadProgram(ctx, NoStep, &attr, false, 0)
	runtime.KeepAlive(insns)
	runtime.KeepAlive(license)
	runtime.KeepAlive(sig)
	if err != nil {
		return err
	}
	return fd.Close()
}
