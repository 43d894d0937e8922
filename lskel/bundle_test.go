package lskel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// testRecord is one bundle record for buildBundle.
type testRecord struct {
	typ uint16
	val []byte
}

// buildBundle writes a bundle by hand from docs/bundle-format.md,
// independently of MarshalBundle, so that tests can also write bad ones.
func buildBundle(version uint16, recs ...testRecord) []byte {
	b := []byte("\x89BPFLSK\n")
	b = binary.LittleEndian.AppendUint16(b, version)
	b = binary.LittleEndian.AppendUint16(b, 0)
	for _, r := range recs {
		b = binary.LittleEndian.AppendUint16(b, r.typ)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(r.val)))
		b = append(b, r.val...)
	}
	return b
}

func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }

// fixtureBundleArtifact is the signed counter fixture with every optional
// bundle field set.
func fixtureBundleArtifact(tb testing.TB) *Artifact {
	tb.Helper()
	a := parseHeaderFixture(tb, "counter.signed.lskel.h")
	a.KeyringID = -3
	a.Certs = [][]byte{readLskel(tb, "keys/TEST_ONLY_signing_cert.der")}
	a.Extensions = []Extension{{Type: 0x0100, Value: []byte("note")}}
	return a
}

// ignoreSource compares artifacts regardless of the format they came from.
var ignoreSource = cmpopts.IgnoreFields(Artifact{}, "Source")

func TestBundleRoundTrip(t *testing.T) {
	arts := map[string]*Artifact{"all fields": fixtureBundleArtifact(t)}
	for _, f := range headerFiles() {
		arts[f] = parseHeaderFixture(t, f)
	}
	for name, a := range arts {
		t.Run(name, func(t *testing.T) {
			b, err := a.MarshalBundle()
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseBundle(b)
			if err != nil {
				t.Fatal(err)
			}
			if got.Source != FormatBundle {
				t.Errorf("source %v, want bundle", got.Source)
			}
			if diff := cmp.Diff(a, got, ignoreSource); diff != "" {
				t.Errorf("round trip changed the artifact (-want +got):\n%s", diff)
			}
			again, err := got.MarshalBundle()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, again) {
				t.Errorf("MarshalBundle(ParseBundle(x)) != x")
			}
		})
	}
}

// TestBundleLayout pins the byte layout of docs/bundle-format.md: a bundle
// written by hand from the document parses to the fixture artifact and
// MarshalBundle writes exactly those bytes.
func TestBundleLayout(t *testing.T) {
	a := fixtureBundleArtifact(t)
	cert := a.Certs[0]
	var globals []byte
	globals = binary.LittleEndian.AppendUint16(globals, 3)
	globals = append(globals, "bss"...)
	globals = append(globals, le32(12)...)
	globals = append(globals, make([]byte, 12)...)
	want := buildBundle(1,
		testRecord{0x0007, append(le32(uint32(len(cert))), cert...)},
		testRecord{0x0008, globals},
		testRecord{0x0100, []byte("note")},
		testRecord{0x8001, []byte("counter_lskel")},
		testRecord{0x8002, a.Insns},
		testRecord{0x8003, a.Data},
		testRecord{0x8004, a.Signature},
		testRecord{0x8005, a.ExclHash},
		testRecord{0x8006, []byte{0xfd, 0xff, 0xff, 0xff}},
		testRecord{0xffff, nil},
	)
	got, err := a.MarshalBundle()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("MarshalBundle differs from the documented layout (%d vs %d bytes)", len(got), len(want))
	}
}

