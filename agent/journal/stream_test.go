package journal

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/bpfattest/bpfattest/cel"
)

// FuzzScanFile proves that the chunked reader reconcile uses finds exactly
// what scan finds in the same bytes, whatever the chunk size: the same
// refusal, the same valid records and offsets, the same replays with and
// without the last record, the same last record and the same tail and
// tail error. It also holds recordLen, which the index steps over records
// with, to the decoder's lengths and to the bytes it is given.
func FuzzScanFile(f *testing.F) {
	banks := []crypto.Hash{crypto.SHA1, crypto.SHA256}
	start := map[crypto.Hash][]byte{crypto.SHA1: make([]byte, 20), crypto.SHA256: make([]byte, 32)}
	boot := cel.BootInfo{BootID: testBootID, ResetCount: 2, PCR: DefaultPCR, Start: start}
	content, err := boot.MarshalBinary()
	if err != nil {
		f.Fatal(err)
	}
	var recs []cel.Record
	for i, c := range []struct {
		t cel.ContentType
		b []byte
	}{{cel.BootHeader, content}, {cel.AgentStart, nil}, {cel.BPFMeasurement, []byte("m")},
		{cel.BPFMeasurement, bytes.Repeat([]byte("x"), 300)}, {cel.BPFUnmeasured, []byte("u")}} {
		r, err := cel.NewRecord(uint64(i), DefaultPCR, banks, c.t, c.b)
		if err != nil {
			f.Fatal(err)
		}
		recs = append(recs, r)
	}
	log, err := cel.Encode(recs)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(log, uint16(7))
	f.Add(log[:len(log)-4], uint16(64))
	f.Add(log[:recs[0].EncodedLen()], uint16(1))
	f.Add(append(bytes.Clone(log), 0xde, 0xad), uint16(100))
	f.Add(log[:len(log)-1], uint16(4096))
	path := filepath.Join(f.TempDir(), "log")
	f.Fuzz(func(t *testing.T, b []byte, chunk uint16) {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		want, werr := scan(b)
		got, gerr := scanFileChunks(path, int(chunk%8192)+1)
		if (werr != nil) != (gerr != nil) || werr != nil && (!errors.Is(gerr, ErrCorrupt) || werr.Error() != gerr.Error()) {
			t.Fatalf("scan: %v, scanFile: %v", werr, gerr)
		}
		if werr != nil {
			return
		}
		if got.valid != want.valid || got.validEnd != want.validEnd || !bytes.Equal(got.tail, want.tail) {
			t.Fatalf("scanFile: %d valid to %d, tail %d; scan: %d to %d, tail %d",
				got.valid, got.validEnd, len(got.tail), want.valid, want.validEnd, len(want.tail))
		}
		if fmt.Sprint(got.tailErr) != fmt.Sprint(want.tailErr) {
			t.Fatalf("tail error %v, scan says %v", got.tailErr, want.tailErr)
		}
		off := int64(0)
		for i := range want.valid {
			pos, at, err := got.idx.locate(bytes.NewReader(b), want.recs[i].RecNum, got.validEnd)
			if err != nil || at != off || pos != i {
				t.Fatalf("record %d at %d (record %d, %v), scan has %d", i, at, pos, err, off)
			}
			if n, err := recordLen(b[off:]); err != nil || n != want.recs[i].EncodedLen() {
				t.Fatalf("record %d: recordLen %d (%v), want %d", i, n, err, want.recs[i].EncodedLen())
			}
			off += int64(want.recs[i].EncodedLen())
		}
		// recordLen steps over framing only, and never past the bytes.
		for pos := 0; pos < len(b); pos++ {
			if n, err := recordLen(b[pos:]); err == nil && (n <= 0 || n > len(b)-pos) {
				t.Fatalf("recordLen at %d: %d of %d bytes", pos, n, len(b)-pos)
			}
		}
		if !equalValues(got.rp.Values(), want.rp.Values()) {
			t.Fatal("replays differ")
		}
		prev, err := want.replayWithoutLast()
		if err != nil || !equalValues(got.rpPrev.Values(), prev) {
			t.Fatalf("replays without the last record differ (%v)", err)
		}
		last := b[got.validEnd-int64(len(got.lastBytes)) : got.validEnd]
		enc, err := got.last.MarshalBinary()
		if err != nil || !bytes.Equal(enc, last) || !bytes.Equal(got.lastBytes, last) {
			t.Fatalf("last record differs (%v)", err)
		}
	})
}
