package agent_test

import (
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/bpfattest/bpfattest/agent"
	"github.com/bpfattest/bpfattest/agent/journal"
	"github.com/bpfattest/bpfattest/attest"
	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/internal/tpm"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
	"github.com/bpfattest/bpfattest/lskel"
	"github.com/bpfattest/bpfattest/measure"
)

// The forgery tests play root on the agent's host. The agent is killed in
// the middle of a load (its measurement is in the log and the PCR, the
// kernel's answer is not), the attacker loads a program of its own and
// writes a load result for the measurement that names that program, then
// the agent restarts. Without TPM access the attacker can only append the
// forged record to the log file, which start-up reconciliation then rolls
// forward into the PCR; with TPM access it extends the record itself.
// Either way the evidence verifies (the log replays to the quoted PCR), and
// either way the verdict must be NON-COMPLIANT, naming the mismatch: the
// kernel's programs are bound to the measured instructions by their tags,
// a rolled-forward result cannot have live programs, and the restarted
// agent holds the log against what the kernel reports.

// crashMidLoad runs an agent on sw and dir in a child process that is
// killed after the measurement of counter.signed was recorded, before any
// bpf() call.
func crashMidLoad(t *testing.T, sw *tpmtest.Swtpm, dir string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashEnv+"=before-bpf", specEnv+"="+sw.Spec(), dirEnv+"="+dir,
		headerEnv+"="+testutil.LskelFile(t, "headers/counter.signed.lskel.h"))
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

// forgedResult is the load result an attacker writes for the pending
// measurement at the end of the log in dir: "loaded", naming program p as
// the load's program, described as lie says (nil: as the kernel reports
// it). It returns the encoded record and the log's path.
func forgedResult(t *testing.T, dir string, banks []crypto.Hash, p *ebpf.Program, lie *measure.KernelObject) (cel.Record, []byte, string) {
	return forgedRecord(t, dir, banks, p, lie, false)
}

// forgedRecord is forgedResult, or with batch set a forged batch record
// whose second event is that load result (after a forged events-lost
// event): what group commit would have written had the result shared a
// commit.
func forgedRecord(t *testing.T, dir string, banks []crypto.Hash, p *ebpf.Program, lie *measure.KernelObject, batch bool) (cel.Record, []byte, string) {
	t.Helper()
	boots, err := journal.Boots(dir)
	if err != nil || len(boots) != 1 {
		t.Fatalf("boot logs in %s: %v, %v", dir, boots, err)
	}
	lg, err := readLog(boots[0].Path)
	if err != nil {
		t.Fatal(err)
	}
	last := lg.Records[len(lg.Records)-1]
	if last.Type != cel.BPFMeasurement {
		t.Fatalf("the log ends with a %v record, want the pending measurement", last.Type)
	}
	info, err := p.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := info.ID()
	obj := measure.KernelObject{ID: uint32(id), Type: uint32(info.Type), Name: info.Name}
	copyTag(t, &obj, info.Tag)
	if lie != nil {
		obj.Type, obj.Name, obj.Tag = lie.Type, lie.Name, lie.Tag
	}
	res := measure.LoadResult{MeasurementRecord: last.RecNum, MeasurementSHA256: sha256.Sum256(last.Content),
		Outcome: measure.OutcomeLoaded, Programs: []measure.KernelObject{obj}}
	content, err := res.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	typ := cel.BPFLoadResult
	if batch {
		lost := measure.EventsLost{Count: 1, TimeNS: 1}
		lb, err := lost.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		res.MeasurementRecord = last.RecNum
		if content, err = res.MarshalBinary(); err != nil {
			t.Fatal(err)
		}
		if content, err = cel.EncodeBatch([]cel.Event{{Type: cel.BPFEventsLost, Content: lb}, {Type: cel.BPFLoadResult, Content: content}}); err != nil {
			t.Fatal(err)
		}
		typ = cel.Batch
	}
	rec, err := cel.NewRecord(last.RecNum+1, 14, banks, typ, content)
	if err != nil {
		t.Fatal(err)
	}
	b, err := rec.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return rec, b, boots[0].Path
}

