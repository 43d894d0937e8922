package cel_test

import (
	"bytes"
	"crypto"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/bpfattest/bpfattest/cel"
)

// seedLogs returns the golden sample log, each of its records alone, and a
// few damaged copies.
func seedLogs(f *testing.F) [][]byte {
	f.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "sample.cel"))
	if err != nil {
		f.Fatal(err)
	}
	seeds := [][]byte{b, nil, b[:len(b)/2], flip(b, 20)}
	recs, err := cel.Decode(b)
	if err != nil {
		f.Fatal(err)
	}
	starts, _ := offsets(recs)
	for i, s := range starts {
		seeds = append(seeds, b[s:s+recs[i].EncodedLen()])
	}
	// The same events with batch records among them, and a batch alone.
	bb, err := os.ReadFile(filepath.Join("testdata", "batch.cel"))
	if err != nil {
		f.Fatal(err)
	}
	brecs, err := cel.Decode(bb)
	if err != nil {
		f.Fatal(err)
	}
	bstarts, _ := offsets(brecs)
	return append(seeds, bb, bb[bstarts[2]:bstarts[3]])
}

// FuzzDecode checks that decoding never panics, that a Scanner yields what
// Decode returns, that whatever decodes re-encodes to exactly the input (the
// encoding is canonical: one byte string per record), and that replay and
// the exports accept any decoded record.
func FuzzDecode(f *testing.F) {
	for _, s := range seedLogs(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, err := cel.Decode(b)
		var de *cel.DecodeError
		if err != nil && !errors.As(err, &de) {
			t.Fatalf("error %v is not a DecodeError", err)
		}
		prefix := len(b)
		if err != nil {
			prefix = int(de.RecordOffset)
			if de.Offset < de.RecordOffset || de.Offset > int64(len(b)) {
				t.Fatalf("offset %d outside the input (record at %d, %d bytes)", de.Offset, de.RecordOffset, len(b))
			}
		}
		checkScanner(t, b, recs, err)
		again, eerr := cel.Encode(recs)
		if eerr != nil {
			t.Fatalf("decoded records do not encode: %v", eerr)
		}
		if !bytes.Equal(again, b[:prefix]) {
			t.Fatalf("re-encoding differs from the input:\n in  %x\n out %x", b[:prefix], again)
		}
		if len(recs) > 0 {
			start := make(map[crypto.Hash][]byte)
			for _, d := range recs[0].Digests {
				start[d.Hash] = make([]byte, d.Hash.Size())
			}
			_, _ = cel.Replay(recs, start)
		}
		_ = cel.WriteText(io.Discard, recs, nil)
		_ = cel.WriteJSON(io.Discard, recs, nil)
	})
}

// FuzzParseManagement checks the management content parsers never panic
// and are canonical: what parses marshals back to the same bytes.
func FuzzParseManagement(f *testing.F) {
	recs, err := cel.Decode(seedLogs(f)[0])
	if err != nil {
		f.Fatal(err)
	}
	for _, r := range recs {
		if r.Type.Management() {
			f.Add(r.Content)
		}
	}
	boot := kernelBoot()
	f.Add(mustMarshal(f, &boot))
	f.Fuzz(func(t *testing.T, b []byte) {
		if v, err := cel.ParseKernelInfo(b); err == nil {
			if out, err := v.MarshalBinary(); err != nil || !bytes.Equal(out, b) {
				t.Fatalf("kernel info: re-marshal %x, %v; input %x", out, err, b)
			}
		}
		if v, err := cel.ParseBootInfo(b); err == nil {
			if out, err := v.MarshalBinary(); err != nil || !bytes.Equal(out, b) {
				t.Fatalf("boot info: re-marshal %x, %v; input %x", out, err, b)
			}
		}
		if v, err := cel.ParseAgentStartInfo(b); err == nil {
			if out, err := v.MarshalBinary(); err != nil || !bytes.Equal(out, b) {
				t.Fatalf("agent start: re-marshal %x, %v; input %x", out, err, b)
			}
		}
		if v, err := cel.ParseRecoveryInfo(b); err == nil {
			if out, err := v.MarshalBinary(); err != nil || !bytes.Equal(out, b) {
				t.Fatalf("recovery: re-marshal %x, %v; input %x", out, err, b)
			}
		}
	})
}

// checkScanner checks that a Scanner of b yields the records and the error
// Decode returned for b.
func checkScanner(t *testing.T, b []byte, want []cel.Record, wantErr error) {
	t.Helper()
	sc := cel.NewScanner(b)
	var rec cel.Record
	i := 0
	for ; sc.Next(&rec); i++ {
		if i >= len(want) || !reflect.DeepEqual(rec, want[i]) {
			t.Fatalf("scanner record %d is %+v, Decode has %d records", i, rec, len(want))
		}
	}
	if i != len(want) || !reflect.DeepEqual(sc.Err(), wantErr) {
		t.Fatalf("scanner stopped after %d records with %v, Decode returned %d and %v", i, sc.Err(), len(want), wantErr)
	}
}
