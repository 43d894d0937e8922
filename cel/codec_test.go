package cel_test

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/bpfattest/bpfattest/cel"
)

func TestRoundTrip(t *testing.T) {
	recs := sampleLog(t)
	b := encode(t, recs)
	got, err := cel.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(recs, got, cmpopts.EquateEmpty()); diff != "" {
		t.Fatalf("decode(encode(recs)) differs (-want +got):\n%s", diff)
	}
	again := encode(t, got)
	if !bytes.Equal(b, again) {
		t.Fatal("re-encoding decoded records changed the bytes")
	}
}

func TestRoundTripRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	types := []cel.ContentType{cel.BPFMeasurement, cel.BPFLoadResult, cel.BPFUnmeasured, cel.BPFUnloaded}
	for n := range 200 {
		var banks []crypto.Hash
		for _, h := range allBanks {
			if rng.IntN(2) == 0 {
				banks = append(banks, h)
			}
		}
		if len(banks) == 0 {
			banks = []crypto.Hash{crypto.SHA256}
		}
		content := make([]byte, rng.IntN(300))
		for i := range content {
			content[i] = byte(rng.Uint32())
		}
		r := mustRecord(t, rng.Uint64(), uint8(rng.IntN(256)), banks, types[rng.IntN(len(types))], content)
		b, err := r.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != r.EncodedLen() {
			t.Fatalf("case %d: encoded %d bytes, EncodedLen says %d", n, len(b), r.EncodedLen())
		}
		got, used, err := cel.DecodeRecord(b)
		if err != nil {
			t.Fatalf("case %d: %v", n, err)
		}
		if used != len(b) {
			t.Fatalf("case %d: decoded %d of %d bytes", n, used, len(b))
		}
		if diff := cmp.Diff(r, got, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("case %d (-want +got):\n%s", n, diff)
		}
		if err := got.VerifyDigests(); err != nil {
			t.Fatalf("case %d: %v", n, err)
		}
	}
}

func TestEncodeDeterministic(t *testing.T) {
	// The bank order given by the caller does not change the bytes.
	a := mustRecord(t, 7, 14, []crypto.Hash{crypto.SHA512, crypto.SHA1, crypto.SHA256}, cel.BPFMeasurement, []byte("x"))
	b := mustRecord(t, 7, 14, []crypto.Hash{crypto.SHA256, crypto.SHA512, crypto.SHA1, crypto.SHA256}, cel.BPFMeasurement, []byte("x"))
	ea, _ := a.MarshalBinary()
	eb, _ := b.MarshalBinary()
	if !bytes.Equal(ea, eb) {
		t.Fatal("same record, different bytes")
	}
}

func TestEncodeRejects(t *testing.T) {
	good := mustRecord(t, 1, 14, []crypto.Hash{crypto.SHA1, crypto.SHA256}, cel.BPFMeasurement, []byte("x"))
	tests := map[string]func(r *cel.Record){
		"unknown type":  func(r *cel.Record) { r.Type = 0xB0FF },
		"no digests":    func(r *cel.Record) { r.Digests = nil },
		"short digest":  func(r *cel.Record) { r.Digests[1].Value = r.Digests[1].Value[:31] },
		"unknown bank":  func(r *cel.Record) { r.Digests[0].Hash = crypto.MD5 },
		"unsorted":      func(r *cel.Record) { r.Digests[0], r.Digests[1] = r.Digests[1], r.Digests[0] },
		"duplicate":     func(r *cel.Record) { r.Digests[1] = r.Digests[0] },
		"mgmt top type": func(r *cel.Record) { r.Type = 0xB1FF },
	}
	for name, mutate := range tests {
		t.Run(name, func(t *testing.T) {
			r := good
			r.Digests = append([]cel.Digest(nil), good.Digests...)
			mutate(&r)
			if b, err := r.AppendBinary([]byte("prefix")); err == nil {
				t.Fatalf("encoded %x, want error", b)
			} else if string(b) != "prefix" {
				t.Fatalf("buffer changed on error: %q", b)
			}
		})
	}
}

