package bpfsys_test

import (
	"encoding/binary"
	"errors"
	"slices"
	"testing"

	"github.com/bpfattest/bpfattest/internal/bpfsys"
)

// TestNewCtx checks the context sizes bpftool computes for the fixtures
// (ctx.sz = offsetof(skeleton, links)): counter and rocfg 60, pair 48.
func TestNewCtx(t *testing.T) {
	for _, c := range []struct{ maps, progs, size int }{{2, 1, 60}, {1, 2, 48}, {0, 0, 24}} {
		b := bpfsys.NewCtx(c.maps, c.progs)
		if len(b) != c.size || int(binary.NativeEndian.Uint32(b)) != c.size {
			t.Errorf("NewCtx(%d, %d): %d bytes, sz %d; want %d", c.maps, c.progs, len(b), binary.NativeEndian.Uint32(b), c.size)
		}
	}
	if bpfsys.NewCtx(-1, 0) != nil || bpfsys.CtxSize(0, -1) != -1 {
		t.Error("negative counts accepted")
	}
}

// TestReadCtxFDs reads descriptors written at the bpf_map_desc and
// bpf_prog_desc offsets, and refuses short contexts.
func TestReadCtxFDs(t *testing.T) {
	ctx := bpfsys.NewCtx(2, 1)
	binary.NativeEndian.PutUint32(ctx[24:], 7)  // maps[0].map_fd
	binary.NativeEndian.PutUint32(ctx[28:], 99) // maps[0].max_entries: not an fd
	binary.NativeEndian.PutUint32(ctx[40:], 8)  // maps[1].map_fd
	binary.NativeEndian.PutUint32(ctx[56:], 9)  // progs[0].prog_fd
	maps, progs, err := bpfsys.ReadCtxFDs(ctx, 2, 1)
	if err != nil || !slices.Equal(maps, []int{7, 8}) || !slices.Equal(progs, []int{9}) {
		t.Errorf("got %v %v %v", maps, progs, err)
	}
	binary.NativeEndian.PutUint32(ctx[56:], 0xffffffff)
	if _, progs, _ := bpfsys.ReadCtxFDs(ctx, 2, 1); progs[0] != -1 {
		t.Errorf("prog fd %d, want -1 (s32)", progs[0])
	}
	if _, _, err := bpfsys.ReadCtxFDs(ctx[:59], 2, 1); !errors.Is(err, bpfsys.ErrShortCtx) {
		t.Errorf("short ctx: %v", err)
	}
	if _, _, err := bpfsys.ReadCtxFDs(ctx, -1, 1); err == nil {
		t.Error("negative count accepted")
	}
}

// FuzzReadCtxFDs feeds arbitrary contexts and counts: errors, never panics,
// and on success exactly the requested number of descriptors.
func FuzzReadCtxFDs(f *testing.F) {
	f.Add(bpfsys.NewCtx(2, 1), 2, 1)
	f.Add(bpfsys.NewCtx(1, 2), 1, 2)
	f.Add([]byte{60, 0, 0, 0}, 2, 1)
	f.Add([]byte{}, 0, 0)
	f.Fuzz(func(t *testing.T, ctx []byte, nrMaps, nrProgs int) {
		maps, progs, err := bpfsys.ReadCtxFDs(ctx, nrMaps, nrProgs)
		if err != nil {
			return
		}
		if len(maps) != nrMaps || len(progs) != nrProgs || len(ctx) < bpfsys.CtxSize(nrMaps, nrProgs) {
			t.Fatalf("%d bytes, %d/%d: got %d maps %d progs", len(ctx), nrMaps, nrProgs, len(maps), len(progs))
		}
	})
}

// TestRunInvalidRequest checks requests refused before any system call.
func TestRunInvalidRequest(t *testing.T) {
	ok := bpfsys.LoadRequest{Insns: make([]byte, 16), Data: make([]byte, 8)}
	for _, c := range []struct {
		what   string
		mutate func(*bpfsys.LoadRequest)
	}{
		{"no insns", func(r *bpfsys.LoadRequest) { r.Insns = nil }},
		{"partial insn", func(r *bpfsys.LoadRequest) { r.Insns = make([]byte, 12) }},
		{"no data", func(r *bpfsys.LoadRequest) { r.Data = nil }},
		{"short excl hash", func(r *bpfsys.LoadRequest) { r.ExclHash = make([]byte, 20) }},
		{"huge ctx", func(r *bpfsys.LoadRequest) { r.Ctx = make([]byte, 1<<16) }},
	} {
		req := ok
		c.mutate(&req)
		res, err := bpfsys.Run(t.Context(), req, nil)
		if !errors.Is(err, bpfsys.ErrInvalidRequest) || res != nil {
			t.Errorf("%s: %v, %v; want ErrInvalidRequest", c.what, res, err)
		}
	}
}
