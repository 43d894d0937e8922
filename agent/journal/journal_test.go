package journal

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
)

// TestReplayMatchesTPM appends a random sequence of events, with agent
// restarts in between, and checks after each step that the log replays to
// the PCR the TPM reports, in every active bank, on both TPMs.
func TestReplayMatchesTPM(t *testing.T) {
	tpmtest.ForEach(t, func(t *testing.T, tg tpmtest.Target) {
		dev := tpmtest.Open(t, tg.Spec)
		dir := t.TempDir()
		rng := rand.New(rand.NewPCG(7, uint64(len(tg.Name))))
		types := []cel.ContentType{cel.BPFMeasurement, cel.BPFLoadResult, cel.BPFUnmeasured, cel.BPFUnloaded}
		j := mustOpen(t, dir, dev, options(dev))
		var want []string
		for i := range 60 {
			if rng.IntN(15) == 0 {
				if err := j.Close(); err != nil {
					t.Fatal(err)
				}
				j = mustOpen(t, dir, dev, options(dev))
			}
			typ := types[rng.IntN(len(types))]
			content := fmt.Appendf(nil, "event %d %x", i, rng.Uint64())
			content = append(content, make([]byte, rng.IntN(2000))...)
			if _, err := j.Append(context.Background(), typ, content); err != nil {
				t.Fatal(err)
			}
			if typ == cel.BPFMeasurement {
				want = append(want, string(content))
			}
		}
		recs := checkReplay(t, j, dev)
		if !slices.Equal(events(recs), want) {
			t.Fatal("the log's measurements differ from what was appended")
		}
		if len(dev.Banks()) < 1 {
			t.Fatal("no banks")
		}
		t.Logf("%s: %d records, banks %v", tg.Name, len(recs), dev.Banks())
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
		// The file read cold says the same.
		lg, err := ReadFile(j.Path())
		if err != nil {
			t.Fatal(err)
		}
		pcr, err := dev.ReadPCR(DefaultPCR)
		if err != nil {
			t.Fatal(err)
		}
		if !equalValues(lg.Final, pcr) || len(lg.Records) != len(recs) {
			t.Fatalf("ReadFile: %d records replaying to %x, pcr %x", len(lg.Records), lg.Final, pcr)
		}
	})
}

// TestNonZeroStart opens a journal on a PCR something else extended first:
// the boot header records that value and the replay starts from it.
func TestNonZeroStart(t *testing.T) {
	dev := tpmtest.Open(t, "sim")
	pre := make(map[crypto.Hash][]byte)
	for _, h := range dev.Banks() {
		d := h.New()
		d.Write([]byte("MokList"))
		pre[h] = d.Sum(nil)
	}
	if err := dev.Extend(DefaultPCR, pre); err != nil {
		t.Fatal(err)
	}
	before, err := dev.ReadPCR(DefaultPCR)
	if err != nil {
		t.Fatal(err)
	}
	j := mustOpen(t, t.TempDir(), dev, options(dev))
	defer j.Close()
	if _, err := j.Append(context.Background(), cel.BPFMeasurement, []byte("m")); err != nil {
		t.Fatal(err)
	}
	recs := checkReplay(t, j, dev)
	boot, err := cel.ParseBootInfo(recs[0].Content)
	if err != nil {
		t.Fatal(err)
	}
	if !equalValues(boot.Start, before) {
		t.Fatalf("boot header start %x, pcr before %x", boot.Start, before)
	}
	for _, v := range boot.Start {
		if !slices.ContainsFunc(v, func(b byte) bool { return b != 0 }) {
			t.Fatal("starting value is zero; the test did not extend first")
		}
	}
}

// TestLocked checks that a second opener of the same state directory fails
// fast with ErrLocked, and succeeds once the first closed.
func TestLocked(t *testing.T) {
	dev := tpmtest.Open(t, "sim")
	dir := t.TempDir()
	j := mustOpen(t, dir, dev, options(dev))
	_, err := Open(context.Background(), dir, dev, options(dev))
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	t.Log(err)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second close: %v", err)
	}
	if _, err := j.Append(context.Background(), cel.BPFMeasurement, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
	j2 := mustOpen(t, dir, dev, options(dev))
	j2.Close()
}

