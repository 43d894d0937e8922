package agent_test

import (
	"errors"
	"fmt"
	"syscall"
	"testing"

	"github.com/bpfattest/bpfattest/agent"
	"github.com/bpfattest/bpfattest/internal/bpfsys"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
	"github.com/bpfattest/bpfattest/lskel"
	"github.com/bpfattest/bpfattest/measure"
	"github.com/bpfattest/bpfattest/measure/cms"
)

// mutation changes one part of the signed counter fixture.
type mutation struct {
	name    string
	mutate  func(t *testing.T, a *lskel.Artifact)
	verdict cms.Verdict
	// what happens when the userspace refusal is bypassed, on a kernel that
	// cannot check signatures
	outcome measure.Outcome
	step    string
	errno   syscall.Errno
}

func mutations() []mutation {
	return []mutation{
		{"insns", func(t *testing.T, a *lskel.Artifact) {
			// A digest byte of the embedded data hash: the loader still
			// analyses, but its bytes are no longer what was signed.
			l, err := lskel.Analyze(a.Insns, a.Data)
			if err != nil || len(l.HashInsns) == 0 {
				t.Fatalf("analyze: %v", err)
			}
			a.Insns[l.HashInsns[0]*8+4] ^= 1
		}, cms.VerdictBadSig, measure.OutcomeKernelError, "prog-load", syscall.EACCES},
		{"data", func(t *testing.T, a *lskel.Artifact) {
			a.Data[len(a.Data)-1] ^= 1
		}, cms.VerdictOK, measure.OutcomeLoaderError, "test-run", syscall.EINVAL},
		{"signature", func(t *testing.T, a *lskel.Artifact) {
			a.Signature[len(a.Signature)-1] ^= 1
		}, cms.VerdictBadSig, measure.OutcomeLoaded, "", 0},
		{"excl hash", func(t *testing.T, a *lskel.Artifact) {
			a.ExclHash[0] ^= 1
		}, cms.VerdictOK, measure.OutcomeKernelError, "prog-load", syscall.EACCES},
	}
}

// tamper returns the signed counter fixture with m applied, as a bundle.
func tamper(t *testing.T, m mutation) []byte {
	t.Helper()
	art, err := lskel.Load(header(t, "counter", true))
	if err != nil {
		t.Fatal(err)
	}
	art.Insns, art.Data = append([]byte(nil), art.Insns...), append([]byte(nil), art.Data...)
	art.Signature, art.ExclHash = append([]byte(nil), art.Signature...), append([]byte(nil), art.ExclHash...)
	m.mutate(t, art)
	b, err := art.MarshalBundle()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestTamperedRefused: every tampered artifact is measured, logged as
// refused, and never reaches bpf(): the step hook is not called once, even
// in AllowUnsigned mode.
func TestTamperedRefused(t *testing.T) {
	cfg := config(t)
	cfg.AllowUnsigned = true
	calls := 0
	agent.SetStepHook(&cfg, func(bpfsys.Step) error { calls++; return nil })
	a := newAgent(t, cfg)
	for _, m := range mutations() {
		t.Run(m.name, func(t *testing.T) {
			resp, err := a.Load(t.Context(), agent.LoadRequest{Artifact: tamper(t, m)})
			if !errors.Is(err, agent.ErrRefused) {
				t.Fatalf("err %v, want ErrRefused", err)
			}
			if calls != 0 {
				t.Fatalf("bpf() steps run: %d", calls)
			}
			if got := measurementOf(t, a, resp.MeasurementRecord).Verdict; got != m.verdict {
				t.Errorf("verdict %v, want %v", got, m.verdict)
			}
			res := resultOf(t, a, resp.ResultRecord)
			if res.Outcome != measure.OutcomeRefused || res.Reason == "" || res.Loader != nil {
				t.Errorf("result %+v, want refused with a reason and no objects", res)
			}
		})
	}
}

// TestTamperedKernelAnswer bypasses the userspace refusal and shows what
// the kernel and the loader do on their own: a changed loader or
// excl_prog_hash is EACCES at BPF_PROG_LOAD, changed data makes the loader
// return -EINVAL. A bad signature loads: this kernel cannot check
// signatures, so the userspace verdict is the only thing that stops it.
func TestTamperedKernelAnswer(t *testing.T) {
	cfg := config(t)
	agent.SetAllowAll(&cfg)
	a := newAgent(t, cfg)
	if st := a.Status(); st.KernelSignatures != bpfsys.SignaturesUnsupported.String() {
		t.Skipf("kernel signature support %q: expectations are for a kernel that cannot check", st.KernelSignatures)
	}
	for _, m := range mutations() {
		t.Run(m.name, func(t *testing.T) {
			var loaded uint32
			var resp *agent.LoadResponse
			var err error
			want := uint32(0)
			if m.outcome == measure.OutcomeLoaded {
				want = 1 + 1 // the loader and count_sys_enter
			} else if m.outcome == measure.OutcomeLoaderError {
				want = 1 // the loader only
			}
			loaded = loadsDuring(t, func() { resp, err = a.Load(t.Context(), agent.LoadRequest{Artifact: tamper(t, m)}) })
			if loaded != want {
				t.Errorf("programs created: %d, want %d", loaded, want)
			}
			if m.outcome == measure.OutcomeLoaded {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
			} else if !errors.Is(err, m.errno) {
				t.Fatalf("err %v, want %v", err, m.errno)
			}
			res := resultOf(t, a, resp.ResultRecord)
			if res.Outcome != m.outcome || res.Step != m.step || syscall.Errno(res.Errno) != m.errno {
				t.Errorf("result outcome %v step %q errno %d, want %v %q %d", res.Outcome, res.Step, res.Errno, m.outcome, m.step, m.errno)
			}
			if resp.MeasurementRecord >= resp.ResultRecord {
				t.Errorf("measurement %d after result %d", resp.MeasurementRecord, resp.ResultRecord)
			}
		})
	}
}

// TestPolicy: unsigned and unknown-signer artifacts are refused by default
// and loaded in AllowUnsigned mode; both are measured either way.
func TestPolicy(t *testing.T) {
	for _, c := range []struct {
		name          string
		signed, trust bool
		verdict       cms.Verdict
	}{
		{"unsigned", false, true, cms.VerdictUnsigned},
		{"unknown key", true, false, cms.VerdictUnknownKey},
	} {
		for _, allow := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/allow-unsigned=%v", c.name, allow), func(t *testing.T) {
				cfg := config(t)
				cfg.AllowUnsigned = allow
				if !c.trust {
					cfg.Trust = nil
				}
				a := newAgent(t, cfg)
				resp, err := a.Load(t.Context(), agent.LoadRequest{Artifact: header(t, "counter", c.signed)})
				if allow != (err == nil) || !allow && !errors.Is(err, agent.ErrRefused) {
					t.Fatalf("allow=%v: err %v", allow, err)
				}
				if got := measurementOf(t, a, resp.MeasurementRecord).Verdict; got != c.verdict {
					t.Errorf("verdict %v, want %v", got, c.verdict)
				}
				want := measure.OutcomeRefused
				if allow {
					want = measure.OutcomeLoaded
				}
				if got := resultOf(t, a, resp.ResultRecord).Outcome; got != want {
					t.Errorf("outcome %v, want %v", got, want)
				}
			})
		}
	}
}

