package main

import (
	"context"
	"crypto"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"

	"github.com/bpfattest/bpfattest/agent/journal"
	"github.com/bpfattest/bpfattest/attest"
	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/evidence"
	"github.com/bpfattest/bpfattest/internal/tpm"
	"github.com/bpfattest/bpfattest/lskel"
	"github.com/bpfattest/bpfattest/measure"
	"github.com/bpfattest/bpfattest/measure/cms"
)

// runUnprivileged tells the part of the story that needs no kernel access:
// measure, log and extend, quote, verify. The agent itself refuses to start
// without bpf() (it cannot prove that nothing unmeasured is loaded), so this
// path drives the same packages directly and says what it skipped.
func (d *demo) runUnprivileged(ctx context.Context, tpmSpec, stateDir string, why error) error {
	d.say("SKIPPED: the agent and every kernel step (load, run, observer): bpf() is refused here: %v", why)
	d.say("running measure -> log -> extend -> quote -> verify without the kernel instead")

	dev, err := tpm.Open(ctx, tpmSpec)
	if err != nil {
		return fmt.Errorf("open tpm: %w", err)
	}
	defer dev.Close()
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return err
	}
	ak, err := dev.LoadOrCreateAK(tpm.AKOptions{StateDir: stateDir})
	if err != nil {
		return fmt.Errorf("attestation key: %w", err)
	}
	jr, err := journal.Open(ctx, filepath.Join(stateDir, "log"), dev, journal.Options{
		Clock: func() (cel.ClockInfo, error) {
			c, err := dev.ClockInfo()
			return cel.ClockInfo(c), err
		},
	})
	if err != nil {
		return fmt.Errorf("event log: %w", err)
	}
	defer jr.Close()

	d.section("measure the signed light skeleton and log it")
	art, err := lskel.Load(sampleBundle)
	if err != nil {
		return err
	}
	trust, err := cms.LoadTrust(filepath.Join(filepath.Dir(stateDir), "trusted-signer.pem"))
	if err != nil {
		return err
	}
	insp, err := measure.Inspect(art, measure.Options{Trust: trust})
	if err != nil {
		return err
	}
	m := insp.Measurement
	m.Requester = ptr(self())
	content, err := m.MarshalBinary()
	if err != nil {
		return err
	}
	rec, err := jr.Append(ctx, cel.BPFMeasurement, content)
	if err != nil {
		return fmt.Errorf("log measurement: %w", err)
	}
	d.say("record %d: %s verdict %s, loader sha256:%x, data sha256:%x", rec.RecNum, m.Name, m.Verdict, m.LoaderSHA256, m.DataSHA256)
	d.say("SKIPPED: the kernel load (needs root)")

	d.section("quote and verify")
	nonce := make([]byte, 32)
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	var ev *evidence.Evidence
	err = jr.Snapshot(func(recs []cel.Record, _ map[crypto.Hash][]byte) error {
		q, err := dev.Quote(ak, evidence.QualifyingData(nonce), []int{jr.PCR()}, nonSHA1(dev.Banks()))
		if err != nil {
			return err
		}
		log, err := cel.Encode(recs)
		if err != nil {
			return err
		}
		ev = &evidence.Evidence{AKPublic: ak.PublicArea(), Attest: q.Attest, Signature: q.Signature, PCR: jr.PCR(),
			Log: log, Proof: evidence.InclusionProof{Size: 1}}
		for _, v := range q.PCRs {
			ev.PCRs = append(ev.PCRs, evidence.PCRValue{Bank: v.Bank, Index: v.Index, Digest: v.Digest})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("quote: %w", err)
	}
	res, err := attest.Verify(ev, attest.VerifyOptions{Nonce: nonce, AKPublic: ak.PublicArea()})
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	d.say("quote verified: %d log records replayed to the quoted PCR %d in every bank; %d load pending (never loaded)",
		res.NextRecord(), res.PCR(), len(res.Pending()))

	d.section("the event log")
	recs := jr.Records(0)
	if err := cel.WriteText(d.out, recs, recordText); err != nil {
		return err
	}
	d.say("\ndone (kernel steps skipped: run as root for the whole story).")
	return nil
}

func ptr[T any](v T) *T { return &v }

// nonSHA1 drops SHA-1 from the banks to quote when a stronger one is active,
// as the agent does.
func nonSHA1(banks []crypto.Hash) []crypto.Hash {
	var out []crypto.Hash
	for _, b := range banks {
		if b != crypto.SHA1 {
			out = append(out, b)
		}
	}
	if len(out) == 0 {
		return banks
	}
	return out
}