func TestParseBundleRejects(t *testing.T) {
	a := parseHeaderFixture(t, "counter.signed.lskel.h")
	name := testRecord{0x8001, []byte("counter_lskel")}
	insns := testRecord{0x8002, a.Insns}
	data := testRecord{0x8003, a.Data}
	sig := testRecord{0x8004, a.Signature}
	excl := testRecord{0x8005, a.ExclHash}
	keyring := testRecord{0x8006, le32(0)}
	end := testRecord{0xffff, nil}
	valid := buildBundle(1, name, insns, data, sig, excl, keyring, end)
	if _, err := ParseBundle(valid); err != nil {
		t.Fatalf("hand-written valid bundle: %v", err)
	}
	extensions := make([]testRecord, 0, MaxExtensions+1)
	for i := 0; i <= MaxExtensions; i++ {
		extensions = append(extensions, testRecord{uint16(0x100 + i), nil})
	}
	cases := []struct {
		name string
		src  []byte
		want string
		is   error
	}{
		{"empty", nil, "header: 0 bytes", ErrMalformed},
		{"bad magic", append([]byte("\x89BPFLSX\n"), valid[8:]...), "magic", ErrUnknownFormat},
		{"version 2", buildBundle(2, name, insns, data, keyring, end), "version 2, want 1", ErrMalformed},
		{"reserved set", append(append([]byte{}, valid[:10]...), append([]byte{1, 0}, valid[12:]...)...), "reserved: 0x0001", ErrMalformed},
		{"truncated", valid[:len(valid)-1], "truncated: no end record", ErrMalformed},
		{"no end record", buildBundle(1, name, insns, data, keyring), "truncated: no end record", ErrMalformed},
		{"trailing bytes", append(append([]byte{}, valid...), 0), "1 trailing bytes after the end record", ErrMalformed},
		{"record past end", valid[:len(valid)-6-2], "length 4 runs past the end", ErrMalformed},
		{"end with value", buildBundle(1, name, insns, data, keyring, testRecord{0xffff, []byte{0}}), "record 0xffff (end): length 1, want 0", ErrMalformed},
		{"duplicate", buildBundle(1, name, insns, insns, data, keyring, end), "record 0x8002 (insns): duplicate record", ErrMalformed},
		{"out of order", buildBundle(1, insns, name, data, keyring, end), "record 0x8001 (name): out of order after 0x8002", ErrMalformed},
		{"unknown critical", buildBundle(1, name, insns, data, keyring, testRecord{0x8040, nil}, end), "record 0x8040 (unknown): unknown critical record", ErrMalformed},
		{"type zero", buildBundle(1, testRecord{0, nil}, name, insns, data, keyring, end), "reserved record type 0", ErrMalformed},
		{"too many extensions", buildBundle(1, append(extensions, name, insns, data, keyring, end)...), "more than 16 unknown records", ErrTooLarge},
		{"oversize extension", buildBundle(1, testRecord{0x100, make([]byte, MaxExtensionSize+1)}, name, insns, data, keyring, end), "size 65537 exceeds limit 65536", ErrTooLarge},
		{"missing insns", buildBundle(1, name, data, keyring, end), "record 0x8002 (insns): required record missing", ErrMalformed},
		{"missing keyring", buildBundle(1, name, insns, data, end), "record 0x8006 (keyring_id): required record missing", ErrMalformed},
		{"oversize signature", buildBundle(1, name, insns, data, testRecord{0x8004, make([]byte, 8193)}, excl, keyring, end), "size 8193 exceeds limit 8192", ErrTooLarge},
		{"oversize insns", buildBundle(1, name, testRecord{0x8002, make([]byte, MaxInsnsSize+8)}, data, keyring, end), "exceeds limit 1048576", ErrTooLarge},
		{"oversize name", buildBundle(1, testRecord{0x8001, bytes.Repeat([]byte("a"), 129)}, insns, data, keyring, end), "size 129 exceeds limit 128", ErrTooLarge},
		{"bad name", buildBundle(1, testRecord{0x8001, []byte("a b")}, insns, data, keyring, end), "name: byte 1 (0x20) not in", ErrMalformed},
		{"empty signature", buildBundle(1, name, insns, data, testRecord{0x8004, nil}, excl, keyring, end), "empty signature", ErrMalformed},
		{"signature without excl hash", buildBundle(1, name, insns, data, sig, keyring, end), "excl_hash: missing for a signed artifact", ErrMalformed},
		{"odd insns", buildBundle(1, name, testRecord{0x8002, a.Insns[:len(a.Insns)-1]}, data, keyring, end), "insns: length 1671 is not a multiple of 8", ErrMalformed},
		{"empty data", buildBundle(1, name, insns, testRecord{0x8003, nil}, keyring, end), "data: missing or empty", ErrMalformed},
		{"short excl hash", buildBundle(1, name, insns, data, sig, testRecord{0x8005, a.ExclHash[:31]}, keyring, end), "length 31, want 32", ErrMalformed},
		{"short keyring", buildBundle(1, name, insns, data, testRecord{0x8006, []byte{0, 0, 0}}, end), "length 3, want 4", ErrMalformed},
		{"cert not DER", buildBundle(1, testRecord{0x0007, append(le32(3), 1, 2, 3)}, name, insns, data, keyring, end), "certificate 0: not a DER SEQUENCE", ErrMalformed},
		{"cert length past record", buildBundle(1, testRecord{0x0007, le32(9)}, name, insns, data, keyring, end), "certificate length 9 runs past the record", ErrMalformed},
		{"empty certs", buildBundle(1, testRecord{0x0007, nil}, name, insns, data, keyring, end), "no certificates", ErrMalformed},
		{"globals truncated", buildBundle(1, testRecord{0x0008, []byte{3, 0, 'b', 's', 's', 0}}, name, insns, data, keyring, end), "truncated data length", ErrMalformed},
		{"globals bad name", buildBundle(1, testRecord{0x0008, append([]byte{1, 0, '-'}, le32(0)...)}, name, insns, data, keyring, end), "is not a C identifier", ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseBundle(tc.src)
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, tc.is) || !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want %v containing %q", err, tc.is, tc.want)
			}
		})
	}
}

func TestMarshalBundleRejects(t *testing.T) {
	cases := map[string]func(a *Artifact){
		"no name":            func(a *Artifact) { a.Name = "" },
		"odd insns":          func(a *Artifact) { a.Insns = a.Insns[:7] },
		"big signature":      func(a *Artifact) { a.Signature = make([]byte, MaxSignatureSize+1) },
		"critical extension": func(a *Artifact) { a.Extensions = []Extension{{Type: 0x8100}} },
		"known extension":    func(a *Artifact) { a.Extensions = []Extension{{Type: 0x0007}} },
		"duplicate global":   func(a *Artifact) { a.Globals = append(a.Globals, a.Globals...) },
		"bad cert":           func(a *Artifact) { a.Certs = [][]byte{{0x30, 5}} },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			a := parseHeaderFixture(t, "counter.signed.lskel.h")
			mutate(a)
			if _, err := a.MarshalBundle(); err == nil {
				t.Fatal("marshalled an invalid artifact")
			}
		})
	}
}

// BenchmarkParseBundle measures reading and re-encoding a full bundle.
func BenchmarkParseBundle(b *testing.B) {
	src, err := fixtureBundleArtifact(b).MarshalBundle()
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	for b.Loop() {
		a, err := ParseBundle(src)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := a.MarshalBundle(); err != nil {
			b.Fatal(err)
		}
	}
}
