package cel

import (
	"bytes"
	"crypto"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"hash"
)

// Replayer replays records one at a time, keeping the running PCR values:
// it folds records into the starting values, one per bank. Each record must
// carry a digest for exactly the banks of the start, each digest must be its
// bank's hash of the record's content field, each record's number must be
// the previous record's plus its number of events (1 for a plain record,
// the number of its events for a batch: batch.go), and all records must be on the PCR of the first. A failure
// is a *ReplayError naming the record and the reason.
//
// Extending is PCR_new = H(PCR_old ‖ digest), as TPM2_PCR_Extend does (TPM 2.0
// Library Part 1 §17.3).
//
// It does not allocate per record. It is not safe for concurrent use.
type Replayer struct {
	banks   []replayBank
	n       int // records added
	next    uint64
	pcr     uint8
	content contentHasher
}

type replayBank struct {
	c    hash.Hash // for content digests
	val  []byte    // current PCR value, len = Size
	size int
	h    crypto.Hash
}

// NewReplayer starts a replay from start, the PCR values before the first
// record. Every bank of start must be a supported bank with a value of its
// hash's size.
func NewReplayer(start map[crypto.Hash][]byte) (*Replayer, error) {
	if len(start) == 0 {
		return nil, fmt.Errorf("cel: replay: no starting pcr values")
	}
	hs := make([]crypto.Hash, 0, len(start))
	for h := range start {
		hs = append(hs, h)
	}
	sorted, ok := SortBanks(hs)
	if !ok {
		return nil, fmt.Errorf("cel: replay: %w in starting values %v", ErrUnknownBank, hs)
	}
	rp := &Replayer{banks: make([]replayBank, len(sorted))}
	for i, h := range sorted {
		v := start[h]
		if len(v) != h.Size() {
			return nil, fmt.Errorf("cel: replay: starting %s value is %d bytes, want %d", BankName(h), len(v), h.Size())
		}
		c, _ := rp.content.get(h)
		rp.banks[i] = replayBank{c: c, val: bytes.Clone(v), size: h.Size(), h: h}
	}
	return rp, nil
}

// Add checks r and folds it into the running values. After an error the
// Replayer is unchanged and r was not applied.
func (rp *Replayer) Add(r *Record) error { return rp.add(r, rp.n) }

func (rp *Replayer) add(r *Record, index int) error {
	fail := func(h crypto.Hash, err error, format string, args ...any) error {
		return &ReplayError{Index: index, RecNum: r.RecNum, Bank: h, Err: err, Detail: fmt.Sprintf(format, args...)}
	}
	if rp.n > 0 {
		if r.RecNum != rp.next {
			return fail(0, ErrSequence, "recnum %d, want %d", r.RecNum, rp.next)
		}
		if r.PCR != rp.pcr {
			return fail(0, ErrPCRIndex, "pcr %d, log is on pcr %d", r.PCR, rp.pcr)
		}
	}
	next, err := r.NextRecNum()
	if err != nil {
		return fail(0, ErrSequence, "%v", err)
	}
	if len(r.Digests) != len(rp.banks) {
		return fail(0, ErrBanks, "%d digests, replaying %d banks", len(r.Digests), len(rp.banks))
	}
	// Check every bank before changing any, so a failed record leaves the
	// running values as they were.
	for i := range rp.banks {
		b := &rp.banks[i]
		d := &r.Digests[i]
		if d.Hash != b.h {
			return fail(b.h, ErrBanks, "digest %d is %s", i, BankName(d.Hash))
		}
		if !bytes.Equal(rp.content.sum(b.c, r), d.Value) {
			return fail(b.h, ErrDigestMismatch, "recorded %x", d.Value)
		}
	}
	for i := range rp.banks {
		b := &rp.banks[i]
		extend(b.h, b.val, r.Digests[i].Value)
	}
	if rp.n == 0 {
		rp.pcr = r.PCR
	}
	rp.n++
	rp.next = next
	return nil
}

// Values returns a copy of the running PCR values.
func (rp *Replayer) Values() map[crypto.Hash][]byte {
	out := make(map[crypto.Hash][]byte, len(rp.banks))
	for _, b := range rp.banks {
		out[b.h] = bytes.Clone(b.val)
	}
	return out
}

// Next returns the record number the next record must carry: the last
// record's plus its number of events (0 before any record).
func (rp *Replayer) Next() uint64 { return rp.next }

// Count returns the number of records added.
func (rp *Replayer) Count() int { return rp.n }

// Equal reports whether the running values equal pcr in every replayed bank
// and pcr has no other bank.
func (rp *Replayer) Equal(pcr map[crypto.Hash][]byte) bool {
	if len(pcr) != len(rp.banks) {
		return false
	}
	for _, b := range rp.banks {
		if v, ok := pcr[b.h]; !ok || !bytes.Equal(v, b.val) {
			return false
		}
	}
	return true
}

// Clone returns an independent copy of the replay state.
func (rp *Replayer) Clone() *Replayer {
	c := &Replayer{banks: make([]replayBank, len(rp.banks)), n: rp.n, next: rp.next, pcr: rp.pcr}
	for i, b := range rp.banks {
		cb, _ := c.content.get(b.h)
		c.banks[i] = replayBank{c: cb, val: bytes.Clone(b.val), size: b.size, h: b.h}
	}
	return c
}

// extend replaces val, a PCR value of bank h, with h(val ‖ digest), with
// the one-shot hash functions of the four banks (nothing on the heap);
// digest has h's size.
func extend(h crypto.Hash, val, digest []byte) {
	var buf [2 * sha512.Size]byte
	in := append(append(buf[:0], val...), digest...)
	switch h {
	case crypto.SHA1:
		d := sha1.Sum(in)
		copy(val, d[:])
	case crypto.SHA256:
		d := sha256.Sum256(in)
		copy(val, d[:])
	case crypto.SHA384:
		d := sha512.Sum384(in)
		copy(val, d[:])
	case crypto.SHA512:
		d := sha512.Sum512(in)
		copy(val, d[:])
	default:
		// The Replayer holds supported banks only (NewReplayer).
		panic("cel: extend of unsupported bank " + BankName(h))
	}
}