// TestConcurrentAppendSnapshot appends from several goroutines while others
// take snapshots; inside every snapshot the records must replay to the PCR,
// which holds only if appends and snapshots are serialised.
func TestConcurrentAppendSnapshot(t *testing.T) {
	dev := tpmtest.Open(t, "sim")
	j := mustOpen(t, t.TempDir(), dev, options(dev))
	defer j.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 4 {
		wg.Go(func() {
			for i := range 25 {
				if _, err := j.Append(context.Background(), cel.BPFMeasurement, fmt.Appendf(nil, "w%d-%d", w, i)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for range 2 {
		wg.Go(func() {
			for range 25 {
				if err := j.Snapshot(func(recs []cel.Record, pcr map[crypto.Hash][]byte) error {
					return replaysTo(recs, pcr)
				}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := len(events(checkReplay(t, j, dev))); n != 100 {
		t.Fatalf("%d measurements, want 100", n)
	}
	// Appends share commits (batch records): Records(98) starts at the
	// record holding event 98 and runs to the end.
	got := j.Records(98)
	if len(got) == 0 {
		t.Fatal("Records(98) returned none")
	}
	first, _ := got[0].NextRecNum()
	last, _ := got[len(got)-1].NextRecNum()
	if got[0].RecNum > 98 || first <= 98 || last != j.Len() {
		t.Fatalf("Records(98) returned %d records from %d (next %d), ending at %d of %d", len(got), got[0].RecNum, first, last, j.Len())
	}
}

// TestForeignExtend: another writer extends the journal's PCR. The next
// snapshot notices: it still serves the log as it is with the TPM's values
// (so the evidence shows the mismatch), and the journal refuses appends
// from then on. Reopening refuses, or with KeepMismatched opens read-only
// and serves the same log.
func TestForeignExtend(t *testing.T) {
	dev := tpmtest.Open(t, "sim")
	dir := t.TempDir()
	j := mustOpen(t, dir, dev, options(dev))
	defer j.Close()
	if _, err := j.Append(context.Background(), cel.BPFMeasurement, []byte("before")); err != nil {
		t.Fatal(err)
	}
	foreign := make(map[crypto.Hash][]byte)
	for _, h := range dev.Banks() {
		foreign[h] = make([]byte, h.Size())
	}
	if err := dev.Extend(DefaultPCR, foreign); err != nil {
		t.Fatal(err)
	}
	var served []cel.Record
	var pcr map[crypto.Hash][]byte
	err := j.Snapshot(func(recs []cel.Record, v map[crypto.Hash][]byte) error {
		served, pcr = recs, v
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot after a foreign extend: %v", err)
	}
	var me *MismatchError
	if err := j.Mismatch(); !errors.As(err, &me) || !errors.Is(err, ErrPCRMismatch) {
		t.Fatalf("Mismatch after a foreign extend: %v", err)
	}
	rp, err := cel.NewReplayer(zeros(dev.Banks()))
	if err != nil {
		t.Fatal(err)
	}
	for i := range served {
		if err := rp.Add(&served[i]); err != nil {
			t.Fatal(err)
		}
	}
	if rp.Equal(pcr) {
		t.Fatal("the served log replays to the served pcr values after a foreign extend")
	}
	if _, err := j.Append(context.Background(), cel.BPFMeasurement, nil); !errors.Is(err, ErrPCRMismatch) {
		t.Fatalf("append after mismatch: %v, want ErrPCRMismatch", err)
	}
	if j.Err() != nil {
		t.Errorf("Err after a mismatch: %v (the journal is not broken, only mismatched)", j.Err())
	}
	n := len(j.Records(0))
	j.Close()
	// Reopening refuses, saying what does not match.
	_, err = Open(context.Background(), dir, dev, options(dev))
	if !errors.As(err, &me) {
		t.Fatalf("reopen: %v, want MismatchError", err)
	}
	t.Log(err)
	// Or opens read-only: the same records, no agent-start record added.
	o := options(dev)
	o.KeepMismatched = true
	ro, err := Open(context.Background(), dir, dev, o)
	if err != nil {
		t.Fatalf("reopen keeping the mismatch: %v", err)
	}
	defer ro.Close()
	if ro.Mismatch() == nil || len(ro.Records(0)) != n {
		t.Errorf("read-only reopen: mismatch %v, %d records, want %d", ro.Mismatch(), len(ro.Records(0)), n)
	}
	if _, err := ro.Append(context.Background(), cel.BPFMeasurement, nil); !errors.Is(err, ErrPCRMismatch) {
		t.Errorf("append to a read-only journal: %v", err)
	}
	if err := ro.Snapshot(func(recs []cel.Record, _ map[crypto.Hash][]byte) error {
		if len(recs) != n {
			t.Errorf("snapshot serves %d records, want %d", len(recs), n)
		}
		return nil
	}); err != nil {
		t.Errorf("snapshot of a read-only journal: %v", err)
	}
}

func TestOptionsRejected(t *testing.T) {
	dev := tpmtest.Open(t, "sim")
	for _, pcr := range []int{16, 23, 24, -1} {
		o := options(dev)
		o.PCR = pcr
		if _, err := Open(context.Background(), t.TempDir(), dev, o); err == nil {
			t.Errorf("pcr %d accepted", pcr)
		}
	}
	o := options(dev)
	o.Clock = nil
	if _, err := Open(context.Background(), t.TempDir(), dev, o); err == nil {
		t.Error("no clock accepted")
	}
	o = options(dev)
	o.BootID = func() (string, error) { return "../../etc", nil }
	if _, err := Open(context.Background(), t.TempDir(), dev, o); err == nil {
		t.Error("a boot id with a path in it was accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Open(ctx, t.TempDir(), dev, options(dev)); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled open: %v", err)
	}
}

// TestOtherPCR runs a journal on PCR 8 next to one on PCR 14.
func TestOtherPCR(t *testing.T) {
	dev := tpmtest.Open(t, "sim")
	o := options(dev)
	o.PCR = 8
	j := mustOpen(t, t.TempDir(), dev, o)
	defer j.Close()
	if _, err := j.Append(context.Background(), cel.BPFMeasurement, []byte("on 8")); err != nil {
		t.Fatal(err)
	}
	recs := checkReplay(t, j, dev)
	if recs[1].PCR != 8 {
		t.Fatalf("record on pcr %d", recs[1].PCR)
	}
	// The same directory with another PCR is refused, not mixed.
	j.Close()
	if _, err := Open(context.Background(), filepath.Dir(j.Path()), dev, options(dev)); err == nil {
		t.Fatal("reopening a pcr 8 log as pcr 14 succeeded")
	}
	if _, err := os.Stat(j.Path()); err != nil {
		t.Fatal(err)
	}
}

// TestBankSubsets runs the journal on swtpms provisioned with fewer banks
// (swtpm_setup activates only sha256 by default): records carry exactly the
// active banks and replay to them.
func TestBankSubsets(t *testing.T) {
	for _, banks := range [][]string{{"sha256"}, {"sha256", "sha384"}} {
		t.Run(fmt.Sprint(banks), func(t *testing.T) {
			sw := tpmtest.StartSwtpm(t, tpmtest.SwtpmOptions{PCRBanks: banks})
			dev := tpmtest.Open(t, sw.Spec())
			if len(dev.Banks()) != len(banks) {
				t.Fatalf("tpm banks %v, provisioned %v", dev.Banks(), banks)
			}
			j := mustOpen(t, t.TempDir(), dev, options(dev))
			defer j.Close()
			ev, err := j.Append(context.Background(), cel.BPFMeasurement, []byte("m"))
			if err != nil {
				t.Fatal(err)
			}
			recs := j.Records(ev.RecNum)
			if len(recs) != 1 {
				t.Fatalf("%d records from event %d", len(recs), ev.RecNum)
			}
			if got := recs[0].Banks(); !slices.Equal(got, dev.Banks()) {
				t.Fatalf("record banks %v, tpm banks %v", got, dev.Banks())
			}
			checkReplay(t, j, dev)
		})
	}
}
