package journal

import (
	"context"
	"crypto"
	"errors"
	"slices"
	"testing"

	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
)

// TestReboot: after a TPM reset the journal starts a new boot's log with a
// boot header; the previous boot's log stays readable and replays to the
// PCR values it had reached before the reboot.
func TestReboot(t *testing.T) {
	sw := tpmtest.StartSwtpm(t, tpmtest.SwtpmOptions{})
	dev := tpmtest.Open(t, sw.Spec())
	dir := t.TempDir()
	j := mustOpen(t, dir, dev, options(dev))
	for _, m := range []string{"a", "b", "c"} {
		if _, err := j.Append(context.Background(), cel.BPFMeasurement, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	before, err := dev.ReadPCR(DefaultPCR)
	if err != nil {
		t.Fatal(err)
	}
	ciBefore, err := dev.ClockInfo()
	if err != nil {
		t.Fatal(err)
	}
	firstPath := j.Path()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}

	if err := sw.Reboot(); err != nil {
		t.Fatal(err)
	}
	j2 := mustOpen(t, dir, dev, options(dev))
	defer j2.Close()
	if j2.Path() == firstPath {
		t.Fatal("the new boot continued the previous boot's log")
	}
	recs := checkReplay(t, j2, dev)
	boot, err := cel.ParseBootInfo(recs[0].Content)
	if err != nil {
		t.Fatal(err)
	}
	if boot.ResetCount != ciBefore.ResetCount+1 {
		t.Fatalf("new boot header reset count %d, want %d", boot.ResetCount, ciBefore.ResetCount+1)
	}
	for h, v := range boot.Start {
		if slices.ContainsFunc(v, func(b byte) bool { return b != 0 }) {
			t.Fatalf("new boot starts from a non-zero %v value: the reboot did not reset the pcr", h)
		}
	}
	if n := len(events(recs)); n != 0 {
		t.Fatalf("new boot log has %d measurements", n)
	}

	old, err := ReadFile(firstPath)
	if err != nil {
		t.Fatal(err)
	}
	if !equalValues(old.Final, before) {
		t.Fatalf("previous boot replays to %x, pcr was %x", old.Final, before)
	}
	if got := events(old.Records); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("previous boot's measurements %q", got)
	}
	boots, err := Boots(dir)
	if err != nil || len(boots) != 2 || boots[0].Path != firstPath || boots[1].Path != j2.Path() {
		t.Fatalf("Boots = %+v, %v", boots, err)
	}
}

// TestTPMGoesAway: the TPM disappears under a running journal. The append
// fails, later appends are refused, and after the TPM comes back (a power
// cycle: PCRs reset) reopening starts a new boot's log while the old one
// stays readable.
func TestTPMGoesAway(t *testing.T) {
	sw := tpmtest.StartSwtpm(t, tpmtest.SwtpmOptions{})
	dev := tpmtest.Open(t, sw.Spec())
	dir := t.TempDir()
	j := mustOpen(t, dir, dev, options(dev))
	if _, err := j.Append(context.Background(), cel.BPFMeasurement, []byte("before")); err != nil {
		t.Fatal(err)
	}
	before, err := dev.ReadPCR(DefaultPCR)
	if err != nil {
		t.Fatal(err)
	}
	if err := sw.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := j.Append(context.Background(), cel.BPFMeasurement, []byte("lost")); err == nil {
		t.Fatal("append with the tpm gone succeeded")
	}
	if _, err := j.Append(context.Background(), cel.BPFMeasurement, []byte("after")); !errors.Is(err, ErrBroken) {
		t.Fatalf("append after a failed extend: %v, want ErrBroken", err)
	}
	if err := j.Snapshot(func([]cel.Record, map[crypto.Hash][]byte) error { return nil }); !errors.Is(err, ErrBroken) {
		t.Fatalf("snapshot after a failed extend: %v, want ErrBroken", err)
	}
	j.Close()
	if err := sw.Restart(); err != nil {
		t.Fatal(err)
	}
	j2 := mustOpen(t, dir, dev, options(dev))
	defer j2.Close()
	checkReplay(t, j2, dev)
	if j2.Path() == j.Path() {
		t.Fatal("log continued across a tpm power cycle")
	}
	// The old log holds the record whose extend failed, never extended:
	// it replays to the values before plus that record, and a reader sees
	// the measurement but no load result after it.
	old, err := ReadFile(j.Path())
	if err != nil {
		t.Fatal(err)
	}
	if got := events(old.Records); !slices.Equal(got, []string{"before", "lost"}) {
		t.Fatalf("old log measurements %q", got)
	}
	withoutLast, err := replay(old.Records[:len(old.Records)-1], old.Boot.Start)
	if err != nil || !equalValues(withoutLast, before) {
		t.Fatalf("old log without its last record replays to %x, pcr was %x (%v)", withoutLast, before, err)
	}
}
