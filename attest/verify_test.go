package attest

import (
	"crypto"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bpfattest/bpfattest/internal/tpm"
	"github.com/bpfattest/bpfattest/measure"
	"github.com/bpfattest/bpfattest/measure/cms"
)

// scenario is one boot's activity, used by most tests: signed loads that
// stay, a load whose programs all leave again, an unsigned load, a refused
// load, an unmeasured program, and a load whose result is still pending.
type scenario struct {
	counter, pair, rocfg, unsigned, refused loaded
	unmeasuredRec                           uint64
	pendingRec                              uint64
	pending                                 *measure.Measurement
}

func runScenario(a *testAgent) *scenario {
	s := &scenario{}
	s.counter = a.load(fixtureMeasurement(a.tb, "counter.signed.lskel.h", measure.KernelCheckUnavailable), measure.OutcomeLoaded)
	s.pair = a.load(fixtureMeasurement(a.tb, "pair.signed.lskel.h", measure.KernelCheckVerified), measure.OutcomeLoaded)
	// The loader of pair exits after its run; one of its programs leaves.
	a.unload(s.pair.result.RecNum, *s.pair.res.Loader)
	a.unload(s.pair.result.RecNum, s.pair.res.Programs[0])
	// rocfg loads and leaves entirely.
	s.rocfg = a.load(fixtureMeasurement(a.tb, "rocfg.signed.lskel.h", measure.KernelCheckUnavailable), measure.OutcomeLoaded)
	a.unload(s.rocfg.result.RecNum, *s.rocfg.res.Loader)
	for _, p := range s.rocfg.res.Programs {
		a.unload(s.rocfg.result.RecNum, p)
	}
	s.unsigned = a.load(fixtureMeasurement(a.tb, "counter.lskel.h", measure.KernelCheckNotSubmitted), measure.OutcomeLoaded)
	s.refused = a.load(fixtureMeasurement(a.tb, "rocfg.lskel.h", measure.KernelCheckNotSubmitted), measure.OutcomeRefused)
	rec, _ := a.unmeasured("sneaky", 2)
	s.unmeasuredRec = rec.RecNum
	s.pending = fixtureMeasurement(a.tb, "rocfg.signed.lskel.h", measure.KernelCheckUnavailable)
	s.pendingRec = a.measurePending(s.pending).RecNum
	return s
}

// TestVerifyScenario proves that real evidence (journal on the simulator,
// ECC and RSA AKs) verifies and that the Result accounts for the kernel:
// present loads with their remaining objects, a fully unloaded load gone,
// the refused load, the unmeasured program and the pending load.
func TestVerifyScenario(t *testing.T) {
	for _, alg := range []tpm.AKAlgorithm{tpm.AKECCP256, tpm.AKRSA2048} {
		t.Run(alg.String(), func(t *testing.T) {
			a := newTestAgent(t, "sim", alg)
			s := runScenario(a)
			nonce := freshNonce(t, 0)
			ev := a.quote(nonce, 0)
			res, err := Verify(ev, a.opts(nonce))
			if err != nil {
				t.Fatal(err)
			}
			if res.BootID() != testBootID || res.PCR() != 14 || res.Rebooted() {
				t.Errorf("boot %q pcr %d rebooted %v", res.BootID(), res.PCR(), res.Rebooted())
			}
			progs := res.Programs()
			var names []string
			for _, p := range progs {
				names = append(names, p.Name())
			}
			if diff := cmp.Diff([]string{"counter_lskel", "pair_lskel", "counter_lskel"}, names); diff != "" {
				t.Fatalf("programs (-want +got):\n%s", diff)
			}
			counter, pair, unsigned := progs[0], progs[1], progs[2]
			if counter.Record != s.counter.measurement.RecNum || counter.ResultRecord != s.counter.result.RecNum {
				t.Errorf("counter records %d/%d", counter.Record, counter.ResultRecord)
			}
			if counter.Measurement.Verdict != cms.VerdictOK || counter.Measurement.Scheme != measure.SchemeKernel || counter.KernelChecked() {
				t.Errorf("counter: verdict %v scheme %v kernel checked %v", counter.Measurement.Verdict, counter.Measurement.Scheme, counter.KernelChecked())
			}
			if counter.Signer() == nil || counter.Signer().Subject == "" || len(counter.Signer().CertSHA256) != 32 {
				t.Errorf("counter signer %+v", counter.Signer())
			}
			if counter.Loader == nil || len(counter.Kernel) != 1 || counter.Kernel[0].ID != s.counter.res.Programs[0].ID {
				t.Errorf("counter kernel objects: loader %v programs %v", counter.Loader, counter.Kernel)
			}
			if !pair.KernelChecked() || pair.Loader == nil || pair.Loader.ID != s.pair.res.Loader.ID || len(pair.Kernel) != 1 || pair.Kernel[0].ID != s.pair.res.Programs[1].ID {
				t.Errorf("pair: kernel checked %v loader %v programs %v", pair.KernelChecked(), pair.Loader, pair.Kernel)
			}
			if unsigned.Measurement.Scheme != measure.SchemeUnsigned || unsigned.Measurement.Verdict != cms.VerdictUnsigned {
				t.Errorf("unsigned: scheme %v verdict %v", unsigned.Measurement.Scheme, unsigned.Measurement.Verdict)
			}
			if f := res.Failed(); len(f) != 1 || f[0].Result.Outcome != measure.OutcomeRefused || f[0].Record != s.refused.measurement.RecNum {
				t.Errorf("failed: %+v", f)
			}
			if u := res.Unmeasured(); len(u) != 1 || u[0].Record != s.unmeasuredRec || u[0].Program.Name != "sneaky" {
				t.Errorf("unmeasured: %+v", u)
			}
			if p := res.Pending(); len(p) != 1 || p[0].Record != s.pendingRec || p[0].Result != nil {
				t.Errorf("pending: %+v", p)
			}
			if res.NextRecord() != s.pendingRec+1 || res.State().NextRecord() != res.NextRecord() {
				t.Errorf("next record %d, state %d", res.NextRecord(), res.State().NextRecord())
			}
			// The Result hands out copies.
			progs[0].Measurement.Name = "changed"
			progs[0].Kernel[0].ID = 1
			if again := res.Programs(); again[0].Name() != "counter_lskel" || again[0].Kernel[0].ID == 1 {
				t.Error("changing a returned Program changed the Result")
			}
		})
	}
}

