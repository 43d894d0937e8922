package celinterop

import (
	"bytes"
	"crypto"
	_ "crypto/sha1"
	_ "crypto/sha256"
	_ "crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-eventlog/cel"
	pb "github.com/google/go-eventlog/proto/state"
	"github.com/google/go-eventlog/register"
)

var banks = map[string]struct {
	hash crypto.Hash
	alg  pb.HashAlgo
}{
	"sha1":   {crypto.SHA1, pb.HashAlgo_SHA1},
	"sha256": {crypto.SHA256, pb.HashAlgo_SHA256},
	"sha384": {crypto.SHA384, pb.HashAlgo_SHA384},
	"sha512": {crypto.SHA512, pb.HashAlgo_SHA512},
}

func bank(name string, pcr int, digest []byte) register.PCRBank {
	b := banks[name]
	return register.PCRBank{TCGHashAlgo: b.alg, PCRs: []register.PCR{{Index: pcr, Digest: digest, DigestAlg: b.hash}}}
}

// decode decodes a TLV log with go-eventlog and checks what its decoder
// leaves to the caller: every record is a PCR record of pcr, numbered from
// first on (each record's number is the previous one's plus its number of
// events: 1, or a batch record's events), and each digest is its bank's
// hash of the record's whole content TLV (type, length and value:
// docs/event-log.md §4).
func decode(t *testing.T, log []byte, pcr int, first uint64) cel.CEL {
	t.Helper()
	c, err := cel.DecodeToCEL(bytes.NewBuffer(log))
	if err != nil {
		t.Fatalf("go-eventlog: %v", err)
	}
	if c.MRType() != cel.PCRType && len(c.Records()) > 1 {
		t.Fatalf("register type %v, want PCR", c.MRType())
	}
	next := first
	for i, r := range c.Records() {
		if r.RecNum != next || int(r.Index) != pcr || r.IndexType != uint8(cel.PCRType) {
			t.Fatalf("record %d: recnum %d (want %d), index %d (type %d)", i, r.RecNum, next, r.Index, r.IndexType)
		}
		next += batchEvents(t, r.Content)
		if len(r.Digests) == 0 {
			t.Fatalf("record %d: no digests", r.RecNum)
		}
		content, err := r.Content.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		for h, d := range r.Digests {
			x := h.New()
			x.Write(content)
			if !bytes.Equal(x.Sum(nil), d) {
				t.Fatalf("record %d: %v digest is not the hash of the content", r.RecNum, h)
			}
		}
	}
	return c
}