// TestLoadStepFails: a bpf() step that fails after the measurement is
// recorded leaves the measurement in the log and a result naming the step
// and errno; nothing stays in the kernel.
func TestLoadStepFails(t *testing.T) {
	cfg := config(t)
	agent.SetStepHook(&cfg, func(s bpfsys.Step) error {
		if s == bpfsys.ProgLoad {
			return syscall.EPERM
		}
		return nil
	})
	a := newAgent(t, cfg)
	var resp *agent.LoadResponse
	var err error
	if n := loadsDuring(t, func() { resp, err = a.Load(t.Context(), agent.LoadRequest{Artifact: header(t, "counter", true)}) }); n != 0 {
		t.Errorf("programs created: %d", n)
	}
	if !errors.Is(err, syscall.EPERM) {
		t.Fatalf("err %v, want EPERM", err)
	}
	measurementOf(t, a, resp.MeasurementRecord)
	res := resultOf(t, a, resp.ResultRecord)
	if res.Outcome != measure.OutcomeKernelError || res.Step != "prog-load" || syscall.Errno(res.Errno) != syscall.EPERM {
		t.Errorf("result %+v", res)
	}
	if res.DataMap == nil || res.Loader != nil {
		t.Errorf("data map %+v loader %+v: want the map created before the failing step, no loader", res.DataMap, res.Loader)
	}
}

// TestLoadTPMGone: with the TPM gone the measurement cannot be extended, so
// Load fails with ErrUnavailable and never calls bpf().
func TestLoadTPMGone(t *testing.T) {
	sw := tpmtest.StartSwtpm(t, tpmtest.SwtpmOptions{})
	cfg := config(t)
	cfg.TPM = sw.Spec()
	calls := 0
	agent.SetStepHook(&cfg, func(bpfsys.Step) error { calls++; return nil })
	a := newAgent(t, cfg)
	if err := sw.Stop(); err != nil {
		t.Fatal(err)
	}
	var err error
	if n := loadsDuring(t, func() { _, err = a.Load(t.Context(), agent.LoadRequest{Artifact: header(t, "counter", true)}) }); n != 0 {
		t.Errorf("programs created: %d", n)
	}
	if !errors.Is(err, agent.ErrUnavailable) {
		t.Fatalf("err %v, want ErrUnavailable", err)
	}
	if calls != 0 {
		t.Errorf("bpf() steps run: %d", calls)
	}
	if _, err := a.Quote(t.Context(), nonce(1), 0); !errors.Is(err, agent.ErrUnavailable) {
		t.Errorf("quote with the TPM gone: %v, want ErrUnavailable", err)
	}
}
