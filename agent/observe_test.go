package agent_test

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/bpfattest/bpfattest/agent"
	"github.com/bpfattest/bpfattest/attest"
	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
	"github.com/bpfattest/bpfattest/measure"
)

// churnEnv makes the test binary a process outside the agent that loads
// and releases that many socket filters, each as soon as it is loaded, and
// prints "ID MICROSECONDS" for each.
const churnEnv = "BPFATTEST_AGENT_CHURN"

func churnChild(arg string) int {
	n, err := strconv.Atoi(arg)
	if err != nil {
		return 2
	}
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	spec := &ebpf.ProgramSpec{Name: "churn", Type: ebpf.SocketFilter, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}}
	for range n {
		start := time.Now()
		p, err := ebpf.NewProgram(spec)
		if err != nil {
			return 2
		}
		info, err := p.Info()
		p.Close()
		lived := time.Since(start)
		if err != nil {
			return 2
		}
		id, _ := info.ID()
		w.WriteString(strconv.Itoa(int(id)) + " " + strconv.FormatInt(lived.Microseconds(), 10) + "\n")
	}
	return 0
}

// churn runs churnChild in its own process and returns its pid, the ids it
// loaded and how long each lived.
func churn(t *testing.T, n int) (int, []uint32, []time.Duration) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), churnEnv+"="+strconv.Itoa(n))
	var out, errs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errs
	if err := cmd.Run(); err != nil {
		t.Fatalf("churn child: %v\n%s", err, errs.String())
	}
	var ids []uint32
	var lives []time.Duration
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		f := strings.Fields(line)
		id, _ := strconv.ParseUint(f[0], 10, 32)
		us, _ := strconv.ParseInt(f[1], 10, 64)
		ids, lives = append(ids, uint32(id)), append(lives, time.Duration(us)*time.Microsecond)
	}
	if len(ids) != n {
		t.Fatalf("churn child loaded %d programs, want %d", len(ids), n)
	}
	return cmd.Process.Pid, ids, lives
}

// recorded returns, for the log's unmeasured and transient records, the
// program ids they name with the process the record says loaded (or
// released) each.
func recorded(t *testing.T, recs []cel.Record) map[uint32]uint32 {
	t.Helper()
	out := map[uint32]uint32{}
	for _, r := range recs {
		switch r.Type {
		case cel.BPFUnmeasured:
			kp, err := measure.ParseKernelProgram(r.Content)
			if err != nil {
				t.Fatal(err)
			}
			out[kp.ID] = kp.PID
		case cel.BPFTransient:
			tr, err := measure.ParseTransient(r.Content)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range tr.Programs {
				out[p.ID] = p.PID
			}
		}
	}
	return out
}

