package cel

import (
	"bytes"
	"crypto"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"maps"
	"slices"
	"sync"
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
// The running values live in the Replayer itself (NewReplayer is one
// allocation, a Replayer made with Reset none), and the hash states that
// check the content digests are borrowed from a pool for each record and
// reset, not made per Replayer. It does not allocate per record. It is not
// safe for concurrent use.
type Replayer struct {
	banks [numBanks]replayBank
	nb    int // banks in use, banks[:nb], in canonical order
	n     int // records added
	next  uint64
	pcr   uint8
	vals  [numBanks][sha512.Size]byte // backing of banks[i].val
}

type replayBank struct {
	h    crypto.Hash
	size int // h.Size()
	i    int // the bank's index in canonicalBanks, its hash state's in contentHasher
}

// val returns the current value of the bank at position j.
func (rp *Replayer) val(j int) []byte { return rp.vals[j][:rp.banks[j].size:rp.banks[j].size] }

// NewReplayer starts a replay from start, the PCR values before the first
// record. Every bank of start must be a supported bank with a value of its
// hash's size.
func NewReplayer(start map[crypto.Hash][]byte) (*Replayer, error) {
	rp := new(Replayer)
	if err := rp.Reset(start); err != nil {
		return nil, err
	}
	return rp, nil
}

// Reset starts the replay over from start, with the checks of NewReplayer;
// on error the Replayer is left empty (it replays no bank, so every record
// fails). A zero Replayer that is Reset is one NewReplayer made: a caller
// can keep it in a variable of its own and off the heap.
func (rp *Replayer) Reset(start map[crypto.Hash][]byte) error {
	*rp = Replayer{}
	if len(start) == 0 {
		return fmt.Errorf("cel: replay: no starting pcr values")
	}
	var seen [numBanks]bool
	for h := range start {
		i, ok := bankIndex(h)
		if !ok {
			return fmt.Errorf("cel: replay: %w in starting values %v", ErrUnknownBank, slices.Collect(maps.Keys(start)))
		}
		seen[i] = true
	}
	for i, h := range canonicalBanks() {
		if !seen[i] {
			continue
		}
		v := start[h]
		if len(v) != h.Size() {
			*rp = Replayer{}
			return fmt.Errorf("cel: replay: starting %s value is %d bytes, want %d", BankName(h), len(v), h.Size())
		}
		rp.banks[rp.nb] = replayBank{h: h, size: h.Size(), i: i}
		copy(rp.vals[rp.nb][:], v)
		rp.nb++
	}
	return nil
}

// Add checks r and folds it into the running values. After an error the
// Replayer is unchanged and r was not applied.
func (rp *Replayer) Add(r *Record) error { return rp.add(r, rp.n) }

func (rp *Replayer) add(r *Record, index int) error {
	if rp.n > 0 {
		if r.RecNum != rp.next {
			return rp.fail(r, index, 0, ErrSequence, "recnum %d, want %d", r.RecNum, rp.next)
		}
		if r.PCR != rp.pcr {
			return rp.fail(r, index, 0, ErrPCRIndex, "pcr %d, log is on pcr %d", r.PCR, rp.pcr)
		}
	}
	next, err := r.NextRecNum()
	if err != nil {
		return rp.fail(r, index, 0, ErrSequence, "%v", err)
	}
	if len(r.Digests) != rp.nb {
		return rp.fail(r, index, 0, ErrBanks, "%d digests, replaying %d banks", len(r.Digests), rp.nb)
	}
	// Check every bank before changing any, so a failed record leaves the
	// running values as they were.
	c := hashers.Get().(*contentHasher)
	defer hashers.Put(c)
	for i := range rp.nb {
		b := &rp.banks[i]
		d := &r.Digests[i]
		if d.Hash != b.h {
			return rp.fail(r, index, b.h, ErrBanks, "digest %d is %s", i, BankName(d.Hash))
		}
		if !bytes.Equal(c.sum(c.at(b.i), r), d.Value) {
			return rp.fail(r, index, b.h, ErrDigestMismatch, "recorded %x", d.Value)
		}
	}
	for i := range rp.nb {
		extend(rp.banks[i].h, rp.val(i), r.Digests[i].Value)
	}
	if rp.n == 0 {
		rp.pcr = r.PCR
	}
	rp.n++
	rp.next = next
	return nil
}

// fail makes the *ReplayError for record r at index (out of line, so that
// a record that passes pays nothing for the formatting).
func (rp *Replayer) fail(r *Record, index int, h crypto.Hash, err error, format string, args ...any) error {
	return &ReplayError{Index: index, RecNum: r.RecNum, Bank: h, Err: err, Detail: fmt.Sprintf(format, args...)}
}

// hashers holds content hashers for replays to borrow: a hash state per
// bank costs an allocation to make and is only needed while a record is
// checked.
var hashers = sync.Pool{New: func() any { return new(contentHasher) }}

// Values returns a copy of the running PCR values.
func (rp *Replayer) Values() map[crypto.Hash][]byte {
	out := make(map[crypto.Hash][]byte, rp.nb)
	n := 0
	for _, b := range rp.banks[:rp.nb] {
		n += b.size
	}
	backing := make([]byte, 0, n) // one allocation for every value
	for j, b := range rp.banks[:rp.nb] {
		start := len(backing)
		backing = append(backing, rp.val(j)...)
		out[b.h] = backing[start:len(backing):len(backing)]
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
	if len(pcr) != rp.nb {
		return false
	}
	for j, b := range rp.banks[:rp.nb] {
		if v, ok := pcr[b.h]; !ok || !bytes.Equal(v, rp.val(j)) {
			return false
		}
	}
	return true
}

// Clone returns an independent copy of the replay state.
func (rp *Replayer) Clone() *Replayer {
	c := new(Replayer)
	*c = *rp // the values are in the struct: a copy is independent
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
