package journal

import (
	"crypto"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/bpfattest/bpfattest/cel"
)

// The journal's state.
var (
	// ErrLocked reports a state directory owned by another process.
	ErrLocked = errors.New("state directory locked by another process")
	// ErrBroken reports a Journal that stopped accepting appends after an
	// error left the PCR or the file in an unknown state. Close and Open
	// again to reconcile.
	ErrBroken = errors.New("journal broken, reopen to reconcile")
	// ErrClosed reports use after Close.
	ErrClosed = errors.New("journal closed")
)

// ErrCorrupt reports a log whose structure is wrong in a way no crash can
// produce: no boot header, a header for another boot or PCR.
var ErrCorrupt = errors.New("log corrupt")

// ErrPCRMismatch reports a log that does not replay to the PCR. Open wraps
// it in a *MismatchError.
var ErrPCRMismatch = errors.New("log does not replay to the pcr")

// MismatchError reports why Open refused to continue a log: the PCR equals
// neither the replay of the durable records nor the replay without the last
// one (or the log has both an unextended record and a damaged tail).
type MismatchError struct {
	Path string
	// Records is the number of valid records at the start of the file, and
	// ValidEnd the byte offset where they end.
	Records  int
	ValidEnd int64
	// TailLen is the number of bytes after the valid records, and TailErr
	// why they are not a valid record (nil when TailLen is 0).
	TailLen int64
	TailErr error
	// PCR holds the TPM's values, Replay the replay of all valid records,
	// ReplayWithoutLast the replay without the last (nil if there is no
	// record to leave out).
	PCR               map[crypto.Hash][]byte
	Replay            map[crypto.Hash][]byte
	ReplayWithoutLast map[crypto.Hash][]byte
}

func (e *MismatchError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d valid records (%d bytes)", e.Path, e.Records, e.ValidEnd)
	if e.TailLen > 0 {
		fmt.Fprintf(&b, ", then %d bytes that are not a record (%v)", e.TailLen, e.TailErr)
	}
	if e.TailLen > 0 && e.ReplayWithoutLast != nil && equalValues(e.PCR, e.ReplayWithoutLast) {
		b.WriteString(": the last record was never extended, yet bytes follow it (the write protocol never writes past an unextended record)")
	} else {
		b.WriteString(": pcr equals neither the replay of the records nor the replay without the last")
	}
	for _, h := range sortedBanks(e.PCR) {
		fmt.Fprintf(&b, "; %s pcr %s replay %s", cel.BankName(h), short(e.PCR[h]), short(e.Replay[h]))
		if e.ReplayWithoutLast != nil {
			fmt.Fprintf(&b, " without-last %s", short(e.ReplayWithoutLast[h]))
		}
	}
	return b.String()
}

// Unwrap returns ErrPCRMismatch.
func (e *MismatchError) Unwrap() error { return ErrPCRMismatch }

func short(v []byte) string {
	if v == nil {
		return "-"
	}
	s := hex.EncodeToString(v)
	if len(s) > 16 {
		return s[:16] + "…"
	}
	return s
}

func sortedBanks(m map[crypto.Hash][]byte) []crypto.Hash {
	hs := make([]crypto.Hash, 0, len(m))
	for h := range m {
		hs = append(hs, h)
	}
	sorted, ok := cel.SortBanks(hs)
	if !ok {
		return hs
	}
	return sorted
}