// verify quotes a from record from and verifies the evidence with state.
func verify(t *testing.T, a *agent.Agent, n []byte, state *attest.State) *attest.Result {
	t.Helper()
	var from uint64
	if state != nil {
		from = state.NextRecord()
	}
	ev, err := a.Quote(t.Context(), n, from)
	if err != nil {
		t.Fatal(err)
	}
	id, err := a.Identity(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	res, err := attest.Verify(ev, attest.VerifyOptions{Nonce: n, AKPublic: id.AKPublic, State: state, BootPCRs: attest.DefaultBootPCRs()})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestShortLivedProgramsLogged: 200 programs, each loaded and released by a
// process outside the agent as soon as it is loaded (well under a
// millisecond: the sweep-based observer saw none of five such programs),
// all appear in the log, with the loading process; the verified history
// lists them as gone.
func TestShortLivedProgramsLogged(t *testing.T) {
	requireKernel(t)
	a := newAgent(t, config(t))
	pid, ids, lives := churn(t, 200)
	short := 0
	for _, d := range lives {
		if d < time.Millisecond {
			short++
		}
	}
	t.Logf("%d of %d programs lived under 1 ms (max %v)", short, len(lives), slices.Max(lives))
	if short < len(lives)/2 {
		t.Fatalf("only %d of %d programs lived under 1 ms: the test does not show what it claims", short, len(lives))
	}
	res := verify(t, a, nonce(1), nil)
	recs, err := a.Records(0)
	if err != nil {
		t.Fatal(err)
	}
	got := recorded(t, recs)
	for _, id := range ids {
		p, ok := got[id]
		if !ok {
			t.Errorf("program %d of the churn is not in the log", id)
		} else if p != uint32(pid) {
			t.Errorf("program %d is recorded as loaded by pid %d, the churn was pid %d", id, p, pid)
		}
	}
	inHistory := map[uint32]bool{}
	for _, tr := range res.History().Transient {
		inHistory[tr.Program.ID] = true
	}
	for _, u := range res.History().Unmeasured {
		inHistory[u.Program.ID] = true
	}
	for _, u := range res.Unmeasured() {
		if slices.Contains(ids, u.Program.ID) {
			t.Errorf("churn program %d is listed as still in the kernel", u.Program.ID)
		}
	}
	for _, id := range ids {
		if !inHistory[id] {
			t.Errorf("program %d is not in the verified history", id)
		}
	}
}

// TestEventsLost: with a one-page ring the agent does not drain (no Run),
// a burst of programs overflows it; the next quote finds the loss, records
// it, sweeps, and the verdict says events were lost (a policy can forbid
// it).
func TestEventsLost(t *testing.T) {
	requireKernel(t)
	cfg := config(t)
	cfg.Observer, cfg.EventRingPages = agent.ObserveEvents, 1
	a := newAgent(t, cfg)
	churn(t, 600)
	res := verify(t, a, nonce(2), nil)
	h := res.History()
	if len(h.EventsLost) == 0 {
		t.Fatal("no events-lost record after 1,200 events into a one-page ring")
	}
	t.Logf("events lost: %+v", h.EventsLost)
	recs, err := a.Records(0)
	if err != nil {
		t.Fatal(err)
	}
	lostAt := ofType(recs, cel.BPFEventsLost)[0].RecNum
	pol := &attest.Policy{ForbidLostEvents: true, AllowSimulator: true}
	if v := attest.Evaluate(res, pol); !slices.ContainsFunc(v, func(v attest.Violation) bool {
		return v.Rule == attest.RuleLostEvents && v.Record == lostAt
	}) {
		t.Errorf("forbid_lost_events not broken: %v", v)
	}
}

// TestLoadLeavesInventory: once every program of a load is gone (pinned,
// then the pins removed), the next verification no longer lists the load
// as present; its history says it left.
func TestLoadLeavesInventory(t *testing.T) {
	requireKernel(t)
	dir := bpffs(t)
	a := newAgent(t, config(t))
	resp, err := a.Load(t.Context(), agent.LoadRequest{Artifact: header(t, "counter", true), PinDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	first := verify(t, a, nonce(3), nil)
	if !slices.ContainsFunc(first.Programs(), func(p attest.Program) bool { return p.Record == resp.MeasurementRecord }) {
		t.Fatalf("the load is not present after it stood: %+v", first.Programs())
	}
	for _, p := range resp.Pinned {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range resp.Result.Programs {
		waitGone(t, map[uint32]bool{p.ID: true})
	}
	second := verify(t, a, nonce(4), first.State())
	if slices.ContainsFunc(second.Programs(), func(p attest.Program) bool { return p.Record == resp.MeasurementRecord }) {
		t.Errorf("the load is still listed as present after its programs left: %+v", second.Programs())
	}
	if !slices.ContainsFunc(second.History().Gone, func(p attest.Program) bool { return p.Record == resp.MeasurementRecord }) {
		t.Errorf("the history does not say the load left: %+v", second.History().Gone)
	}
}

// TestHistoryInVerdict: refused loads and programs that came and went are
// in the verified history, with the reasons and the processes, and a policy
// can fail on either.
func TestHistoryInVerdict(t *testing.T) {
	requireKernel(t)
	a := newAgent(t, config(t))
	tampered := tamper(t, mutations()[0])
	for range 3 {
		if _, err := a.Load(t.Context(), agent.LoadRequest{Artifact: tampered}); !errors.Is(err, agent.ErrRefused) {
			t.Fatalf("tampered load: %v", err)
		}
	}
	pid, ids, _ := churn(t, 5)
	res := verify(t, a, nonce(5), nil)
	h := res.History()
	if len(h.Refused) != 3 || h.Refused[0].Result.Reason == "" {
		t.Errorf("refused loads in the history: %+v", h.Refused)
	}
	transient := 0
	for _, tr := range h.Transient {
		if slices.Contains(ids, tr.Program.ID) && tr.Program.PID == uint32(pid) {
			transient++
		}
	}
	for _, u := range h.Unmeasured {
		if slices.Contains(ids, u.Program.ID) && u.Gone {
			transient++
		}
	}
	if transient != len(ids) {
		t.Errorf("%d of the %d programs that came and went are in the history: %+v", transient, len(ids), h.Transient)
	}
	one := 1
	viol := attest.Evaluate(res, &attest.Policy{MaxRefusedLoads: &one, ForbidUnmeasuredHistory: true, AllowSimulator: true})
	var refused, came bool
	for _, v := range viol {
		refused = refused || v.Rule == attest.RuleMaxRefused && strings.Contains(v.Reason, "3 loads refused")
		came = came || v.Rule == attest.RuleUnmeasuredHistory && strings.Contains(v.Reason, strconv.Itoa(int(ids[0])))
	}
	if !refused || !came {
		t.Errorf("violations %v: want max_refused_loads (3 > 1) and forbid_unmeasured_history naming program %d", viol, ids[0])
	}
}

// TestForeignExtend: another writer extends the agent's PCR. The agent
// stays up: it keeps answering quotes with its log as it is (which no
// longer verifies: the verifier says the log does not replay to the PCR),
// refuses loads with the reason, and says so in its status; restarted, it
// starts read-only instead of failing (no restart loop).
func TestForeignExtend(t *testing.T) {
	requireKernel(t)
	sw := tpmtest.StartSwtpm(t, tpmtest.SwtpmOptions{})
	cfg := config(t)
	cfg.TPM = sw.Spec()
	a := newAgent(t, cfg)
	extendAsAttacker(t, sw, cel.Record{Digests: zeroDigests(t, sw)})
	check := func(a *agent.Agent) {
		t.Helper()
		n := nonce(6)
		ev, err := a.Quote(t.Context(), n, 0)
		if err != nil {
			t.Fatalf("quote after a foreign extend: %v", err)
		}
		id, err := a.Identity(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := attest.Verify(ev, attest.VerifyOptions{Nonce: n, AKPublic: id.AKPublic, BootPCRs: attest.DefaultBootPCRs()}); !errors.Is(err, attest.ReplayMismatch) {
			t.Errorf("verify after a foreign extend: %v, want ReplayMismatch", err)
		}
		if st := a.Status(); !strings.Contains(st.LogMismatch, "does not replay") && !strings.Contains(st.LogMismatch, "equals neither") {
			t.Errorf("status %+v: want the log mismatch said", st)
		}
		_, err = a.Load(t.Context(), agent.LoadRequest{Artifact: header(t, "counter", true)})
		if !errors.Is(err, agent.ErrLogMismatch) {
			t.Errorf("load after a foreign extend: %v, want ErrLogMismatch", err)
		}
	}
	check(a)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	restarted := newAgent(t, cfg)
	check(restarted)
}

func zeroDigests(t *testing.T, sw *tpmtest.Swtpm) []cel.Digest {
	t.Helper()
	var out []cel.Digest
	for _, h := range swtpmBanks(t, sw) {
		out = append(out, cel.Digest{Hash: h, Value: make([]byte, h.Size())})
	}
	return out
}
