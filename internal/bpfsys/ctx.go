package bpfsys

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Layout of the run-time context of a light-skeleton loader (libbpf
// tools/lib/bpf/skel_internal.h): struct bpf_loader_ctx { u32 sz; u32 flags;
// u32 log_level; u32 log_size; u64 log_buf; } (24 bytes), then one struct
// bpf_map_desc { s32 map_fd; u32 max_entries; u64 initial_value; } (16 bytes)
// per map in libbpf map-index order, then one struct bpf_prog_desc
// { s32 prog_fd; } (4 bytes) per program in load order. bpftool sets
// ctx.sz = offsetof(skeleton, links), the end of the program descriptors.
// Integers are in host byte order.
const (
	CtxHeaderSize = 24
	CtxMapDesc    = 16
	CtxProgDesc   = 4
)

// ErrShortCtx is wrapped when a context is too short for its descriptors.
var ErrShortCtx = errors.New("context too short")

// CtxSize is the size of the context of a skeleton with nrMaps maps and
// nrProgs programs, or -1 when a count is negative or absurd.
func CtxSize(nrMaps, nrProgs int) int {
	if nrMaps < 0 || nrProgs < 0 || nrMaps > 1<<12 || nrProgs > 1<<12 {
		return -1
	}
	return CtxHeaderSize + CtxMapDesc*nrMaps + CtxProgDesc*nrProgs
}

// NewCtx returns a zeroed context for nrMaps maps and nrProgs programs with sz
// set, as bpftool's __open() builds it: no log, no max_entries or
// initial_value overrides. It returns nil when a count is invalid.
func NewCtx(nrMaps, nrProgs int) []byte {
	n := CtxSize(nrMaps, nrProgs)
	if n < 0 {
		return nil
	}
	b := make([]byte, n)
	binary.NativeEndian.PutUint32(b, uint32(n))
	return b
}

// ReadCtxFDs returns the map and program fds a loader wrote into its context:
// maps[i] = bpf_map_desc[i].map_fd, progs[j] = bpf_prog_desc[j].prog_fd. A
// zero entry means the loader did not write that slot (it failed before, or
// the slot was never used). ctxOut is untrusted: every bound is checked.
func ReadCtxFDs(ctxOut []byte, nrMaps, nrProgs int) (maps, progs []int, err error) {
	need := CtxSize(nrMaps, nrProgs)
	if need < 0 {
		return nil, nil, fmt.Errorf("bpfsys/read ctx: invalid counts: %d maps, %d programs", nrMaps, nrProgs)
	}
	if len(ctxOut) < need {
		return nil, nil, fmt.Errorf("bpfsys/read ctx: %w: %d bytes, %d maps and %d programs need %d",
			ErrShortCtx, len(ctxOut), nrMaps, nrProgs, need)
	}
	maps = make([]int, nrMaps)
	for i := range maps {
		off := CtxHeaderSize + CtxMapDesc*i
		maps[i] = int(int32(binary.NativeEndian.Uint32(ctxOut[off:])))
	}
	progs = make([]int, nrProgs)
	base := CtxHeaderSize + CtxMapDesc*nrMaps
	for j := range progs {
		off := base + CtxProgDesc*j
		progs[j] = int(int32(binary.NativeEndian.Uint32(ctxOut[off:])))
	}
	return maps, progs, nil
}
