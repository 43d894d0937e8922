package agent_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/bpfattest/bpfattest/agent"
	"github.com/bpfattest/bpfattest/internal/bpfsys"
	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/lskel"
	"github.com/bpfattest/bpfattest/measure"
	"github.com/bpfattest/bpfattest/measure/cms"
)

// fixtureShape is each fixture's context shape (maps, programs) and the
// names the kernel gives its programs.
var fixtureShape = map[string]struct {
	maps  int
	progs []string
}{
	"counter": {2, []string{"count_sys_enter"}},
	"pair":    {1, []string{"pair_enter", "pair_exit"}},
	"rocfg":   {2, []string{"rocfg_filter"}},
}

// TestLoadSignedFixtures loads every signed fixture through the agent and
// checks the whole story: the measurement record precedes the result
// record and says what happened (verdict OK, kernel check as the probe
// found, the context's digest); the result names the loader and every
// program and map with the IDs and tags bpftool prints; the loader is gone;
// and the programs run after Load has returned.
func TestLoadSignedFixtures(t *testing.T) {
	a := newAgent(t, config(t))
	support, err := bpfsys.ProbeSignedLoad(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	wantCheck := measure.KernelCheckUnavailable
	if support == bpfsys.SignaturesChecked {
		wantCheck = measure.KernelCheckVerified
	}
	for _, name := range []string{"counter", "pair", "rocfg"} {
		t.Run(name, func(t *testing.T) {
			src := header(t, name, true)
			resp, err := a.Load(t.Context(), agent.LoadRequest{Artifact: src,
				Requester: measure.Requester{UID: 0, PID: uint32(os.Getpid()), Exe: "agent.test"}})
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if resp.MeasurementRecord >= resp.ResultRecord {
				t.Errorf("measurement record %d not before result record %d", resp.MeasurementRecord, resp.ResultRecord)
			}
			m := measurementOf(t, a, resp.MeasurementRecord)
			shape := fixtureShape[name]
			ctxSum := sha256.Sum256(bpfsys.NewCtx(shape.maps, len(shape.progs)))
			switch {
			case m.Verdict != cms.VerdictOK:
				t.Errorf("verdict %v, want OK", m.Verdict)
			case m.KernelCheck != wantCheck:
				t.Errorf("kernel check %v, want %v (probe: %v)", m.KernelCheck, wantCheck, support)
			case !bytes.Equal(m.LoaderContextSHA256, ctxSum[:]):
				t.Errorf("loader context digest %x, want %x", m.LoaderContextSHA256, ctxSum)
			case m.Requester == nil || m.Requester.PID != uint32(os.Getpid()):
				t.Errorf("requester %+v", m.Requester)
			case m.BootTimeNS == 0:
				t.Error("no boot time")
			}

			res := resultOf(t, a, resp.ResultRecord)
			if res.Outcome != measure.OutcomeLoaded || res.MeasurementRecord != resp.MeasurementRecord {
				t.Fatalf("result %+v", res)
			}
			if sum := sha256.Sum256(record(t, a, resp.MeasurementRecord).Content); res.MeasurementSHA256 != sum {
				t.Errorf("result names measurement digest %x, want %x", res.MeasurementSHA256, sum)
			}
			art, err := lskel.Load(src)
			if err != nil {
				t.Fatal(err)
			}
			insnSum := sha256.Sum256(art.Insns)
			if res.Loader == nil || !bytes.Equal(res.Loader.Tag[:], insnSum[:8]) || res.DataMap == nil {
				t.Errorf("loader %+v data map %+v, want tag %x", res.Loader, res.DataMap, insnSum[:8])
			} else if exists(t, res.Loader.ID) {
				t.Errorf("loader %d still in the kernel after Load", res.Loader.ID)
			}
			if len(res.Programs) != len(shape.progs) || len(res.Maps) != shape.maps {
				t.Fatalf("result has %d programs and %d maps, want %d and %d", len(res.Programs), len(res.Maps), len(shape.progs), shape.maps)
			}
			for i, p := range res.Programs {
				if p.Name != shape.progs[i] {
					t.Errorf("program %d named %q, want %q", i, p.Name, shape.progs[i])
				}
				checkBpftool(t, p)
				// The measurement was taken before the kernel loaded the
				// program, on the clock the kernel stamps it with.
				info, err := bpfsys.ProgramInfoByID(p.ID)
				if err != nil {
					t.Fatal(err)
				}
				if uint64(info.LoadTime) < m.BootTimeNS {
					t.Errorf("program %q loaded at %d ns after boot, before its measurement at %d", p.Name, info.LoadTime, m.BootTimeNS)
				}
			}
			switch name {
			case "counter":
				runCounter(t, res)
			case "pair":
				runPair(t, res)
			case "rocfg":
				runRocfg(t, res)
			}
		})
	}
	if st := a.Status(); st.Loaded != 4 || st.KernelSignatures != support.String() {
		t.Errorf("status %+v, want 4 loaded programs and kernel signatures %q", st, support)
	}
}

// checkBpftool compares a result's program with what the real bpftool says.
func checkBpftool(t *testing.T, p measure.KernelObject) {
	t.Helper()
	bpftool := testutil.RequireTool(t, "bpftool")
	out, err := exec.Command(bpftool, "prog", "show", "id", strconv.FormatUint(uint64(p.ID), 10), "--json").Output()
	if err != nil {
		t.Fatalf("bpftool prog show id %d: %v", p.ID, err)
	}
	var got struct {
		ID   uint32 `json:"id"`
		Tag  string `json:"tag"`
		Name string `json:"name"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("bpftool output %q: %v", out, err)
	}
	if got.ID != p.ID || got.Tag != hex.EncodeToString(p.Tag[:]) || got.Name != p.Name {
		t.Errorf("bpftool says id %d tag %s name %q; result says id %d tag %x name %q", got.ID, got.Tag, got.Name, p.ID, p.Tag, p.Name)
	}
}

// progByID opens a result's program by id, as another process would.
func progByID(t *testing.T, id uint32) *ebpf.Program {
	t.Helper()
	p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id))
	if err != nil {
		t.Fatalf("program %d: %v", id, err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// mapNamed opens the result's map of that name.
func mapNamed(t *testing.T, res *measure.LoadResult, name string) *ebpf.Map {
	t.Helper()
	for _, m := range res.Maps {
		if m.Name == name {
			mp, err := ebpf.NewMapFromID(ebpf.MapID(m.ID))
			if err != nil {
				t.Fatalf("map %d: %v", m.ID, err)
			}
			t.Cleanup(func() { mp.Close() })
			return mp
		}
	}
	t.Fatalf("no map %q in %+v", name, res.Maps)
	return nil
}

// runCounter attaches count_sys_enter to sys_enter and sees per_syscall
// count this test's getppid calls.
func runCounter(t *testing.T, res *measure.LoadResult) {
	l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: "sys_enter", Program: progByID(t, res.Programs[0].ID)})
	if err != nil {
		t.Fatal(err)
	}
	const calls = 100
	for range calls {
		unix.Getppid()
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	var n uint64
	if err := mapNamed(t, res, "per_syscall").Lookup(uint32(unix.SYS_GETPPID), &n); err != nil {
		t.Fatal(err)
	}
	if n < calls {
		t.Errorf("per_syscall[getppid] = %d, want >= %d", n, calls)
	}
}

// runPair attaches both programs and sees flows[our tgid] count entries and
// exits.
func runPair(t *testing.T, res *measure.LoadResult) {
	for i, tp := range []string{"sys_enter", "sys_exit"} {
		l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: tp, Program: progByID(t, res.Programs[i].ID)})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
	}
	const calls = 50
	for range calls {
		unix.Getppid()
	}
	var v struct{ Entered, Exited uint64 }
	if err := mapNamed(t, res, "flows").Lookup(uint32(os.Getpid()), &v); err != nil {
		t.Fatal(err)
	}
	if v.Entered < calls || v.Exited < calls {
		t.Errorf("flows[self] = %+v, want both >= %d", v, calls)
	}
}

// runRocfg runs the socket filter with BPF_PROG_TEST_RUN: snap_len 96 and
// drop_below 20 come from the signed .rodata. The kernel pulls the 14-byte
// Ethernet header, so a frame of n+14 bytes gives skb->len n.
func runRocfg(t *testing.T, res *measure.LoadResult) {
	const ethHdrLen = 14
	p := progByID(t, res.Programs[0].ID)
	for _, c := range []struct{ in, want uint32 }{{126, 96}, {46, 46}, {16, 0}} {
		ret, err := p.Run(&ebpf.RunOptions{Data: make([]byte, c.in+ethHdrLen)})
		if err != nil {
			t.Fatal(err)
		}
		if ret != c.want {
			t.Errorf("skb->len %d: filter returned %d, want %d", c.in, ret, c.want)
		}
	}
	for key, want := range []uint64{2, 1} { // kept, dropped
		var n uint64
		if err := mapNamed(t, res, "verdicts").Lookup(uint32(key), &n); err != nil {
			t.Fatal(err)
		}
		if n != want {
			t.Errorf("verdicts[%d] = %d, want %d", key, n, want)
		}
	}
}

// TestLoadPinned pins a load's objects: they outlive the agent, while an
// unpinned load's programs leave the kernel when the agent closes.
func TestLoadPinned(t *testing.T) {
	requireKernel(t)
	dir := bpffs(t)
	a := newAgent(t, config(t))
	pinned, err := a.Load(t.Context(), agent.LoadRequest{Artifact: header(t, "counter", true), PinDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "count_sys_enter"), filepath.Join(dir, "per_syscall"), filepath.Join(dir, "counter__bss")}
	if len(pinned.Pinned) != len(want) {
		t.Fatalf("pinned %q, want %q", pinned.Pinned, want)
	}
	for i := range want {
		if pinned.Pinned[i] != want[i] {
			t.Errorf("pin %d: %q, want %q", i, pinned.Pinned[i], want[i])
		}
	}
	held, err := a.Load(t.Context(), agent.LoadRequest{Artifact: header(t, "counter", true)})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	p, err := ebpf.LoadPinnedProgram(want[0], nil)
	if err != nil {
		t.Fatalf("pinned program after Close: %v", err)
	}
	defer p.Close()
	info, err := p.Info()
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := info.ID(); uint32(id) != pinned.Result.Programs[0].ID {
		t.Errorf("pinned program id %d, want %d", id, pinned.Result.Programs[0].ID)
	}
	if exists(t, held.Result.Programs[0].ID) {
		t.Errorf("unpinned program %d outlived the agent", held.Result.Programs[0].ID)
	}
}

// TestLoadPinClash loads into a pin directory where the names are taken:
// the load stands and is recorded, the error says the pin failed
// (ErrPin, wrapping the kernel's EEXIST), no pin of the second load is
// left behind, and the agent keeps its programs until it closes.
func TestLoadPinClash(t *testing.T) {
	requireKernel(t)
	dir := filepath.Join(bpffs(t), "clash") // the mount's root holds the kernel's *.debug iterators
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	a := newAgent(t, config(t))
	first, err := a.Load(t.Context(), agent.LoadRequest{Artifact: header(t, "counter", true), PinDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	second, err := a.Load(t.Context(), agent.LoadRequest{Artifact: header(t, "counter", true), PinDir: dir})
	if !errors.Is(err, agent.ErrPin) || !errors.Is(err, syscall.EEXIST) {
		t.Fatalf("second load into the same pins: %v, want ErrPin wrapping EEXIST", err)
	}
	if second == nil || second.Result.Outcome != measure.OutcomeLoaded || second.ResultRecord != second.MeasurementRecord+1 {
		t.Fatalf("response %+v, want a recorded load", second)
	}
	if len(second.Pinned) != 0 {
		t.Errorf("pinned %q after a failed pin", second.Pinned)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(first.Pinned) {
		t.Errorf("%d entries in the pin dir %v, want the first load's %q", len(entries), entries, first.Pinned)
	}
	id := second.Result.Programs[0].ID
	if !exists(t, id) {
		t.Fatalf("program %d of the load whose pin failed is gone; the agent must keep it", id)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if exists(t, id) {
		t.Errorf("program %d outlived the agent without a pin", id)
	}
}

// TestLoadPinOwner: a requester other than root pins only into a directory
// it owns; a directory owned by someone else is refused before anything is
// recorded or run, and the same request succeeds once the requester owns
// it.
func TestLoadPinOwner(t *testing.T) {
	requireKernel(t)
	dir := filepath.Join(bpffs(t), "user")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	a := newAgent(t, config(t))
	req := agent.LoadRequest{Artifact: header(t, "counter", true), PinDir: dir,
		Requester: measure.Requester{UID: 65534, GID: 65534, PID: uint32(os.Getpid())}}
	before := a.Status().Records
	if _, err := a.Load(t.Context(), req); !errors.Is(err, agent.ErrInvalid) || !strings.Contains(err.Error(), "uid 65534") {
		t.Fatalf("pin into root's directory for uid 65534: %v, want ErrInvalid naming the uid", err)
	}
	if after := a.Status().Records; after != before {
		t.Fatalf("records %d -> %d for a refused pin dir", before, after)
	}
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	resp, err := a.Load(t.Context(), req)
	if err != nil {
		t.Fatalf("pin into the requester's own directory: %v", err)
	}
	if len(resp.Pinned) != 3 || filepath.Dir(resp.Pinned[0]) != dir {
		t.Errorf("pinned %q, want three pins in %s", resp.Pinned, dir)
	}
}

// bpffs mounts a private bpf filesystem for the test and unmounts it at
// cleanup (which drops the pins in it).
func bpffs(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("bpffs", dir, "bpf", 0, ""); err != nil {
		testutil.SkipEnv(t, "mount bpffs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount bpffs: %v", err)
		}
	})
	return dir
}

// TestLoadInvalid refuses requests that cannot be measured, before any
// record or bpf() call.
func TestLoadInvalid(t *testing.T) {
	cfg := config(t)
	calls := 0
	agent.SetStepHook(&cfg, func(bpfsys.Step) error { calls++; return nil })
	a := newAgent(t, cfg)
	before := a.Status().Records
	for _, c := range []struct {
		name string
		req  agent.LoadRequest
	}{
		{"empty", agent.LoadRequest{}},
		{"not an artifact", agent.LoadRequest{Artifact: []byte("int main(void) { return 0; }\n")}},
		{"truncated bundle", agent.LoadRequest{Artifact: []byte("BPFLSKEL")}},
		{"relative pin dir", agent.LoadRequest{Artifact: header(t, "counter", true), PinDir: "pins"}},
		{"missing pin dir", agent.LoadRequest{Artifact: header(t, "counter", true), PinDir: "/nonexistent/pins"}},
		{"pin dir not on bpffs", agent.LoadRequest{Artifact: header(t, "counter", true), PinDir: t.TempDir()}},
		{"pin dir a file", agent.LoadRequest{Artifact: header(t, "counter", true), PinDir: "/proc/self/status"}},
	} {
		if _, err := a.Load(t.Context(), c.req); !errors.Is(err, agent.ErrInvalid) {
			t.Errorf("%s: err %v, want ErrInvalid", c.name, err)
		}
	}
	if after := a.Status().Records; after != before || calls != 0 {
		t.Errorf("records %d -> %d, bpf steps %d: want nothing recorded or run", before, after, calls)
	}
}

// TestLoadWaitsForSlotWithContext: a load admitted while every slot of the
// loads in flight is taken waits for one, holding its turn, and gives up
// when its caller does: nothing recorded, nothing run, and the next load
// is not stuck behind it.
func TestLoadWaitsForSlotWithContext(t *testing.T) {
	cfg := config(t)
	calls := 0
	agent.SetStepHook(&cfg, func(bpfsys.Step) error { calls++; return nil })
	a := newAgent(t, cfg)
	req := agent.LoadRequest{Artifact: header(t, "counter", true),
		Requester: measure.Requester{UID: 0, PID: uint32(os.Getpid()), Exe: "agent.test"}}
	before := a.Status().Records

	release := a.FillFlight()
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	_, err := a.Load(ctx, req)
	release() // Status waits for the loads in flight to land
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("load with every slot taken: err %v, want the caller's deadline", err)
	}
	if after := a.Status().Records; after != before || calls != 0 {
		t.Fatalf("records %d -> %d, bpf steps %d: want nothing recorded or run", before, after, calls)
	}

	resp, err := a.Load(t.Context(), req)
	if err != nil {
		t.Fatalf("load after the slots came back: %v", err)
	}
	if resp.ResultRecord == 0 || calls == 0 {
		t.Fatalf("load after the slots came back: result record %d, bpf steps %d", resp.ResultRecord, calls)
	}
}

// TestLoadsInFlightMetric: a load counts as in flight from its admission
// until its result is recorded, and not after.
func TestLoadsInFlightMetric(t *testing.T) {
	cfg := config(t)
	var a *agent.Agent
	during := int64(-1)
	agent.SetAfterRun(&cfg, func(*measure.LoadResult) { during = a.Metrics().Snapshot().LoadsInFlight })
	a = newAgent(t, cfg)
	if n := a.Metrics().Snapshot().LoadsInFlight; n != 0 {
		t.Fatalf("%d loads in flight before any load", n)
	}
	if _, err := a.Load(t.Context(), agent.LoadRequest{Artifact: header(t, "counter", true),
		Requester: measure.Requester{UID: 0, PID: uint32(os.Getpid()), Exe: "agent.test"}}); err != nil {
		t.Fatal(err)
	}
	if during != 1 {
		t.Errorf("%d loads in flight while the load ran, want 1", during)
	}
	if n := a.Metrics().Snapshot().LoadsInFlight; n != 0 {
		t.Errorf("%d loads in flight after the load returned, want 0", n)
	}
}