func copyTag(t *testing.T, o *measure.KernelObject, tag string) {
	t.Helper()
	b, err := hex.DecodeString(tag)
	if err != nil || len(b) != 8 {
		t.Fatalf("tag %q: %v", tag, err)
	}
	copy(o.Tag[:], b)
}

func appendFile(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// evilProgram loads the attacker's program and keeps it in the kernel.
func evilProgram(t *testing.T) (*ebpf.Program, uint32) {
	t.Helper()
	p, id := socketFilter(t)
	t.Cleanup(func() { p.Close() })
	return p, id
}

// counterLie describes the attacker's program as the measured counter's
// count_sys_enter: its name, its type and the tag its measured
// instructions give.
func counterLie(t *testing.T) *measure.KernelObject {
	t.Helper()
	art, err := lskel.Load(header(t, "counter", true))
	if err != nil {
		t.Fatal(err)
	}
	in, err := measure.Inspect(art, measure.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p := in.Measurement.Programs[0]
	return &measure.KernelObject{Type: p.Type, Name: measure.KernelName(p.Name), Tag: p.KernelTag}
}

// strictVerdict quotes the restarted agent, verifies the evidence from
// record 0 and evaluates a strict policy: the fixture signer, nothing
// unmeasured. It returns the result and the violations.
func strictVerdict(t *testing.T, a *agent.Agent) (*attest.Result, []attest.Violation) {
	t.Helper()
	n := nonce(7)
	ev, err := a.Quote(t.Context(), n, 0)
	if err != nil {
		t.Fatal(err)
	}
	id, err := a.Identity(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	res, err := attest.Verify(ev, attest.VerifyOptions{Nonce: n, AKPublic: id.AKPublic, BootPCRs: attest.DefaultBootPCRs()})
	if err != nil {
		t.Fatalf("the evidence does not verify (the forgery is in the pcr: it must): %v", err)
	}
	pol, err := attest.ParsePolicy([]byte(`version: 1
require_signed: true
forbid_unmeasured: true
allowed_signers:
  - cert_sha256: f8dbdbb8a9f82452b2a27c9f80bed2349d817a2d8cba7d68bc1bb50a68248f2d
`))
	if err != nil {
		t.Fatal(err)
	}
	return res, attest.Evaluate(res, pol)
}

// caught checks that the verdict names evil program id under one of the
// rules, and that no measured load lists it as present.
func caught(t *testing.T, res *attest.Result, viol []attest.Violation, id uint32, rules ...attest.Rule) {
	t.Helper()
	for _, p := range res.Programs() {
		for _, k := range p.Kernel {
			if k.ID == id && len(p.Binding) == 0 {
				t.Errorf("the attacker's program %d is listed under the measured load %q, bound", id, p.Name())
			}
		}
	}
	found := false
	for _, v := range viol {
		if slices.Contains(rules, v.Rule) && strings.Contains(v.Reason, fmt.Sprint(id)) {
			found = true
			t.Logf("caught: %v", v)
		}
	}
	if !found {
		t.Errorf("no violation of %v names program %d; violations: %v", rules, id, viol)
	}
}

// TestForgedRollForward: root without TPM access appends a forged load
// result after a crash; reconciliation rolls it into the PCR. The forged
// result names the attacker's program as the kernel describes it (caught
// by the binding of programs to measured instructions), or lies about it
// with the measured name, type and tag (caught because a rolled-forward
// result cannot have live programs: the restarted agent records the
// attacker's program as unmeasured). A forged batch record, whose second
// event is the forged result, gains nothing: every event of a
// rolled-forward batch is treated as a rolled-forward record is
// (docs/crash-safety.md §7).
func TestForgedRollForward(t *testing.T) {
	requireKernel(t)
	for _, c := range []struct{ lying, batch bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
		lying := c.lying
		t.Run(fmt.Sprintf("lying=%v/batch=%v", lying, c.batch), func(t *testing.T) {
			sw := tpmtest.StartSwtpm(t, tpmtest.SwtpmOptions{})
			dir := t.TempDir()
			crashMidLoad(t, sw, dir)
			evil, evilID := evilProgram(t)
			var lie *measure.KernelObject
			if lying {
				lie = counterLie(t)
			}
			forged, b, path := forgedRecord(t, dir, swtpmBanks(t, sw), evil, lie, c.batch)
			appendFile(t, path, b)

			cfg := config(t)
			cfg.TPM, cfg.StateDir = sw.Spec(), dir
			a := newAgent(t, cfg)
			recs, err := a.Records(0)
			if err != nil {
				t.Fatal(err)
			}
			if c.batch && !slices.ContainsFunc(recs, func(r cel.Record) bool { return r.Type == cel.Batch && r.RecNum == forged.RecNum }) {
				t.Fatal("the forged batch is not in the log")
			}
			rolled := false
			for _, r := range ofType(recs, cel.Recovery) {
				if ri, err := cel.ParseRecoveryInfo(r.Content); err == nil && ri.Action == cel.RolledForward {
					rolled = true
				}
			}
			if !rolled {
				t.Fatal("the forged record was not rolled forward: the test did not set up the attack")
			}
			res, viol := strictVerdict(t, a)
			rules := []attest.Rule{attest.RuleForbidUnmeasured}
			if !lying {
				rules = append(rules, attest.RuleBinding)
			}
			caught(t, res, viol, evilID, rules...)
			if f := res.Failed(); !slices.ContainsFunc(f, func(p attest.Program) bool { return p.Died }) {
				t.Errorf("the rolled-forward load is not reported as died with the agent: %+v", f)
			}
		})
	}
}

// TestForgedWithTPMAccess: root with TPM access writes the forged load
// result and extends it itself while the agent is down, so nothing is
// rolled forward. Named as the kernel describes it, the program breaks the
// binding to the measured instructions; described with the measured name,
// type and tag, it contradicts what the kernel reports under its id, which
// the restarted agent records (the forged program unloaded, the real one
// unmeasured).
func TestForgedWithTPMAccess(t *testing.T) {
	requireKernel(t)
	for _, lying := range []bool{false, true} {
		t.Run(fmt.Sprintf("lying=%v", lying), func(t *testing.T) {
			sw := tpmtest.StartSwtpm(t, tpmtest.SwtpmOptions{})
			dir := t.TempDir()
			crashMidLoad(t, sw, dir)
			evil, evilID := evilProgram(t)
			var lie *measure.KernelObject
			if lying {
				lie = counterLie(t)
			}
			rec, b, path := forgedResult(t, dir, swtpmBanks(t, sw), evil, lie)
			appendFile(t, path, b)
			extendAsAttacker(t, sw, rec)

			cfg := config(t)
			cfg.TPM, cfg.StateDir = sw.Spec(), dir
			a := newAgent(t, cfg)
			recs, err := a.Records(0)
			if err != nil {
				t.Fatal(err)
			}
			if len(ofType(recs, cel.Recovery)) != 0 {
				t.Fatal("reconciliation acted: the forged record was not in the pcr")
			}
			res, viol := strictVerdict(t, a)
			if lying {
				caught(t, res, viol, evilID, attest.RuleForbidUnmeasured)
				contradicted := false
				for _, u := range res.Unmeasured() {
					if u.Program.ID == evilID && u.Program.Discovery == measure.DiscoveredContradiction {
						contradicted = true
					}
				}
				if !contradicted {
					t.Errorf("program %d is not recorded as contradicting the log: %+v", evilID, res.Unmeasured())
				}
			} else {
				caught(t, res, viol, evilID, attest.RuleBinding)
			}
		})
	}
}

// swtpmBanks returns the active banks of sw.
func swtpmBanks(t *testing.T, sw *tpmtest.Swtpm) []crypto.Hash {
	t.Helper()
	dev, err := tpm.Open(t.Context(), sw.Spec())
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	banks, _ := cel.SortBanks(dev.Banks())
	return banks
}

// extendAsAttacker extends the agent's PCR with rec's digests, as root with
// access to the TPM can.
func extendAsAttacker(t *testing.T, sw *tpmtest.Swtpm, rec cel.Record) {
	t.Helper()
	dev, err := tpm.Open(t.Context(), sw.Spec())
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	ds := map[crypto.Hash][]byte{}
	for _, d := range rec.Digests {
		ds[d.Hash] = d.Value
	}
	if err := dev.Extend(14, ds); err != nil {
		t.Fatal(err)
	}
}
