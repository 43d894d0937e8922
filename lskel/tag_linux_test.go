package lskel_test

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/lskel"
)

// TestKernelTagMapReference: a program that refers to a map by file
// descriptor (ld_imm64 BPF_PSEUDO_MAP_FD) and to a map value
// (BPF_PSEUDO_MAP_VALUE) gets from the kernel the tag KernelTag computes
// from its instructions as submitted: the descriptor immediates do not
// count, so any descriptor number gives the same tag.
func TestKernelTagMapReference(t *testing.T) {
	testutil.RequireRoot(t)
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		testutil.SkipEnv(t, "create a map: %v", err)
	}
	defer m.Close()
	insns := asm.Instructions{
		asm.LoadMapPtr(asm.R1, m.FD()),
		asm.LoadMapValue(asm.R2, m.FD(), 0),
		asm.Mov.Imm(asm.R0, 0),
		asm.Return(),
	}
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SocketFilter, Instructions: insns, License: "GPL"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	info, err := p.Info()
	if err != nil {
		t.Fatal(err)
	}
	raw := marshal(t, insns)
	got := lskel.KernelTag(raw)
	if hex.EncodeToString(got[:]) != info.Tag {
		t.Errorf("KernelTag %x, the kernel says %s", got, info.Tag)
	}
	// Another descriptor number, the same tag.
	other := asm.Instructions{asm.LoadMapPtr(asm.R1, m.FD()+1000), asm.LoadMapValue(asm.R2, m.FD()+7, 0), asm.Mov.Imm(asm.R0, 0), asm.Return()}
	if lskel.KernelTag(marshal(t, other)) != got {
		t.Error("the tag depends on the map descriptor numbers")
	}
}

func marshal(t *testing.T, insns asm.Instructions) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := insns.Marshal(&b, binary.LittleEndian); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
