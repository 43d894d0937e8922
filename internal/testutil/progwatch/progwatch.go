// Package progwatch tells a test which programs it (or a child process it
// started) loaded, in a kernel that other processes share, from the
// kernel's program load and unload events.
package progwatch

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/bpfattest/bpfattest/internal/progevents"
	"github.com/bpfattest/bpfattest/internal/testutil"
)

// Watch records the kernel's program load and unload events, with
// the process behind each, so that a test can tell which programs it (or a
// child it started) loaded in a kernel that other processes share: counting
// program ids cannot, since anyone may load a program at any time.
type Watch struct {
	w      *progevents.Watcher
	events []progevents.Event
	lost   uint64
}

// Start starts recording. It needs root; under the strict switch a
// kernel without program events fails the test, elsewhere it skips.
func Start(tb testing.TB) *Watch {
	tb.Helper()
	testutil.RequireRoot(tb)
	w, err := progevents.Open(progevents.Options{RingPages: 256})
	if err != nil {
		testutil.SkipEnv(tb, "kernel program events: %v", err)
	}
	tb.Cleanup(func() { w.Close() })
	return &Watch{w: w}
}

// Sync makes sure every event of a load or release that finished before
// the call has been read: it loads and releases a marker program and reads
// until the marker's release shows (events of earlier loads were written to
// their CPU's ring before it). Lost events fail the test.
func (p *Watch) Sync(tb testing.TB) {
	tb.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.SocketFilter,
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
		License:      "GPL",
	})
	if err != nil {
		tb.Fatalf("marker program: %v", err)
	}
	info, err := prog.Info()
	if err != nil {
		tb.Fatal(err)
	}
	id, _ := info.ID()
	prog.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for seen := false; !seen; {
		b, err := p.w.Read(ctx)
		if err != nil {
			tb.Fatalf("program events: %v", err)
		}
		p.lost += b.Lost
		for _, e := range b.Events {
			if e.ID == uint32(id) && e.Kind == progevents.Unload {
				seen = true
				continue
			}
			if e.ID != uint32(id) {
				p.events = append(p.events, e)
			}
		}
	}
	if b, err := p.w.Poll(); err == nil {
		p.lost += b.Lost
		p.events = append(p.events, b.Events...)
	}
	if p.lost > 0 {
		tb.Fatalf("%d program events lost: the count of loads would be a guess", p.lost)
	}
}

// LoadedBy returns the ids of the programs process pid loaded since the
// watch started or was last reset, in load order. Call Sync first.
func (p *Watch) LoadedBy(pid int) []uint32 {
	var ids []uint32
	for _, e := range p.events {
		if e.Kind == progevents.Load && e.PID == uint32(pid) && !slices.Contains(ids, e.ID) {
			ids = append(ids, e.ID)
		}
	}
	return ids
}

// Reset forgets the events read so far.
func (p *Watch) Reset() { p.events = p.events[:0] }
