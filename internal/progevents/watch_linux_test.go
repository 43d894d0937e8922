package progevents_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/bpfattest/bpfattest/internal/progevents"
	"github.com/bpfattest/bpfattest/internal/testutil"
)

// loadFilter loads "r0 = 0; exit" as a socket filter and returns it with
// its id and tag.
func loadFilter(t *testing.T) (*ebpf.Program, uint32, string) {
	t.Helper()
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.SocketFilter,
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
		License:      "GPL",
	})
	if err != nil {
		t.Fatal(err)
	}
	info, err := p.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := info.ID()
	return p, uint32(id), info.Tag
}

func open(t *testing.T, opts progevents.Options) *progevents.Watcher {
	t.Helper()
	testutil.RequireRoot(t)
	w, err := progevents.Open(opts)
	if err != nil {
		testutil.SkipEnv(t, "perf events: %v", err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// TestLoadAndUnload: a program this process loads and closes shows as a
// load and an unload event with its id, its tag and this process's pid,
// whatever else the shared kernel does meanwhile.
func TestLoadAndUnload(t *testing.T) {
	w := open(t, progevents.Options{})
	p, id, tag := loadFilter(t)
	p.Close()
	var load, unload *progevents.Event
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for load == nil || unload == nil {
		b, err := w.Read(ctx)
		if err != nil {
			t.Fatalf("read: %v (load %v, unload %v)", err, load, unload)
		}
		for i := range b.Events {
			e := b.Events[i]
			if e.ID != id {
				continue
			}
			switch e.Kind {
			case progevents.Load:
				load = &e
			case progevents.Unload:
				unload = &e
			}
		}
	}
	pid := uint32(os.Getpid())
	if load.PID != pid || load.Time == 0 {
		t.Errorf("load event %+v, want pid %d and a time", load, pid)
	}
	if got := tagHex(load.Tag); got != tag || tagHex(unload.Tag) != tag {
		t.Errorf("tags %s / %s, kernel says %s", got, tagHex(unload.Tag), tag)
	}
	if unload.Time < load.Time {
		t.Errorf("unload at %d before load at %d", unload.Time, load.Time)
	}
}

// TestShortLived: 200 programs, each loaded and released within a
// millisecond, all appear as loads and unloads.
func TestShortLived(t *testing.T) {
	w := open(t, progevents.Options{})
	want := map[uint32]bool{}
	for range 200 {
		start := time.Now()
		p, id, _ := loadFilter(t)
		p.Close()
		if d := time.Since(start); d > time.Millisecond {
			t.Logf("program %d lived %v", id, d)
		}
		want[id] = true
	}
	loads, unloads := map[uint32]bool{}, map[uint32]bool{}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for len(loads) < len(want) || len(unloads) < len(want) {
		b, err := w.Read(ctx)
		if err != nil {
			t.Fatalf("read: %v: %d loads, %d unloads of %d seen", err, len(loads), len(unloads), len(want))
		}
		if b.Lost > 0 {
			t.Fatalf("%d records lost", b.Lost)
		}
		for _, e := range b.Events {
			if !want[e.ID] {
				continue
			}
			if e.Kind == progevents.Load {
				loads[e.ID] = true
			} else {
				unloads[e.ID] = true
			}
		}
	}
}

// TestLost: a one-page ring that nobody reads overflows, and the next read
// says records were lost.
func TestLost(t *testing.T) {
	w := open(t, progevents.Options{RingPages: 1})
	for range 400 {
		p, _, _ := loadFilter(t)
		p.Close()
	}
	var lost uint64
	for {
		b, err := w.Poll()
		if err != nil {
			t.Fatal(err)
		}
		lost += b.Lost
		if len(b.Events) == 0 && b.Lost == 0 {
			break
		}
	}
	if lost == 0 {
		t.Error("no records reported lost after 800 events into a one-page ring")
	}
}

// TestClose: Close wakes a blocked Read, which returns ErrClosed.
func TestClose(t *testing.T) {
	w, err := func() (*progevents.Watcher, error) {
		testutil.RequireRoot(t)
		return progevents.Open(progevents.Options{})
	}()
	if err != nil {
		testutil.SkipEnv(t, "perf events: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		for {
			if _, err := w.Read(context.Background()); err != nil {
				done <- err
				return
			}
		}
	}()
	time.Sleep(50 * time.Millisecond)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != progevents.ErrClosed {
			t.Errorf("read after close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Read did not return after Close")
	}
}

func tagHex(t [8]byte) string {
	const hexdigits = "0123456789abcdef"
	out := make([]byte, 16)
	for i, b := range t {
		out[2*i], out[2*i+1] = hexdigits[b>>4], hexdigits[b&15]
	}
	return string(out)
}

// TestCloseAfterCanceledWait: the wake-up a canceled Wait schedules has
// run before Close releases the eventfd (under -race, a wake-up left
// running wrote the descriptor's number as Close reset it; without the
// detector, it could write to whatever file took the number next).
func TestCloseAfterCanceledWait(t *testing.T) {
	testutil.RequireRoot(t)
	for range 100 {
		w, err := progevents.Open(progevents.Options{})
		if err != nil {
			testutil.SkipEnv(t, "perf events: %v", err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- w.Wait(ctx) }()
		cancel()
		if err := <-done; err != nil && err != context.Canceled {
			t.Fatalf("wait: %v", err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
