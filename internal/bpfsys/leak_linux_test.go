package bpfsys_test

import (
	"context"
	"errors"
	"testing"

	"github.com/bpfattest/bpfattest/internal/bpfsys"
)

// TestNoFDLeak counts /proc/self/fd around runs that fail at every step and
// for every reason this machine can produce, and around successful runs whose
// fds are closed: the count must not move.
func TestNoFDLeak(t *testing.T) {
	requireKernel(t)
	f := loadFixture(t, "counter", true)
	errStop := errors.New("stop")
	type failure struct {
		req  bpfsys.LoadRequest
		step bpfsys.Step
	}
	var failing []failure
	for _, c := range []struct {
		mutate func(*bpfsys.LoadRequest)
		step   bpfsys.Step
	}{
		{func(r *bpfsys.LoadRequest) { r.Signature = f.sig }, bpfsys.ProgLoad},                          // EOPNOTSUPP
		{func(r *bpfsys.LoadRequest) { r.Insns = flip(r.Insns, len(r.Insns)-1) }, bpfsys.ProgLoad},      // EACCES
		{func(r *bpfsys.LoadRequest) { r.ExclHash = flip(r.ExclHash, 31) }, bpfsys.ProgLoad},            // EACCES
		{func(r *bpfsys.LoadRequest) { r.LogBuf, r.Insns = true, flip(r.Insns, 300) }, bpfsys.ProgLoad}, // EACCES, with a log
		{func(r *bpfsys.LoadRequest) { r.Data = flip(r.Data, 1300) }, bpfsys.TestRun},                   // loader returns -22
		{func(r *bpfsys.LoadRequest) { r.Ctx = r.Ctx[:8] }, bpfsys.TestRun},                             // ctx smaller than the loader reads
	} {
		req := request(f, false)
		c.mutate(&req)
		failing = append(failing, failure{req, c.step})
	}

	runAll := func() {
		for i, c := range failing {
			res, err := bpfsys.Run(context.Background(), c.req, nil)
			if err == nil || res.Step != c.step {
				t.Fatalf("case %d: err %v at %s, want an error at %s", i, err, res.Step, c.step)
			}
			if res.MapFD != nil || res.LoaderFD != nil {
				t.Fatalf("case %d: fds returned on error", i)
			}
		}
		for _, stop := range bpfsys.Steps() {
			_, err := bpfsys.Run(context.Background(), request(f, false), func(s bpfsys.Step) error {
				if s == stop {
					return errStop
				}
				return nil
			})
			if !errors.Is(err, errStop) {
				t.Fatalf("hook at %s: %v", stop, err)
			}
		}
		res, err := bpfsys.Run(context.Background(), request(f, false), nil)
		if err != nil {
			t.Fatal(err)
		}
		closeRun(t, f, res)
		if _, err := bpfsys.ProbeSignedLoad(context.Background()); err != nil {
			t.Fatal(err)
		}
		if _, err := bpfsys.ProgramIDs(); err != nil {
			t.Fatal(err)
		}
		if _, err := bpfsys.ProgramInfoByID(1<<31 - 1); err == nil {
			t.Fatal("info of a missing id succeeded")
		}
	}

	runAll() // warm up anything the runtime opens lazily
	before := openFDs(t)
	for range 3 {
		runAll()
	}
	if after := openFDs(t); after != before {
		t.Errorf("open fds %d before, %d after", before, after)
	}
}
