package attest

import (
	"crypto"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/bpfattest/bpfattest/evidence"
	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/internal/tpm"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
	"github.com/bpfattest/bpfattest/measure"
)

// FuzzVerify feeds Verify evidence whose every field the fuzzer mutates,
// seeded from the real evidence in testdata/evidence. Verify must return
// a Result or a *VerifyError, never panic; a Result must be usable and its
// State must survive its encoding and verify the same quote again.
//
// With boot set, the PCR values are the default boot PCRs and the agent's
// (cycling), the verifier asks for the boot PCRs and fw is the firmware
// log: seeded with a shim host's evidence (a real firmware log replayed
// into the simulator, when the build has it), the mutator reaches
// bootchain.Verify through a valid quote.
func FuzzVerify(f *testing.F) {
	for _, p := range evidenceFiles(f) {
		c := readCaptured(f, p)
		ev := c.Evidence
		var pcrs []byte
		for _, v := range ev.PCRs {
			pcrs = append(pcrs, v.Digest...)
		}
		f.Add(c.Nonce, ev.AKPublic, ev.Attest, ev.Signature, pcrs, ev.Log, ev.FromRecord, uint8(ev.PCR), []byte(nil), false)
	}
	if nonce, ev := bootSeed(f); ev != nil {
		var pcrs []byte
		for _, v := range ev.PCRs {
			pcrs = append(pcrs, v.Digest...)
		}
		f.Add(nonce, ev.AKPublic, ev.Attest, ev.Signature, pcrs, ev.Log, ev.FromRecord, uint8(ev.PCR), ev.FirmwareLog, true)
	}
	f.Fuzz(func(t *testing.T, nonce, akPub, attest, sig, pcrs, log []byte, from uint64, pcr uint8, fw []byte, boot bool) {
		ev := &evidence.Evidence{AKPublic: akPub, Attest: attest, Signature: sig, Log: log, FromRecord: from,
			PCR: int(pcr), Proof: evidence.InclusionProof{Size: 1}, FirmwareLog: fw}
		opts := VerifyOptions{Nonce: nonce, AKPublic: akPub}
		indices := []int{int(pcr)}
		if boot {
			opts.BootPCRs = DefaultBootPCRs()
			indices = slices.Sorted(slices.Values(append(DefaultBootPCRs(), int(pcr))))
		}
		for i := 0; i+32 <= len(pcrs); i += 32 {
			ev.PCRs = append(ev.PCRs, evidence.PCRValue{Bank: crypto.SHA256, Index: indices[(i/32)%len(indices)], Digest: pcrs[i : i+32]})
		}
		res, err := Verify(ev, opts)
		if err != nil {
			if _, ok := err.(*VerifyError); !ok {
				t.Fatalf("error %T: %v", err, err)
			}
			return
		}
		_ = Evaluate(res, &Policy{RequireSigned: true, ForbidUnmeasured: true, RequirePinned: true})
		b, err := res.State().MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var st State
		if err := st.UnmarshalBinary(b); err != nil {
			t.Fatalf("state of a verified result does not decode: %v", err)
		}
		ev.Log, ev.FromRecord, ev.FirmwareLog = nil, st.NextRecord(), nil
		opts.State = &st
		if _, err := Verify(ev, opts); err != nil {
			t.Fatalf("same quote from its own state: %v", err)
		}
	})
}

// FuzzState feeds State's binary decoder; seeds are the States of the
// captured evidence. Decoding must not panic, and a decoded State must
// encode back to the same bytes.
func FuzzState(f *testing.F) {
	for _, p := range evidenceFiles(f) {
		c := readCaptured(f, p)
		res, err := Verify(c.Evidence, VerifyOptions{Nonce: c.Nonce, AKPublic: c.Evidence.AKPublic})
		if err != nil {
			f.Fatal(err)
		}
		b, err := res.State().MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	// A State with a boot section: the boot header's start and kernel
	// facts, and a verified firmware log.
	if nonce, ev := bootSeed(f); ev != nil {
		res, err := Verify(ev, VerifyOptions{Nonce: nonce, AKPublic: ev.AKPublic, BootPCRs: DefaultBootPCRs()})
		if err != nil {
			f.Fatal(err)
		}
		b, err := res.State().MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var s State
		if err := s.UnmarshalBinary(b); err != nil {
			return
		}
		out, err := s.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != string(b) {
			t.Fatalf("decoded state re-encodes differently")
		}
	})
}

// FuzzParsePolicy feeds the policy parser, seeded from the example
// policies. It must not panic.
func FuzzParsePolicy(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "policy", "*.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePolicy(b)
		if err == nil && p == nil {
			t.Fatal("nil policy without error")
		}
	})
}

// bootSeed is the evidence of a shim host: the Ubuntu 21.04 firmware log
// replayed into the simulator, the test agent's log on PCR 14 with one
// load, a quote of the boot PCRs and PCR 14 with the firmware log
// attached. Nil without the simulator (a build without cgo).
func bootSeed(f *testing.F) ([]byte, *evidence.Evidence) {
	f.Helper()
	dev, err := tpm.Open(f.Context(), "sim")
	if errors.Is(err, errors.ErrUnsupported) {
		return nil, nil
	}
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { dev.Close() })
	fw := testutil.GoAttestationLogs(f, logUbuntu)[logUbuntu]
	tpmtest.ReplayFirmwareLog(f, dev, fw)
	ak, err := dev.LoadOrCreateAK(tpm.AKOptions{StateDir: f.TempDir()})
	if err != nil {
		f.Fatal(err)
	}
	k := testKernel
	a := &testAgent{tb: f, dev: dev, ak: ak, dir: f.TempDir(), bootID: testBootID, nextID: 100, kernel: &k}
	a.open()
	a.load(fixtureMeasurement(f, "counter.signed.lskel.h", measure.KernelCheckUnavailable), measure.OutcomeLoaded)
	nonce := freshNonce(f, 0)
	ev := a.quoteBoot(nonce, 0, fw)
	a.close()
	return nonce, ev
}
