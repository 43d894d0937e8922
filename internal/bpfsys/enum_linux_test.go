package bpfsys_test

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/bpfattest/bpfattest/internal/bpfsys"
)

// TestProgramEnumeration checks that ProgramIDs and ProgramInfoByID see the
// loader and the program it created, with the names, types and tags the
// kernel computed from the submitted instructions.
func TestProgramEnumeration(t *testing.T) {
	requireKernel(t)
	f := loadFixture(t, "counter", true)
	before := programIDs(t)
	t0 := time.Duration(bpfsys.BootTimeNS())
	sk := runOK(t, f, request(f, false))
	t1 := time.Duration(bpfsys.BootTimeNS())
	after := programIDs(t)
	if !slices.IsSorted(after) {
		t.Errorf("ids not increasing: %v", after)
	}

	loader, err := bpfsys.ProgramInfoByID(sk.res.LoaderID)
	if err != nil {
		t.Fatal(err)
	}
	insnsSum := sha(f.insns)
	if loader.Name != "__loader.prog" || loader.Type != ebpf.Syscall || !bytes.Equal(loader.Tag[:], insnsSum[:8]) {
		t.Errorf("loader info: name %q type %s tag %x, want __loader.prog Syscall %x", loader.Name, loader.Type, loader.Tag, insnsSum[:8])
	}
	if !slices.Equal(loader.MapIDs, []uint32{sk.res.MapID}) {
		t.Errorf("loader map ids %v, want [%d]", loader.MapIDs, sk.res.MapID)
	}
	if loader.Tag != sk.res.LoaderTag || loader.CreatedByUID != 0 || loader.XlatedSize == 0 || !loader.XlatedDumped {
		t.Errorf("loader info %+v", loader)
	}
	// BootTimeNS reads the clock the kernel stamps load times with.
	if t0 == 0 || loader.LoadTime < t0 || loader.LoadTime > t1 {
		t.Errorf("loader load time %v not within the boot times around the load, %v to %v", loader.LoadTime, t0, t1)
	}

	// count_sys_enter references maps by fd_array index only, so its tag is
	// SHA-256 of its instructions as the blob carries them (offset 2656,
	// 26 instructions; see the fixtures' README).
	innerInsns := f.data[2656 : 2656+26*8]
	innerSum := sha(innerInsns)
	byFD, err := bpfsys.ProgramInfoByFD(sk.progs[0].FD())
	if err != nil {
		t.Fatal(err)
	}
	inner, err := bpfsys.ProgramInfoByID(byFD.ID)
	if err != nil {
		t.Fatal(err)
	}
	if inner.Name != "count_sys_enter" || inner.Type != ebpf.RawTracepoint || !bytes.Equal(inner.Tag[:], innerSum[:8]) {
		t.Errorf("inner info: name %q type %s tag %x, want count_sys_enter RawTracepoint %x", inner.Name, inner.Type, inner.Tag, innerSum[:8])
	}
	if len(inner.MapIDs) != 2 || !inner.GPLCompatible || inner.BTFID == 0 || inner.VerifiedInsns == 0 {
		t.Errorf("inner info %+v", inner)
	}
	if inner.XlatedDigest != byFD.XlatedDigest || !inner.XlatedDumped {
		t.Errorf("xlated digest differs by id and by fd")
	}

	var created []string
	for _, p := range newPrograms(t, before, after) {
		created = append(created, p.Name)
	}
	for _, want := range []string{"__loader.prog", "count_sys_enter"} {
		if !slices.Contains(created, want) {
			t.Errorf("new programs %v lack %s", created, want)
		}
	}

	_, err = bpfsys.ProgramInfoByID(1<<31 - 1)
	if !errors.Is(err, fs.ErrNotExist) || !errors.Is(err, unix.ENOENT) {
		t.Errorf("info of a missing id: %v, want ENOENT", err)
	}
}

// TestPinFD pins the data map on a private bpf filesystem and reopens it.
// IsBPFFS tells that filesystem from the one beneath it.
func TestPinFD(t *testing.T) {
	requireKernel(t)
	dir := t.TempDir()
	if ok, err := bpfsys.IsBPFFS(dir); ok || err != nil {
		t.Fatalf("IsBPFFS(%s) before the mount = %v, %v; want false", dir, ok, err)
	}
	if err := unix.Mount("bpf", dir, "bpf", 0, ""); err != nil {
		t.Fatalf("mount bpffs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Error(err)
		}
	})
	if ok, err := bpfsys.IsBPFFS(dir); !ok || err != nil {
		t.Fatalf("IsBPFFS(%s) on bpffs = %v, %v; want true", dir, ok, err)
	}
	if _, err := bpfsys.IsBPFFS(dir + "/missing"); !errors.Is(err, unix.ENOENT) {
		t.Errorf("IsBPFFS of a missing path: %v, want ENOENT", err)
	}
	f := loadFixture(t, "rocfg", false)
	sk := runOK(t, f, request(f, false))
	path := filepath.Join(dir, "loader_map")
	if err := bpfsys.PinFD(sk.res.MapFD, path); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(path)
	m, err := ebpf.LoadPinnedMap(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	info, err := m.Info()
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := info.ID(); uint32(id) != sk.res.MapID || info.Name != "__loader.map" {
		t.Errorf("pinned map id %d name %q, want %d __loader.map", id, info.Name, sk.res.MapID)
	}
	if err := bpfsys.PinFD(sk.res.MapFD, path); !errors.Is(err, unix.EEXIST) {
		t.Errorf("pin twice: %v, want EEXIST", err)
	}
	if err := bpfsys.PinFD(sk.res.MapFD, filepath.Join(t.TempDir(), "x")); err == nil {
		t.Error("pin outside bpffs succeeded")
	}
}

// TestFDDupClose checks Dup and the idempotent Close.
func TestFDDupClose(t *testing.T) {
	requireKernel(t)
	f := loadFixture(t, "pair", false)
	sk := runOK(t, f, request(f, false))
	dup, err := sk.res.LoaderFD.Dup()
	if err != nil {
		t.Fatal(err)
	}
	if dup.Int() == sk.res.LoaderFD.Int() {
		t.Fatal("dup returned the same fd")
	}
	info, err := bpfsys.ProgramInfoByFD(dup.Int())
	if err != nil || info.ID != sk.res.LoaderID {
		t.Fatalf("dup fd info %+v %v, want id %d", info, err, sk.res.LoaderID)
	}
	if err := dup.Close(); err != nil {
		t.Fatal(err)
	}
	if err := dup.Close(); err != nil || dup.Int() != -1 {
		t.Errorf("second close: %v, fd %d", err, dup.Int())
	}
	if _, err := dup.Dup(); err == nil {
		t.Error("dup of a closed fd succeeded")
	}
	var nilFD *bpfsys.FD
	if nilFD.Close() != nil || nilFD.Int() != -1 {
		t.Error("nil FD")
	}
}
