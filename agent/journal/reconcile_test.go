package journal

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/internal/tpm"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
)

// closedLog makes a clean log with n measurements on the simulator, closes
// the journal and returns the TPM, the directory and the log's path.
func closedLog(t *testing.T, n int) (*tpm.Device, string, string) {
	t.Helper()
	dev := tpmtest.Open(t, "sim")
	dir := t.TempDir()
	j := mustOpen(t, dir, dev, options(dev))
	for i := range n {
		if _, err := j.Append(context.Background(), cel.BPFMeasurement, []byte{'m', byte('0' + i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	return dev, dir, j.Path()
}

// pendingRecord encodes the record that would come next in the log at
// path, with the given content.
func pendingRecord(t *testing.T, dev *tpm.Device, path string, content string) cel.Record {
	t.Helper()
	lg, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r, err := cel.NewRecord(uint64(len(lg.Records)), DefaultPCR, dev.Banks(), cel.BPFMeasurement, []byte(content))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func appendBytes(t *testing.T, path string, b []byte) {
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

// TestRollForward: the last record is on disk but was never extended (the
// agent died between fsync and extend). Open extends it and says so.
func TestRollForward(t *testing.T) {
	dev, dir, path := closedLog(t, 2)
	r := pendingRecord(t, dev, path, "pending")
	b, _ := r.MarshalBinary()
	size := fileSize(t, path)
	appendBytes(t, path, b)

	j := mustOpen(t, dir, dev, options(dev))
	defer j.Close()
	recs := checkReplay(t, j, dev)
	if got := events(recs); len(got) != 3 || got[2] != "pending" {
		t.Fatalf("measurements %q", got)
	}
	rs := recoveries(t, recs)
	if len(rs) != 1 || rs[0].Action != cel.RolledForward || rs[0].RecNum != r.RecNum ||
		rs[0].Offset != uint64(size) || rs[0].Length != uint64(len(b)) || rs[0].SHA256 != sha256.Sum256(b) {
		t.Fatalf("recovery records %+v", rs)
	}
}

// TestDiscardTail: bytes after the last record that are not a record (a
// torn write, or zeros left by a crash) and were never extended are cut,
// kept aside, and recorded.
func TestDiscardTail(t *testing.T) {
	for name, tail := range map[string]func(rec []byte) []byte{
		"torn record":  func(rec []byte) []byte { return rec[:len(rec)/2] },
		"one byte":     func(rec []byte) []byte { return rec[:1] },
		"zeros":        func(rec []byte) []byte { return make([]byte, len(rec)) },
		"bad digest":   func(rec []byte) []byte { c := bytes.Clone(rec); c[len(c)-1] ^= 1; return c },
		"whole header": func(rec []byte) []byte { return rec[:len(rec)-1] },
	} {
		t.Run(name, func(t *testing.T) {
			dev, dir, path := closedLog(t, 1)
			r := pendingRecord(t, dev, path, "torn")
			b, _ := r.MarshalBinary()
			tb := tail(b)
			size := fileSize(t, path)
			appendBytes(t, path, tb)

			j := mustOpen(t, dir, dev, options(dev))
			defer j.Close()
			recs := checkReplay(t, j, dev)
			rs := recoveries(t, recs)
			if len(rs) != 1 || rs[0].Action != cel.DiscardedTail || rs[0].Offset != uint64(size) ||
				rs[0].Length != uint64(len(tb)) || rs[0].SHA256 != sha256.Sum256(tb) {
				t.Fatalf("recovery records %+v", rs)
			}
			kept, err := os.ReadFile(path + ".discarded-" + strconv.FormatInt(size, 10))
			if err != nil || !bytes.Equal(kept, tb) {
				t.Fatalf("discarded bytes not kept: %v", err)
			}
			if slices.Contains(events(recs), "torn") {
				t.Fatal("the torn record is in the log")
			}
		})
	}
}

// TestRefuse: states no crash can produce are refused with an error that
// says what does not match, and the log is left untouched.
func TestRefuse(t *testing.T) {
	tests := []struct {
		name string
		// mutate damages the closed log at path (whose encoded bytes are
		// given, with each record's start offset) or the PCR.
		mutate func(t *testing.T, dev *tpm.Device, path string, b []byte, starts []int) []byte
		want   error
		// index is the record the error must name, -1 for none.
		index int
	}{
		{"extended record lost", func(t *testing.T, dev *tpm.Device, path string, b []byte, starts []int) []byte {
			r := pendingRecord(t, dev, path, "lost")
			ds := map[crypto.Hash][]byte{}
			for _, d := range r.Digests {
				ds[d.Hash] = d.Value
			}
			if err := dev.Extend(DefaultPCR, ds); err != nil {
				t.Fatal(err)
			}
			return b
		}, ErrPCRMismatch, -1},
		{"truncated extended record", func(_ *testing.T, _ *tpm.Device, _ string, b []byte, starts []int) []byte {
			return b[:len(b)-3]
		}, ErrPCRMismatch, 4},
		{"flipped byte", func(_ *testing.T, _ *tpm.Device, _ string, b []byte, starts []int) []byte {
			b[starts[2]+40] ^= 1
			return b
		}, ErrPCRMismatch, 2},
		{"deleted record", func(_ *testing.T, _ *tpm.Device, _ string, b []byte, starts []int) []byte {
			return append(b[:starts[2]:starts[2]], b[starts[3]:]...)
		}, ErrPCRMismatch, 2},
		{"reordered", func(_ *testing.T, _ *tpm.Device, _ string, b []byte, starts []int) []byte {
			out := append([]byte(nil), b[:starts[2]]...)
			out = append(out, b[starts[3]:starts[4]]...)
			out = append(out, b[starts[2]:starts[3]]...)
			return append(out, b[starts[4]:]...)
		}, ErrPCRMismatch, 2},
		{"inserted duplicate", func(_ *testing.T, _ *tpm.Device, _ string, b []byte, starts []int) []byte {
			out := append([]byte(nil), b[:starts[3]]...)
			out = append(out, b[starts[2]:starts[3]]...)
			return append(out, b[starts[3]:]...)
		}, ErrPCRMismatch, 3},
		{"pending record and torn tail", func(t *testing.T, dev *tpm.Device, path string, b []byte, starts []int) []byte {
			r := pendingRecord(t, dev, path, "pending")
			rb, _ := r.MarshalBinary()
			return append(append(b, rb...), 0, 0, 0)
		}, ErrPCRMismatch, 6},
		{"header damaged", func(_ *testing.T, _ *tpm.Device, _ string, b []byte, starts []int) []byte {
			b[starts[0]+30] ^= 1
			return b
		}, ErrCorrupt, -1},
		{"empty file", func(*testing.T, *tpm.Device, string, []byte, []int) []byte { return nil }, ErrCorrupt, -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dev, dir, path := closedLog(t, 2) // header, start, m0, m1, (start of the reopen is not there yet)
			j := mustOpen(t, dir, dev, options(dev))
			j.Close() // now: header, start, m0, m1, start
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			recs, err := cel.Decode(b)
			if err != nil || len(recs) != 5 {
				t.Fatalf("%d records, %v", len(recs), err)
			}
			var starts []int
			off := 0
			for i := range recs {
				starts = append(starts, off)
				off += recs[i].EncodedLen()
			}
			damaged := tc.mutate(t, dev, path, bytes.Clone(b), starts)
			if err := os.WriteFile(path, damaged, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err = Open(context.Background(), dir, dev, options(dev))
			if !errors.Is(err, tc.want) {
				t.Fatalf("open: %v, want %v", err, tc.want)
			}
			t.Log(err)
			if tc.index >= 0 {
				var me *MismatchError
				if !errors.As(err, &me) || me.Records != tc.index {
					t.Fatalf("error does not say the log goes wrong at record %d", tc.index)
				}
				if me.TailLen > 0 && !strings.Contains(err.Error(), "record "+strconv.Itoa(tc.index)) {
					t.Fatalf("error does not name record %d", tc.index)
				}
			}
			after, _ := os.ReadFile(path)
			if !bytes.Equal(after, damaged) {
				t.Fatal("a refused log was modified")
			}
		})
	}
}

// TestHeaderNotExtended: the agent died after putting a new boot's log in
// place and before extending its header. Open rolls the header forward.
func TestHeaderNotExtended(t *testing.T) {
	dev := tpmtest.Open(t, "sim")
	dir := t.TempDir()
	ci, err := dev.ClockInfo()
	if err != nil {
		t.Fatal(err)
	}
	start, err := dev.ReadPCR(DefaultPCR)
	if err != nil {
		t.Fatal(err)
	}
	boot := cel.BootInfo{BootID: testBootID, ResetCount: ci.ResetCount, PCR: DefaultPCR, Start: start}
	content, _ := boot.MarshalBinary()
	h, err := cel.NewRecord(0, DefaultPCR, dev.Banks(), cel.BootHeader, content)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := h.MarshalBinary()
	name, _ := logName(ci.ResetCount, testBootID)
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
		t.Fatal(err)
	}
	j := mustOpen(t, dir, dev, options(dev))
	defer j.Close()
	recs := checkReplay(t, j, dev)
	rs := recoveries(t, recs)
	if len(rs) != 1 || rs[0].Action != cel.RolledForward || rs[0].RecNum != 0 {
		t.Fatalf("recoveries %+v", rs)
	}
}

// TestStaleTempRemoved: the agent died before a new boot's log was renamed
// into place; the temporary file is no part of any log and is removed.
func TestStaleTempRemoved(t *testing.T) {
	dev := tpmtest.Open(t, "sim")
	dir := t.TempDir()
	ci, err := dev.ClockInfo()
	if err != nil {
		t.Fatal(err)
	}
	name, _ := logName(ci.ResetCount, testBootID)
	tmp := filepath.Join(dir, name+tempSuffix)
	if err := os.WriteFile(tmp, []byte("half a header"), 0o600); err != nil {
		t.Fatal(err)
	}
	j := mustOpen(t, dir, dev, options(dev))
	defer j.Close()
	checkReplay(t, j, dev)
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temporary file still there: %v", err)
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}
