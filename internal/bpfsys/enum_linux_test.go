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

// TestPinDir pins the data map into a directory on a private bpf
// filesystem and reopens it. The directory is the one opened: after its
// path is renamed and replaced by a symbolic link to another directory,
// pins still land in it. Other filesystems, taken names and names that
// are not one path element are refused.
func TestPinDir(t *testing.T) {
	requireKernel(t)
	root := t.TempDir()
	if _, err := bpfsys.OpenPinDir(root); !errors.Is(err, bpfsys.ErrNotBPFFS) {
		t.Fatalf("OpenPinDir(%s) before the mount: %v, want ErrNotBPFFS", root, err)
	}
	if err := unix.Mount("bpf", root, "bpf", 0, ""); err != nil {
		t.Fatalf("mount bpffs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(root, 0); err != nil {
			t.Error(err)
		}
	})
	if _, err := bpfsys.OpenPinDir(filepath.Join(root, "missing")); !errors.Is(err, unix.ENOENT) {
		t.Errorf("OpenPinDir of a missing path: %v, want ENOENT", err)
	}
	dir, other := filepath.Join(root, "pins"), filepath.Join(root, "other")
	for _, p := range []string{dir, other} {
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	d, err := bpfsys.OpenPinDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.Owner() != uint32(os.Geteuid()) || d.Path() != dir {
		t.Errorf("owner %d path %q, want %d %q", d.Owner(), d.Path(), os.Geteuid(), dir)
	}

	f := loadFixture(t, "rocfg", false)
	sk := runOK(t, f, request(f, false))
	path, err := d.Pin(sk.res.MapFD.Int(), "loader_map")
	if err != nil {
		t.Fatal(err)
	}
	if path != filepath.Join(dir, "loader_map") {
		t.Errorf("pin path %q", path)
	}
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
	if _, err := d.Pin(sk.res.MapFD.Int(), "loader_map"); !errors.Is(err, unix.EEXIST) {
		t.Errorf("pin twice: %v, want EEXIST", err)
	}
	for _, name := range []string{"", ".", "..", "a/b", "../other/x", "nul\x00"} {
		if _, err := d.Pin(sk.res.MapFD.Int(), name); !errors.Is(err, bpfsys.ErrInvalidRequest) {
			t.Errorf("pin as %q: %v, want ErrInvalidRequest", name, err)
		}
	}

	// Swap the path for a link to another directory: the open one is used.
	moved := filepath.Join(root, "moved")
	if err := os.Rename(dir, moved); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(other, dir); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Pin(sk.res.MapFD.Int(), "after_swap"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(moved, "after_swap")); err != nil {
		t.Errorf("pin after the swap is not in the opened directory: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(other, "after_swap")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pin after the swap followed the link: %v", err)
	}
	for _, name := range []string{"loader_map", "after_swap"} {
		if err := d.Remove(name); err != nil {
			t.Error(err)
		}
	}
	if ents, err := os.ReadDir(moved); err != nil || len(ents) != 0 {
		t.Errorf("after Remove: %v, %v", ents, err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Pin(sk.res.MapFD.Int(), "closed"); err == nil {
		t.Error("pin into a closed PinDir succeeded")
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
