package lskel

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"github.com/cilium/ebpf/asm"
)

// KernelTag returns the tag the kernel gives a program submitted with
// these instructions (bpf_prog_info.tag; kernel/bpf/core.c
// bpf_prog_calc_tag, SHA-256 since Linux 6.18): the first 8 bytes of the
// SHA-256 of the instructions with both immediates of every ld_imm64 whose
// source register is BPF_PSEUDO_MAP_FD (1) or BPF_PSEUDO_MAP_VALUE (2)
// zeroed, because map descriptor numbers differ from one load to the next.
// Map references by fd_array index (BPF_PSEUDO_MAP_IDX, _IDX_VALUE), which
// light skeletons use, are stable and stay in. The kernel computes the tag
// over the instructions as submitted, after applying CO-RE relocations and
// before any verifier rewrite. insns is in the little-endian instruction
// layout of the hosts bpfattest runs on; trailing bytes short of an
// instruction are hashed as they are.
func KernelTag(insns []byte) [8]byte {
	h := sha256.New()
	var buf [insnSize]byte
	wasLdMap := false
	n := len(insns) / insnSize * insnSize
	for off := 0; off < n; off += insnSize {
		copy(buf[:], insns[off:off+insnSize])
		code, regs := buf[0], buf[1]
		src, dst := regs>>4, regs&0x0f
		off16 := binary.LittleEndian.Uint16(buf[2:4])
		switch {
		case !wasLdMap && code == opLdImm64 && (asm.Register(src) == pseudoMapFD || asm.Register(src) == pseudoMapValue):
			wasLdMap = true
			clear(buf[4:8])
		case wasLdMap && code == 0 && dst == 0 && src == 0 && off16 == 0:
			wasLdMap = false
			clear(buf[4:8])
		default:
			wasLdMap = false
		}
		h.Write(buf[:])
	}
	h.Write(insns[n:])
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	var tag [8]byte
	copy(tag[:], sum[:8])
	return tag
}

// opLdImm64 is the opcode of ld_imm64 (BPF_LD | BPF_IMM | BPF_DW).
const opLdImm64 = 0x18

// PredictTag returns the tag the kernel will give the program once the
// loader has loaded it, or, when the blob does not determine it, why not:
// the kernel applies CO-RE relocations before it computes the tag (their
// result depends on the running kernel's BTF), and the loader patches some
// instructions at run time (extern and kfunc relocations) before it
// submits them.
func (p *Program) PredictTag() (tag [8]byte, unpredictable string) {
	if p.CoreRelos.Offset >= 0 && p.CoreRelos.Size > 0 {
		return tag, fmt.Sprintf("the kernel applies %d bytes of CO-RE relocations before it computes the tag", p.CoreRelos.Size)
	}
	for _, s := range p.RelocSlots {
		if s.LoaderPatched {
			return tag, fmt.Sprintf("the loader patches instruction %d (%s) before the load", s.Insn, s.Kind)
		}
	}
	return KernelTag(p.Insns), ""
}
