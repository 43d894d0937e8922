package bpfsys

import (
	"fmt"
	"time"

	"github.com/cilium/ebpf"
)

// ProgInfo is what the kernel tells about a loaded program
// (struct bpf_prog_info, BPF_OBJ_GET_INFO_BY_FD). It does not say whether the
// program was signed, nor carry its signature or full digest: the tag is the
// only link back to the submitted instructions.
type ProgInfo struct {
	ID   uint32
	Type ebpf.ProgramType
	Name string // at most 15 bytes, as the kernel keeps it
	// Tag is the first 8 bytes of the kernel's SHA-256 digest of the
	// submitted instructions, with the immediates of BPF_PSEUDO_MAP_FD and
	// BPF_PSEUDO_MAP_VALUE loads zeroed (kernel/bpf/core.c bpf_prog_calc_tag,
	// SHA-256 since 6.18).
	Tag    [8]byte
	MapIDs []uint32
	// LoadTime is the load time since boot (CLOCK_BOOTTIME).
	LoadTime      time.Duration
	CreatedByUID  uint32
	XlatedSize    uint32 // bytes of the kernel's rewritten instructions
	JitedSize     uint32 // bytes of JIT output
	BTFID         uint32
	VerifiedInsns uint32
	GPLCompatible bool
	// XlatedDigest is the SHA-256 of the translated instructions as the
	// kernel dumps them (map references rewritten to map ids, verifier
	// rewrites applied), valid when XlatedDumped. The kernel withholds the
	// dump from callers without the right to see raw kernel addresses.
	XlatedDigest [32]byte
	XlatedDumped bool
}

// SignatureSupport says whether the running kernel checks BPF program
// signatures.
type SignatureSupport uint8

// Results of ProbeSignedLoad.
const (
	SignaturesUnknown     SignatureSupport = iota // the probe could not tell
	SignaturesUnsupported                         // signed loads are refused or the signature is ignored
	SignaturesChecked                             // the kernel verifies signatures at BPF_PROG_LOAD
)

func (s SignatureSupport) String() string {
	switch s {
	case SignaturesUnknown:
		return "unknown"
	case SignaturesUnsupported:
		return "unsupported"
	case SignaturesChecked:
		return "checked"
	}
	return fmt.Sprintf("signature-support(%d)", uint8(s))
}
