package bpfsys_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/bpfattest/bpfattest/internal/bpfsys"
)

// TestHookOrder checks that the hook sees every step, in order, once.
func TestHookOrder(t *testing.T) {
	requireKernel(t)
	f := loadFixture(t, "counter", true)
	var seen []bpfsys.Step
	res, err := bpfsys.Run(context.Background(), request(f, false), func(s bpfsys.Step) error {
		seen = append(seen, s)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeRun(t, f, res) })
	if !slices.Equal(seen, bpfsys.Steps()) {
		t.Errorf("hook saw %v, want %v", seen, bpfsys.Steps())
	}
}

// TestHookStops makes the hook fail before each step in turn: the step is not
// performed, Run returns the hook's error, and everything is closed. Before
// ProgLoad the proof that no program was created is the enumeration: no new
// program references the data map (the loader would, through fd_array).
func TestHookStops(t *testing.T) {
	requireKernel(t)
	f := loadFixture(t, "counter", true)
	errStop := errors.New("stop here")
	for _, stop := range bpfsys.Steps() {
		t.Run(stop.String(), func(t *testing.T) {
			var seen []bpfsys.Step
			before := programIDs(t)
			res, err := bpfsys.Run(context.Background(), request(f, false), func(s bpfsys.Step) error {
				seen = append(seen, s)
				if s == stop {
					return errStop
				}
				return nil
			})
			after := programIDs(t)
			if !errors.Is(err, errStop) || res.Step != stop {
				t.Fatalf("err %v step %s, want the hook's error at %s", err, res.Step, stop)
			}
			if seen[len(seen)-1] != stop || len(seen) != slices.Index(bpfsys.Steps(), stop)+1 {
				t.Errorf("hook saw %v", seen)
			}
			if res.MapFD != nil || res.LoaderFD != nil || res.CtxOut != nil {
				t.Errorf("left open: %v %v, ctx %v", res.MapFD, res.LoaderFD, res.CtxOut)
			}
			if stop > bpfsys.MapInfo && res.MapID == 0 {
				t.Errorf("map id unknown after map-info")
			}
			if stop <= bpfsys.ProgLoad && res.LoaderID != 0 {
				t.Errorf("loader id %d although prog-load did not run", res.LoaderID)
			}
			if stop == bpfsys.ProgLoad {
				for _, p := range newPrograms(t, before, after) {
					if slices.Contains(p.MapIDs, res.MapID) {
						t.Errorf("program %d %q uses the data map %d", p.ID, p.Name, res.MapID)
					}
				}
			}
		})
	}
}

// TestHookLoadCount counts, from the kernel's program ids, the programs
// created by runs whose hook fails before ProgLoad (none), before LoaderInfo
// and before TestRun (the loader only), and by a whole counter run (the
// loader and count_sys_enter).
func TestHookLoadCount(t *testing.T) {
	requireKernel(t)
	f := loadFixture(t, "counter", true)
	errStop := errors.New("stop here")
	for _, c := range []struct {
		stop  bpfsys.Step
		loads uint32
	}{{bpfsys.MapInfo, 0}, {bpfsys.ProgLoad, 0}, {bpfsys.LoaderInfo, 1}, {bpfsys.TestRun, 1}, {bpfsys.NoStep, 2}} {
		loadsBetween(t, c.loads, func() {
			res, err := bpfsys.Run(context.Background(), request(f, false), func(s bpfsys.Step) error {
				if s == c.stop {
					return errStop
				}
				return nil
			})
			if c.stop == bpfsys.NoStep {
				if err != nil {
					t.Fatal(err)
				}
				closeRun(t, f, res)
			} else if !errors.Is(err, errStop) {
				t.Fatalf("stop at %s: %v", c.stop, err)
			}
		})
	}
}

// TestContextCanceled checks that a canceled context stops Run before the
// first step.
func TestContextCanceled(t *testing.T) {
	requireKernel(t)
	f := loadFixture(t, "rocfg", false)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res, err := bpfsys.Run(ctx, request(f, false), func(bpfsys.Step) error {
		t.Error("hook called with a canceled context")
		return nil
	})
	if !errors.Is(err, context.Canceled) || res.Step != bpfsys.MapCreate {
		t.Errorf("err %v step %s, want context.Canceled at map-create", err, res.Step)
	}
}