func TestNewRecordRejects(t *testing.T) {
	for name, f := range map[string]func() error{
		"unknown type": func() error { _, err := cel.NewRecord(0, 14, allBanks, 0x0101, nil); return err },
		"no banks":     func() error { _, err := cel.NewRecord(0, 14, nil, cel.BPFMeasurement, nil); return err },
		"md5 bank": func() error {
			_, err := cel.NewRecord(0, 14, []crypto.Hash{crypto.MD5}, cel.BPFMeasurement, nil)
			return err
		},
	} {
		if f() == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestContentDigestLayout pins the hashed bytes: the whole content field.
func TestContentDigestLayout(t *testing.T) {
	content := []byte("abc")
	field := []byte{0xB0, 0, 0, 0, 8, 0x01, 0, 0, 0, 3, 'a', 'b', 'c'}
	want := sha256.Sum256(field)
	if got := cel.ContentDigest(crypto.SHA256, cel.BPFMeasurement, content); !bytes.Equal(got, want[:]) {
		t.Fatalf("ContentDigest = %x, want sha256(%x) = %x", got, field, want)
	}
	r := mustRecord(t, 0, 14, []crypto.Hash{crypto.SHA256}, cel.BPFMeasurement, content)
	b, _ := r.MarshalBinary()
	if !bytes.HasSuffix(b, field) {
		t.Fatalf("record %x does not end with the content field %x", b, field)
	}
}

// TestDecodeTruncatedEverywhere cuts a log at every byte: each cut is
// reported as a truncated tail at the right record, with the records before
// it intact.
func TestDecodeTruncatedEverywhere(t *testing.T) {
	recs := sampleLog(t)
	b := encode(t, recs)
	starts, total := offsets(recs)
	for cut := 0; cut < total; cut++ {
		got, err := cel.Decode(b[:cut])
		idx := 0
		for idx+1 < len(starts) && starts[idx+1] <= cut {
			idx++
		}
		if cut == starts[idx] {
			if err != nil || len(got) != idx {
				t.Fatalf("cut %d at a record boundary: %d records, err %v", cut, len(got), err)
			}
			continue
		}
		var de *cel.DecodeError
		if !errors.As(err, &de) || !errors.Is(err, cel.ErrTruncated) {
			t.Fatalf("cut %d: err %v, want a truncated DecodeError", cut, err)
		}
		if de.Index != idx || de.RecordOffset != int64(starts[idx]) || len(got) != idx {
			t.Fatalf("cut %d: index %d offset %d (%d records), want index %d offset %d", cut, de.Index, de.RecordOffset, len(got), idx, starts[idx])
		}
		if de.Offset < de.RecordOffset || de.Offset > int64(cut) {
			t.Fatalf("cut %d: field offset %d outside [%d,%d]", cut, de.Offset, de.RecordOffset, cut)
		}
	}
}

func TestDecodeMalformed(t *testing.T) {
	r := mustRecord(t, 5, 14, []crypto.Hash{crypto.SHA1, crypto.SHA256}, cel.BPFMeasurement, []byte("payload"))
	good, _ := r.MarshalBinary()
	// Field offsets in the encoding of r.
	const (
		offRecNum  = 0
		offPCR     = 13
		offDigests = 19
		offSHA1    = 24
		offSHA256  = 24 + 5 + 20
		offContent = offSHA256 + 5 + 32
		offKind    = offContent + 5
	)
	if good[offContent] != 0xB0 || good[offKind] != 0x01 || good[offSHA256] != 0x0B {
		t.Fatalf("layout assumption wrong: % x", good)
	}
	set32 := func(b []byte, off int, v uint32) { binary.BigEndian.PutUint32(b[off+1:], v) }
	tests := []struct {
		name   string
		mutate func(b []byte) []byte
		field  string
		offset int64
		err    error
	}{
		{"recnum wrong type", func(b []byte) []byte { b[offRecNum] = 9; return b }, "recnum", offRecNum, cel.ErrMalformed},
		{"recnum short", func(b []byte) []byte {
			set32(b, offRecNum, 7)
			return append(b[:offRecNum+5+7], b[offRecNum+5+8:]...)
		}, "recnum", offRecNum, cel.ErrMalformed},
		{"pcr wrong type", func(b []byte) []byte { b[offPCR] = 2; return b }, "pcr", offPCR, cel.ErrMalformed},
		{"pcr two bytes", func(b []byte) []byte {
			set32(b, offPCR, 2)
			return append(b[:offPCR+6], append([]byte{0}, b[offPCR+6:]...)...)
		}, "pcr", offPCR, cel.ErrMalformed},
		{"digests wrong type", func(b []byte) []byte { b[offDigests] = 4; return b }, "digests", offDigests, cel.ErrMalformed},
		{"digest unknown alg", func(b []byte) []byte { b[offSHA1] = 0x12; return b }, "digests", offSHA1, cel.ErrMalformed},
		{"digest wrong length", func(b []byte) []byte { set32(b, offSHA1, 19); return b }, "digest sha1", offSHA1, cel.ErrMalformed},
		{"duplicate bank", func(b []byte) []byte {
			// Replace the sha256 entry by a second sha1 entry of the same total size is
			// impossible; build a record with two sha1 entries instead.
			d := append([]byte{4, 0, 0, 0, 20}, b[offSHA1+5:offSHA1+25]...)
			out := append([]byte(nil), b[:offDigests]...)
			out = append(out, 3, 0, 0, 0, 50)
			out = append(out, d...)
			out = append(out, d...)
			return append(out, b[offContent:]...)
		}, "digest sha1", offSHA1 + 25, cel.ErrMalformed},
		{"banks out of order", func(b []byte) []byte {
			sha1 := append([]byte(nil), b[offSHA1:offSHA256]...)
			sha256 := append([]byte(nil), b[offSHA256:offContent]...)
			out := append([]byte(nil), b[:offSHA1]...)
			out = append(out, sha256...)
			out = append(out, sha1...)
			return append(out, b[offContent:]...)
		}, "digest sha1", offSHA1 + 37, cel.ErrMalformed},
		{"no digests", func(b []byte) []byte {
			out := append([]byte(nil), b[:offDigests]...)
			out = append(out, 3, 0, 0, 0, 0)
			return append(out, b[offContent:]...)
		}, "digests", offDigests + 5, cel.ErrMalformed},
		{"digests length past field", func(b []byte) []byte { set32(b, offDigests, 26); return b }, "digests", offSHA256, cel.ErrMalformed},
		{"digest value past field", func(b []byte) []byte { set32(b, offDigests, 60); return b }, "digest sha256", offSHA256, cel.ErrMalformed},
		{"unknown content type", func(b []byte) []byte { b[offContent] = 0x07; return b }, "content", offContent, cel.ErrMalformed},
		{"unknown kind", func(b []byte) []byte { b[offKind] = 0x09; return b }, "content kind", offKind, cel.ErrMalformed},
		{"management kind 0", func(b []byte) []byte { b[offContent] = 0xB1; b[offKind] = 0; return b }, "content kind", offKind, cel.ErrMalformed},
		{"kind length short", func(b []byte) []byte { set32(b, offKind, 6); return b }, "content kind", offKind, cel.ErrMalformed},
		{"content length tiny", func(b []byte) []byte { set32(b, offContent, 4); return b }, "content", offContent, cel.ErrMalformed},
		{"content length huge", func(b []byte) []byte { set32(b, offContent, 1<<31); return b }, "content", offContent, cel.ErrTruncated},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.mutate(append([]byte(nil), good...))
			_, err := cel.Decode(append(append([]byte(nil), good...), b...)) // second record is bad
			var de *cel.DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("err = %v, want DecodeError", err)
			}
			if !errors.Is(err, tc.err) {
				t.Errorf("err = %v, want %v", err, tc.err)
			}
			want := cel.DecodeError{Index: 1, RecordOffset: int64(len(good)), Offset: int64(len(good)) + tc.offset, Field: tc.field}
			got := cel.DecodeError{Index: de.Index, RecordOffset: de.RecordOffset, Offset: de.Offset, Field: de.Field}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%v\n(-want +got):\n%s", err, diff)
			}
		})
	}
}

