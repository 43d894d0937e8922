package bpfsys_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/bpfattest/bpfattest/internal/bpfsys"
	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/internal/testutil/progwatch"
)

// request builds the LoadRequest for a fixture. Signed fixtures keep their
// exclusive-program hash; the signature is sent only with withSig.
func request(f fixture, withSig bool) bpfsys.LoadRequest {
	req := bpfsys.LoadRequest{Insns: f.insns, Data: f.data, Ctx: bpfsys.NewCtx(f.nrMaps, f.nrProgs)}
	if f.signed {
		req.ExclHash = f.exclHash
		if withSig {
			req.Signature = f.sig
		}
	}
	return req
}

// skeleton is a successful run: the Run result and the objects the loader
// created, owned by cilium/ebpf handles that the test closes at cleanup.
type skeleton struct {
	res   *bpfsys.LoadResult
	maps  []*ebpf.Map
	progs []*ebpf.Program
}

// runOK runs req, requires success, and takes ownership of every fd.
func runOK(t *testing.T, f fixture, req bpfsys.LoadRequest) skeleton {
	t.Helper()
	res, err := bpfsys.Run(context.Background(), req, nil)
	if err != nil {
		t.Fatalf("%s: Run: %v (step %s, log %q)", f, err, res.Step, res.VerifierLog)
	}
	t.Cleanup(func() {
		if err := res.LoaderFD.Close(); err != nil {
			t.Error(err)
		}
		if err := res.MapFD.Close(); err != nil {
			t.Error(err)
		}
	})
	mapFDs, progFDs, err := bpfsys.ReadCtxFDs(res.CtxOut, f.nrMaps, f.nrProgs)
	if err != nil {
		t.Fatal(err)
	}
	sk := skeleton{res: res}
	for i, fd := range mapFDs {
		if fd <= 0 {
			t.Fatalf("%s: map %d fd %d in ctx", f, i, fd)
		}
		m, err := ebpf.NewMapFromFD(fd)
		if err != nil {
			t.Fatalf("%s: map %d fd %d: %v", f, i, fd, err)
		}
		t.Cleanup(func() { m.Close() })
		sk.maps = append(sk.maps, m)
	}
	for j, fd := range progFDs {
		if fd <= 0 {
			t.Fatalf("%s: prog %d fd %d in ctx", f, j, fd)
		}
		p, err := ebpf.NewProgramFromFD(fd)
		if err != nil {
			t.Fatalf("%s: prog %d fd %d: %v", f, j, fd, err)
		}
		t.Cleanup(func() { p.Close() })
		sk.progs = append(sk.progs, p)
	}
	return sk
}

// requireKernel skips (fails under strict mode) unless the test can use bpf().
func requireKernel(t testing.TB) {
	t.Helper()
	testutil.RequireRoot(t)
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		testutil.SkipEnv(t, "kernel without BTF: %v", err)
	}
}

// openFDs counts this process's open file descriptors.
func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// programIDs returns the kernel's program ids.
func programIDs(t testing.TB) []uint32 {
	t.Helper()
	ids, err := bpfsys.ProgramIDs()
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// newPrograms returns the infos of programs in after but not in before that
// still exist.
func newPrograms(t testing.TB, before, after []uint32) []*bpfsys.ProgInfo {
	t.Helper()
	var out []*bpfsys.ProgInfo
	for _, id := range after {
		if slices.Contains(before, id) {
			continue
		}
		info, err := bpfsys.ProgramInfoByID(id)
		if err != nil {
			continue // gone since the walk
		}
		out = append(out, info)
	}
	return out
}

// closeRun closes a successful run's fds, including those in the ctx.
func closeRun(t testing.TB, f fixture, res *bpfsys.LoadResult) {
	t.Helper()
	maps, progs, err := bpfsys.ReadCtxFDs(res.CtxOut, f.nrMaps, f.nrProgs)
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range append(maps, progs...) {
		if err := unix.Close(fd); err != nil {
			t.Errorf("close %d: %v", fd, err)
		}
	}
	if err := errors.Join(res.LoaderFD.Close(), res.MapFD.Close()); err != nil {
		t.Error(err)
	}
}

// loadsBetween checks that this process loaded want programs while fn
// ran, counted from the kernel's program events (the kernel is shared:
// other processes load programs at any time).
func loadsBetween(t *testing.T, want uint32, fn func()) {
	t.Helper()
	w := progwatch.Start(t)
	w.Sync(t)
	w.Reset()
	fn()
	w.Sync(t)
	if got := uint32(len(w.LoadedBy(os.Getpid()))); got != want {
		t.Errorf("programs loaded: %d, want %d", got, want)
	}
}
