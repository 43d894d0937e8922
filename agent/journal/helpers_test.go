package journal

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"testing"

	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/internal/tpm"
)

// testBootID is the kernel boot id the tests pretend to run under, so that
// a test controls when a "new boot" happens.
const testBootID = "5d1c0a2e-7b3f-4c8e-9a61-0f2b3c4d5e6f"

// options returns journal options wired to dev, with a fixed boot id.
func options(dev *tpm.Device) Options {
	return Options{
		Clock: func() (cel.ClockInfo, error) {
			c, err := dev.ClockInfo()
			return cel.ClockInfo(c), err
		},
		BootID:  func() (string, error) { return testBootID, nil },
		Version: "test",
	}
}

func mustOpen(t testing.TB, dir string, dev *tpm.Device, opts Options) *Journal {
	t.Helper()
	j, err := Open(context.Background(), dir, dev, opts)
	if err != nil {
		t.Fatalf("open journal: %v", err)
	}
	return j
}

// checkReplay replays the journal's records from its boot header, in a
// snapshot, and compares with the PCR read from the TPM in every bank.
func checkReplay(t testing.TB, j *Journal, dev *tpm.Device) []cel.Record {
	t.Helper()
	var out []cel.Record
	err := j.Snapshot(func(recs []cel.Record, pcr map[crypto.Hash][]byte) error {
		if err := replaysTo(recs, pcr); err != nil {
			return err
		}
		out = append(out, recs...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Independently of the snapshot: the TPM's own answer.
	pcr, err := dev.ReadPCR(j.PCR())
	if err != nil {
		t.Fatal(err)
	}
	if err := replaysTo(out, pcr); err != nil {
		t.Fatal(err)
	}
	return out
}

// replaysTo replays recs (a boot log, header first) and compares with pcr.
func replaysTo(recs []cel.Record, pcr map[crypto.Hash][]byte) error {
	if len(recs) == 0 || recs[0].Type != cel.BootHeader {
		return errors.New("log does not start with a boot header")
	}
	boot, err := cel.ParseBootInfo(recs[0].Content)
	if err != nil {
		return err
	}
	got, err := replay(recs, boot.Start)
	if err != nil {
		return err
	}
	if len(got) != len(pcr) {
		return fmt.Errorf("replayed %d banks, tpm has %d", len(got), len(pcr))
	}
	for h, v := range pcr {
		if !bytes.Equal(got[h], v) {
			return fmt.Errorf("%s: replay %x, pcr %x", cel.BankName(h), got[h], v)
		}
	}
	return nil
}

// events returns the contents of the BPF measurement events of recs, a
// batch record's one by one.
func events(recs []cel.Record) []string {
	var out []string
	for i := range recs {
		_ = recs[i].EachEvent(func(ev *cel.Event) error {
			if ev.Type == cel.BPFMeasurement {
				out = append(out, string(ev.Content))
			}
			return nil
		})
	}
	return out
}

// recoveries returns the decoded Recovery events of recs.
func recoveries(t testing.TB, recs []cel.Record) []cel.RecoveryInfo {
	t.Helper()
	var out []cel.RecoveryInfo
	for i := range recs {
		err := recs[i].EachEvent(func(ev *cel.Event) error {
			if ev.Type == cel.Recovery {
				ri, err := cel.ParseRecoveryInfo(ev.Content)
				if err != nil {
					return err
				}
				out = append(out, ri)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// replay folds recs into start with a cel.Replayer.
func replay(recs []cel.Record, start map[crypto.Hash][]byte) (map[crypto.Hash][]byte, error) {
	rp, err := cel.NewReplayer(start)
	if err != nil {
		return nil, err
	}
	for i := range recs {
		if err := rp.Add(&recs[i]); err != nil {
			return nil, err
		}
	}
	return rp.Values(), nil
}

// zeros is every bank at its reset value (PCR 0 to 15).
func zeros(banks []crypto.Hash) map[crypto.Hash][]byte {
	out := make(map[crypto.Hash][]byte, len(banks))
	for _, h := range banks {
		out[h] = make([]byte, h.Size())
	}
	return out
}
