package bpfsys_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/bpfattest/bpfattest/internal/bpfsys"
)

// hashImmOffset returns the byte offset of the first immediate of the first
// "r3 = ld_imm64" in a signed loader: the embedded SHA-256 of the data blob.
// Flipping it keeps the instruction stream valid, so the only thing that can
// refuse the load is the exclusive-map hash check.
func hashImmOffset(t *testing.T, insns []byte) int {
	t.Helper()
	for off := 0; off+8 <= len(insns); off += 8 {
		if bytes.Equal(insns[off:off+4], []byte{0x18, 0x03, 0, 0}) {
			return off + 4
		}
	}
	t.Fatal("no r3 ld_imm64 in signed loader")
	return 0
}

// TestHashChain shows the kernel enforcing the chain from the loader to the
// data: a changed byte in the loader or in excl_prog_hash makes the kernel
// refuse the loader (EACCES: the program's digest is not the map's
// excl_prog_hash); a changed byte in the data makes the signed loader return
// -EINVAL from its own check, before it creates anything (counted from the
// kernel's program ids).
func TestHashChain(t *testing.T) {
	requireKernel(t)
	for _, name := range []string{"counter", "pair", "rocfg"} {
		f := loadFixture(t, name, true)
		t.Run(f.String(), func(t *testing.T) {
			for _, c := range []struct {
				what   string
				mutate func(*bpfsys.LoadRequest)
			}{
				{"insns", func(r *bpfsys.LoadRequest) { r.Insns = flip(r.Insns, hashImmOffset(t, r.Insns)) }},
				{"insns last byte", func(r *bpfsys.LoadRequest) { r.Insns = flip(r.Insns, len(r.Insns)-1) }},
				{"excl hash", func(r *bpfsys.LoadRequest) { r.ExclHash = flip(r.ExclHash, 0) }},
			} {
				req := request(f, false)
				req.LogBuf = true
				c.mutate(&req)
				res, err := bpfsys.Run(context.Background(), req, nil)
				if !errors.Is(err, unix.EACCES) || res.Step != bpfsys.ProgLoad {
					t.Errorf("flipped %s: err %v at %s, want EACCES at prog-load", c.what, err, res.Step)
					continue
				}
				if !strings.Contains(res.VerifierLog, "excl_prog_hash") {
					t.Errorf("flipped %s: verifier log %q lacks the excl_prog_hash message", c.what, res.VerifierLog)
				}
				if res.MapFD != nil || res.LoaderFD != nil {
					t.Errorf("flipped %s: fds left open", c.what)
				}
			}

			// The loader loads (one program) and refuses to create anything.
			loadsBetween(t, 1, func() {
				req := request(f, false)
				req.Data = flip(req.Data, len(req.Data)/2)
				res, err := bpfsys.Run(context.Background(), req, nil)
				var le *bpfsys.LoaderError
				if !errors.As(err, &le) || le.Retval != -int32(unix.EINVAL) || !errors.Is(err, unix.EINVAL) {
					t.Fatalf("flipped data: err %v, want loader retval -22", err)
				}
				if res.Step != bpfsys.TestRun || res.Retval != -22 || res.MapHash != sha(req.Data) {
					t.Errorf("flipped data: step %s retval %d map hash %x", res.Step, res.Retval, res.MapHash)
				}
				maps, progs, err := bpfsys.ReadCtxFDs(res.CtxOut, f.nrMaps, f.nrProgs)
				if err != nil {
					t.Fatal(err)
				}
				if slices.ContainsFunc(append(maps, progs...), func(fd int) bool { return fd != 0 }) {
					t.Errorf("flipped data: loader wrote fds %v %v", maps, progs)
				}
			})
			// Positive control: the untouched loader creates its programs.
			loadsBetween(t, 1+uint32(f.nrProgs), func() {
				res, err := bpfsys.Run(context.Background(), request(f, false), nil)
				if err != nil {
					t.Fatal(err)
				}
				closeRun(t, f, res)
			})
		})
	}
}