// TestVerifyPinnedKey proves an AK pinned by its public key works like one
// pinned by its TPMT_PUBLIC, and that a quote over several banks verifies
// with the default bank rule (every quoted bank, SHA-1 refused).
func TestVerifyPinnedKey(t *testing.T) {
	a := newTestAgent(t, "sim", tpm.AKECCP256)
	runScenario(a)
	nonce := freshNonce(t, 0)
	ev := a.quote(nonce, 0, crypto.SHA256, crypto.SHA384)
	res, err := Verify(ev, VerifyOptions{Nonce: nonce, AKKey: a.ak.Public()})
	if err != nil {
		t.Fatal(err)
	}
	if got := len(res.PCRValues()); got != 2 {
		t.Errorf("%d banks quoted, want 2", got)
	}
	ev = a.quote(nonce, 0, crypto.SHA1, crypto.SHA256)
	_, err = Verify(ev, VerifyOptions{Nonce: nonce, AKKey: a.ak.Public()})
	wantCheck(t, err, PCRSelection)
	if _, err := Verify(ev, VerifyOptions{Nonce: nonce, AKKey: a.ak.Public(), AllowSHA1: true}); err != nil {
		t.Errorf("with AllowSHA1: %v", err)
	}
}

// TestVerifyNonZeroStart proves a PCR extended before the agent started
// (firmware events) verifies only when the verifier supplies the starting
// value it expects, and fails with StartMismatch otherwise.
func TestVerifyNonZeroStart(t *testing.T) {
	dev := tpmtestOpenExtended(t)
	a := &testAgent{tb: t, dev: dev, dir: t.TempDir(), bootID: testBootID, nextID: 100}
	ak, err := dev.LoadOrCreateAK(tpm.AKOptions{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	a.ak = ak
	before, err := dev.ReadPCR(14)
	if err != nil {
		t.Fatal(err)
	}
	a.open()
	a.load(fixtureMeasurement(t, "counter.signed.lskel.h", measure.KernelCheckUnavailable), measure.OutcomeLoaded)
	nonce := freshNonce(t, 0)
	ev := a.quote(nonce, 0)
	_, err = Verify(ev, a.opts(nonce))
	wantCheck(t, err, StartMismatch)
	opts := a.opts(nonce)
	opts.StartingValues = map[crypto.Hash][]byte{crypto.SHA256: before[crypto.SHA256]}
	if _, err := Verify(ev, opts); err != nil {
		t.Fatalf("with the expected starting value: %v", err)
	}
}
