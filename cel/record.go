package cel

import (
	"bytes"
	"crypto"
	"encoding/binary"
	"fmt"
	"hash"
)

// Record is one CEL record: a measured event extended into one PCR.
type Record struct {
	// RecNum is the record's sequence number; a log numbers its records
	// consecutively.
	RecNum uint64
	// PCR is the index of the PCR the record was extended into.
	PCR uint8
	// Digests holds one digest per active PCR bank, in ascending TPM_ALG_ID
	// order, each the bank's hash of the record's content field.
	Digests []Digest
	// Type says what Content is.
	Type ContentType
	// Content is the content bytes: opaque for BPF records, an encoded
	// AgentStartInfo, BootInfo or RecoveryInfo for management records.
	Content []byte
}

// Digest is one bank's digest of a record.
type Digest struct {
	Hash  crypto.Hash
	Value []byte
}

// Field sizes of the canonical TLV encoding.
const (
	tlvHeaderLen  = 5 // type u8, length u32
	recnumLen     = 8
	pcrLen        = 1
	contentHdrLen = 2 * tlvHeaderLen // content TLV header + kind TLV header
)

// TLV types of the record fields (CEL specification, TLV encoding).
const (
	tlvRecNum  = 0
	tlvPCR     = 1
	tlvDigests = 3
)

// NewRecord builds a record whose digests are the hash of its content field
// in every bank of banks. It returns an error for an unknown content type,
// an unsupported bank or an empty bank list.
func NewRecord(recnum uint64, pcr uint8, banks []crypto.Hash, t ContentType, content []byte) (Record, error) {
	if !t.Known() {
		return Record{}, fmt.Errorf("cel: new record: unknown content type %#04x", uint16(t))
	}
	sorted, ok := SortBanks(banks)
	if !ok {
		return Record{}, fmt.Errorf("cel: new record: unsupported bank in %v", banks)
	}
	if len(sorted) == 0 {
		return Record{}, fmt.Errorf("cel: new record: no banks")
	}
	if uint64(len(content)) > maxContentLen {
		return Record{}, fmt.Errorf("cel: new record: content is %d bytes, limit %d", len(content), maxContentLen)
	}
	r := Record{RecNum: recnum, PCR: pcr, Type: t, Content: content}
	r.Digests = make([]Digest, len(sorted))
	for i, h := range sorted {
		r.Digests[i] = Digest{Hash: h, Value: ContentDigest(h, t, content)}
	}
	return r, nil
}

// maxContentLen keeps the content field's u32 length (content plus the kind
// header) from overflowing.
const maxContentLen = 1<<32 - 1 - tlvHeaderLen

// ContentDigest returns h of the content field of a record with type t and
// content: the bytes type(t>>8) ‖ u32(len+5) ‖ kind(t) ‖ u32(len) ‖ content.
func ContentDigest(h crypto.Hash, t ContentType, content []byte) []byte {
	d := h.New()
	var hdr [contentHdrLen]byte
	putContentHeader(hdr[:], t, len(content))
	d.Write(hdr[:])
	d.Write(content)
	return d.Sum(nil)
}

// putContentHeader writes the two TLV headers that precede the content bytes.
func putContentHeader(b []byte, t ContentType, n int) {
	b[0] = byte(t >> 8)
	binary.BigEndian.PutUint32(b[1:5], uint32(n+tlvHeaderLen))
	b[5] = byte(t)
	binary.BigEndian.PutUint32(b[6:10], uint32(n))
}

// Digest returns the record's digest in bank h.
func (r *Record) Digest(h crypto.Hash) ([]byte, bool) {
	for _, d := range r.Digests {
		if d.Hash == h {
			return d.Value, true
		}
	}
	return nil, false
}

// Banks returns the banks the record carries a digest for.
func (r *Record) Banks() []crypto.Hash {
	out := make([]crypto.Hash, len(r.Digests))
	for i, d := range r.Digests {
		out[i] = d.Hash
	}
	return out
}

// VerifyDigests reports whether every digest of r is its bank's hash of r's
// content field. It returns ErrDigestMismatch naming the first bank that
// differs.
func (r *Record) VerifyDigests() error {
	c := hashers.Get().(*contentHasher)
	defer hashers.Put(c)
	for _, d := range r.Digests {
		i, ok := bankIndex(d.Hash)
		if !ok {
			return fmt.Errorf("cel: verify record %d: %w: %v", r.RecNum, ErrUnknownBank, d.Hash)
		}
		if !bytes.Equal(c.sum(c.at(i), r), d.Value) {
			return fmt.Errorf("cel: verify record %d: %s: %w", r.RecNum, BankName(d.Hash), ErrDigestMismatch)
		}
	}
	return nil
}

// contentHasher hashes content fields without allocating once its hashes
// exist: one hash state per bank, reset before each use, and one output
// buffer. Replays borrow them from a pool (hashers).
type contentHasher struct {
	hs  [numBanks]hash.Hash
	out [64]byte
	hdr [contentHdrLen]byte
}

// at returns the hash state of the bank at index i of canonicalBanks,
// made on first use.
func (c *contentHasher) at(i int) hash.Hash {
	if c.hs[i] == nil {
		c.hs[i] = canonicalBanks()[i].New()
	}
	return c.hs[i]
}

// sum returns the hash of r's content field; the result is valid until the
// next call.
func (c *contentHasher) sum(h hash.Hash, r *Record) []byte {
	h.Reset()
	putContentHeader(c.hdr[:], r.Type, len(r.Content))
	h.Write(c.hdr[:])
	h.Write(r.Content)
	return h.Sum(c.out[:0])
}
