package cel

import (
	"crypto"
	"errors"
	"fmt"
)

// Conditions callers branch on: a DecodeError wraps ErrTruncated or
// ErrMalformed, a ReplayError one of the replay conditions below it.
var (
	// ErrTruncated reports input that ends inside a record: a torn tail.
	ErrTruncated = errors.New("truncated")
	// ErrMalformed reports a record that is not in the canonical encoding:
	// an unexpected field type, a wrong length, an unknown content type or
	// bank, digests out of order or duplicated.
	ErrMalformed = errors.New("malformed")
)

// DecodeError reports where and why decoding stopped.
type DecodeError struct {
	// Index is the position of the failing record in the input, from 0.
	Index int
	// RecNum is the failing record's number, when HasRecNum is set.
	RecNum    uint64
	HasRecNum bool
	// RecordOffset is the byte offset where the failing record starts: the
	// input before it decoded cleanly.
	RecordOffset int64
	// Offset is the byte offset of the field found wrong.
	Offset int64
	// Field names the field: "recnum", "pcr", "digests", "digest sha256",
	// "content", "batch" (the content of a batch record: Detail names the
	// event).
	Field string
	// Detail says what is wrong with the field.
	Detail string
	// Err is ErrTruncated or ErrMalformed.
	Err error
}

func (e *DecodeError) Error() string {
	rec := fmt.Sprintf("record %d", e.Index)
	if e.HasRecNum {
		rec = fmt.Sprintf("record %d (recnum %d)", e.Index, e.RecNum)
	}
	return fmt.Sprintf("cel: decode %s at offset %d: %s at offset %d: %s: %v",
		rec, e.RecordOffset, e.Field, e.Offset, e.Detail, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

// Replay conditions.
var (
	// ErrDigestMismatch reports a record digest that is not the hash of the
	// record's content.
	ErrDigestMismatch = errors.New("digest does not match content")
	// ErrSequence reports a record number that does not follow the previous
	// record's.
	ErrSequence = errors.New("record number out of sequence")
	// ErrBanks reports a record whose banks differ from the replayed banks.
	ErrBanks = errors.New("banks differ")
	// ErrPCRIndex reports a record for a different PCR than the log's.
	ErrPCRIndex = errors.New("pcr index differs")
)

// ReplayError reports the record that stopped a replay.
type ReplayError struct {
	// Index is the record's position in the replayed slice, from 0.
	Index  int
	RecNum uint64
	// Bank is the bank concerned, or 0 when the problem is not per bank.
	Bank crypto.Hash
	// Detail says what is wrong.
	Detail string
	// Err is ErrDigestMismatch, ErrSequence, ErrBanks or ErrPCRIndex.
	Err error
}

func (e *ReplayError) Error() string {
	bank := ""
	if e.Bank != 0 {
		bank = " " + BankName(e.Bank)
	}
	return fmt.Sprintf("cel: replay record %d (recnum %d)%s: %s: %v", e.Index, e.RecNum, bank, e.Detail, e.Err)
}

func (e *ReplayError) Unwrap() error { return e.Err }

// ErrUnknownBank reports a hash that no supported PCR bank uses.
var ErrUnknownBank = errors.New("unsupported bank")