func TestDecodeErrorMessage(t *testing.T) {
	b := encode(t, sampleLog(t)[:2])
	_, err := cel.Decode(b[:len(b)-3])
	const want = "cel: decode record 1 (recnum 1) at offset "
	if err == nil || !bytes.HasPrefix([]byte(err.Error()), []byte(want)) {
		t.Fatalf("error %q, want prefix %q", err, want)
	}
}

func TestDecodeEmpty(t *testing.T) {
	recs, err := cel.Decode(nil)
	if err != nil || len(recs) != 0 {
		t.Fatalf("Decode(nil) = %v, %v", recs, err)
	}
}

// TestDecodeCount: Decode's sizing pass counts the records and digests of
// a log, and stops at what it cannot read.
func TestDecodeCount(t *testing.T) {
	var recs []cel.Record
	for i := range 5 {
		banks := []crypto.Hash{crypto.SHA256}
		if i%2 == 0 {
			banks = append(banks, crypto.SHA1, crypto.SHA384)
		}
		recs = append(recs, mustRecord(t, uint64(i), 14, banks, cel.BPFMeasurement, []byte("content")))
	}
	b, err := cel.Encode(recs)
	if err != nil {
		t.Fatal(err)
	}
	if n, d := cel.CountForTest(b); n != 5 || d != 11 {
		t.Errorf("count: %d records, %d digests; want 5 and 11", n, d)
	}
	if n, _ := cel.CountForTest(b[:len(b)-1]); n != 4 {
		t.Errorf("count of a truncated log: %d records, want 4", n)
	}
	got, err := cel.Decode(b)
	if err != nil || len(got) != 5 || cap(got) != 5 {
		t.Errorf("Decode: %d records (cap %d), %v", len(got), cap(got), err)
	}
}
