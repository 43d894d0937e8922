//go:build amd64 || arm64 || riscv64 || loong64 || ppc64le || ppc64 || s390x || mips64 || mips64le

package bpfsys

import (
	"testing"
	"unsafe"
)

// TestAttrLayout pins the attr and info structs to the offsets of this
// kernel's BTF (union bpf_attr, struct bpf_map_info, struct bpf_prog_info).
func TestAttrLayout(t *testing.T) {
	var (
		mc mapCreateAttr
		me mapElemAttr
		ia infoAttr
		mi mapInfo
		pl progLoadAttr
		tr testRunAttr
		id idAttr
		op objPinAttr
		pi progInfo
	)
	for _, c := range []struct {
		what      string
		got, want uintptr
	}{
		{"map create size", unsafe.Sizeof(mc), 96},
		{"map create excl_prog_hash", unsafe.Offsetof(mc.exclProgHash), 80},
		{"map create excl_prog_hash_size", unsafe.Offsetof(mc.exclProgHashSize), 88},
		{"map create map_name", unsafe.Offsetof(mc.mapName), 28},
		{"map create map_extra", unsafe.Offsetof(mc.mapExtra), 64},
		{"map elem size", unsafe.Sizeof(me), 32},
		{"map elem value", unsafe.Offsetof(me.value), 16},
		{"info size", unsafe.Sizeof(ia), 16},
		{"map info size", unsafe.Sizeof(mi), 104},
		{"map info hash", unsafe.Offsetof(mi.hash), 88},
		{"map info hash_size", unsafe.Offsetof(mi.hashSize), 96},
		{"prog load size", unsafe.Sizeof(pl), 168},
		{"prog load prog_flags", unsafe.Offsetof(pl.progFlags), 44},
		{"prog load prog_name", unsafe.Offsetof(pl.progName), 48},
		{"prog load fd_array", unsafe.Offsetof(pl.fdArray), 120},
		{"prog load log_true_size", unsafe.Offsetof(pl.logTrueSize), 140},
		{"prog load fd_array_cnt", unsafe.Offsetof(pl.fdArrayCnt), 148},
		{"prog load signature", unsafe.Offsetof(pl.signature), 152},
		{"prog load signature_size", unsafe.Offsetof(pl.signatureSize), 160},
		{"prog load keyring_id", unsafe.Offsetof(pl.keyringID), 164},
		{"test run size", unsafe.Sizeof(tr), 80},
		{"test run ctx_size_in", unsafe.Offsetof(tr.ctxSizeIn), 40},
		{"test run ctx_in", unsafe.Offsetof(tr.ctxIn), 48},
		{"test run batch_size", unsafe.Offsetof(tr.batchSize), 72},
		{"id size", unsafe.Sizeof(id), 12},
		{"obj pin bpf_fd", unsafe.Offsetof(op.bpfFD), 8},
		{"obj pin path_fd", unsafe.Offsetof(op.pathFD), 16},
		{"prog info size", unsafe.Sizeof(pi), 232},
		{"prog info load_time", unsafe.Offsetof(pi.loadTime), 40},
		{"prog info map_ids", unsafe.Offsetof(pi.mapIDs), 56},
		{"prog info name", unsafe.Offsetof(pi.name), 64},
		{"prog info gpl bits", unsafe.Offsetof(pi.bits), 84},
		{"prog info btf_id", unsafe.Offsetof(pi.btfID), 128},
		{"prog info nr_prog_tags", unsafe.Offsetof(pi.nrProgTags), 180},
		{"prog info run_time_ns", unsafe.Offsetof(pi.runTimeNs), 192},
		{"prog info verified_insns", unsafe.Offsetof(pi.verifiedInsns), 216},
		{"prog info attach_btf_id", unsafe.Offsetof(pi.attachBTFID), 224},
	} {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.what, c.got, c.want)
		}
	}
}