// TestAgentLogReplays: go-eventlog decodes the log of a real agent on
// swtpm (four banks allocated) and replays it to the PCR values the TPM
// held, in every bank; a changed digest or a dropped record does not
// replay.
func TestAgentLogReplays(t *testing.T) {
	log, err := os.ReadFile(filepath.Join("testdata", "agent-swtpm.cel"))
	if err != nil {
		t.Fatal(err)
	}
	js, err := os.ReadFile(filepath.Join("testdata", "pcrs.json"))
	if err != nil {
		t.Fatal(err)
	}
	var want struct {
		PCR     int
		Records int
		Banks   map[string]string
	}
	if err := json.Unmarshal(js, &want); err != nil {
		t.Fatal(err)
	}
	c := decode(t, log, want.PCR, 0)
	if n := len(c.Records()); n != want.Records {
		t.Fatalf("go-eventlog decodes %d records, the agent wrote %d", n, want.Records)
	}
	if len(want.Banks) != len(banks) {
		t.Fatalf("banks %v, want all of %d", want.Banks, len(banks))
	}
	for name, v := range want.Banks {
		digest, err := hex.DecodeString(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Replay(bank(name, want.PCR, digest)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		t.Logf("%s: %d records replay to %s", name, len(c.Records()), v)
	}

	// Negative controls: the replay is not vacuous.
	digest, _ := hex.DecodeString(want.Banks["sha256"])
	short := decode(t, log[:recordEnd(t, log, len(c.Records())-1)], want.PCR, 0)
	if err := short.Replay(bank("sha256", want.PCR, digest)); err == nil {
		t.Error("the log without its last record replays")
	}
	c.Records()[1].Digests[crypto.SHA256][0] ^= 1
	if err := c.Replay(bank("sha256", want.PCR, digest)); err == nil {
		t.Error("a changed digest replays")
	}
}

// batchEvents returns the number of events a record's content carries:
// the events of a bpfattest batch (content type 0xB1, kind 0x04: a run of
// nested content TLVs, docs/event-log.md), 1 for any other record. It is
// written here from the format, not taken from the bpfattest package.
func batchEvents(t *testing.T, content cel.TLV) uint64 {
	t.Helper()
	v := content.Value
	if content.Type != 0xB1 || len(v) < 5 || v[0] != 0x04 {
		return 1
	}
	v = v[5:]
	n := uint64(0)
	for len(v) > 0 {
		if len(v) < 10 {
			t.Fatalf("batch event %d: %d bytes left", n, len(v))
		}
		l := int(v[6])<<24 | int(v[7])<<16 | int(v[8])<<8 | int(v[9])
		if 10+l > len(v) {
			t.Fatalf("batch event %d: length %d, %d bytes left", n, l, len(v)-10)
		}
		v = v[10+l:]
		n++
	}
	return n
}

// tlv appends one TLV: type, big-endian u32 length, value.
func tlv(b []byte, typ byte, v []byte) []byte {
	n := len(v)
	return append(append(b, typ, byte(n>>24), byte(n>>16), byte(n>>8), byte(n)), v...)
}

// record encodes a CEL record by hand (docs/event-log.md §2): recnum,
// pcr, the digests of content (an already encoded content TLV) in every
// bank, content.
func record(recnum uint64, pcr byte, content []byte) []byte {
	var rn [8]byte
	for i := range rn {
		rn[i] = byte(recnum >> (56 - 8*i))
	}
	var digests []byte
	for _, a := range []struct {
		id byte
		h  crypto.Hash
	}{{0x04, crypto.SHA1}, {0x0B, crypto.SHA256}, {0x0C, crypto.SHA384}, {0x0D, crypto.SHA512}} {
		x := a.h.New()
		x.Write(content)
		digests = tlv(digests, a.id, x.Sum(nil))
	}
	b := tlv(nil, 0, rn[:])
	b = tlv(b, 1, []byte{pcr})
	b = tlv(b, 3, digests)
	return append(b, content...)
}

// contentTLV is a bpfattest content field: top-level type, then the kind's
// TLV holding v.
func contentTLV(typ, kind byte, v []byte) []byte { return tlv(nil, typ, tlv(nil, kind, v)) }

// TestBatchReplays: go-eventlog decodes a log with a bpfattest batch record
// (three events in one record, extended once) between plain records, and
// replays it, from all-zero values, to the extend chain computed here.
func TestBatchReplays(t *testing.T) {
	const pcr = 14
	events := append(append(contentTLV(0xB0, 0x01, []byte("measurement a")),
		contentTLV(0xB0, 0x01, []byte("measurement b"))...),
		contentTLV(0xB0, 0x02, []byte("result a"))...)
	contents := [][]byte{
		contentTLV(0xB1, 0x02, []byte("boot header")),
		contentTLV(0xB1, 0x04, events), // a batch of 3: records 1, 2 and 3
		contentTLV(0xB0, 0x02, []byte("result b")),
	}
	nums := []uint64{0, 1, 4}
	var log []byte
	for i, c := range contents {
		log = append(log, record(nums[i], pcr, c)...)
	}
	c := decode(t, log, pcr, 0)
	if n := len(c.Records()); n != 3 {
		t.Fatalf("go-eventlog decodes %d records, want 3", n)
	}
	for name, b := range banks {
		v := make([]byte, b.hash.Size())
		for _, content := range contents {
			x := b.hash.New()
			x.Write(content)
			y := b.hash.New()
			y.Write(v)
			y.Write(x.Sum(nil))
			v = y.Sum(nil)
		}
		if err := c.Replay(bank(name, pcr, v)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// The batch is one extend: replaying its events one by one is not the
	// same value.
	digest := func(h crypto.Hash, b []byte) []byte { x := h.New(); x.Write(b); return x.Sum(nil) }
	v := make([]byte, 32)
	for _, content := range [][]byte{contents[0], contentTLV(0xB0, 0x01, []byte("measurement a")), contentTLV(0xB0, 0x01, []byte("measurement b")),
		contentTLV(0xB0, 0x02, []byte("result a")), contents[2]} {
		v = digest(crypto.SHA256, append(slices.Clone(v), digest(crypto.SHA256, content)...))
	}
	if err := c.Replay(bank("sha256", pcr, v)); err == nil {
		t.Error("the batch's events extended one by one replay too")
	}
}

// recordEnd is the byte offset where the first n records of log end
// (each record: four TLVs, type byte and big-endian 32-bit length).
func recordEnd(t *testing.T, log []byte, n int) int {
	t.Helper()
	off := 0
	for range n * 4 {
		if off+5 > len(log) {
			t.Fatal("short log")
		}
		l := int(log[off+1])<<24 | int(log[off+2])<<16 | int(log[off+3])<<8 | int(log[off+4])
		off += 5 + l
	}
	return off
}

// TestQuotedEvidenceReplays: the logs of the attest package's captured
// evidence (an agent on the simulator, with loads, unloads, a refusal and
// unmeasured programs; ECC and RSA attestation keys) decode with
// go-eventlog and replay to the PCR values their TPM quote covers.
func TestQuotedEvidenceReplays(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "attest", "testdata", "evidence", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no captured evidence: %v", err)
	}
	names := map[crypto.Hash]string{}
	for n, b := range banks {
		names[b.hash] = n
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var captured struct {
				Evidence struct {
					Log        []byte
					FromRecord uint64
					PCR        int
					PCRs       []struct {
						Bank   crypto.Hash
						Index  int
						Digest []byte
					}
				}
			}
			if err := json.Unmarshal(b, &captured); err != nil {
				t.Fatal(err)
			}
			ev := captured.Evidence
			c := decode(t, ev.Log, ev.PCR, ev.FromRecord)
			if len(ev.PCRs) == 0 || ev.FromRecord != 0 {
				t.Fatalf("%d quoted values, log from %d", len(ev.PCRs), ev.FromRecord)
			}
			for _, v := range ev.PCRs {
				if err := c.Replay(bank(names[v.Bank], v.Index, v.Digest)); err != nil {
					t.Errorf("%s: %v", names[v.Bank], err)
				}
			}
		})
	}
}
