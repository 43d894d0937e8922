package bootchain

import (
	"crypto"
	"fmt"
	"strings"
)

// Reason says why Verify refused a firmware log. Each Reason is also an
// error value, so callers branch with errors.Is(err, bootchain.OtherBoot);
// errors.As with *Error gives the bank, PCRs and event concerned.
type Reason string

// The reasons Verify refuses a log for.
const (
	// BadOptions: the Options or the quoted values are unusable (an agent
	// PCR among the boot PCRs, a PCR index out of range, a quoted value of
	// the wrong size). A caller error, not the log's.
	BadOptions Reason = "bad options"
	// Malformed: the bytes are not a TCG PC Client event log (SHA-1
	// TCG_PCR_EVENT or crypto-agile TCG_PCR_EVENT2 records), an event
	// lacks the digest of a bank the log declares, or the log is larger
	// than MaxLogSize.
	Malformed Reason = "malformed log"
	// UnsupportedBank: a quoted bank the log carries no digests for, or a
	// bank this package cannot replay; or only SHA-1 without AllowSHA1.
	UnsupportedBank Reason = "unsupported bank"
	// MissingQuotedPCR: a boot PCR has no quoted value in a quoted bank,
	// or no bank was quoted at all.
	MissingQuotedPCR Reason = "missing quoted pcr"
	// DataMismatch: an event whose digest is defined as the hash of its
	// data (see Verify) carries data that does not hash to its digest: the
	// data was changed after it was measured.
	DataMismatch Reason = "event data mismatch"
	// ReplayMismatch: some boot PCRs replay to the quoted values, but at
	// least one does not (an event removed, added, reordered or its digest
	// changed), or a boot PCR without events is not at its reset value.
	ReplayMismatch Reason = "pcr replay mismatch"
	// OtherBoot: more than half of the boot PCRs the log has events for
	// replay to other values than the quoted ones: the log describes
	// another machine or another boot. (How many PCRs fail is a diagnosis
	// that tells a log from elsewhere from an edited one; both are refused.)
	OtherBoot Reason = "log from another boot"
)

// Error makes a Reason usable as a sentinel error.
func (r Reason) Error() string { return "bootchain: " + string(r) }

// Error is a refusal by Verify. It matches its Reason with errors.Is and
// unwraps to the underlying cause, if any.
type Error struct {
	Reason Reason
	// Bank is the PCR bank concerned, or zero.
	Bank crypto.Hash
	// PCRs are the PCR indices concerned, ascending, or nil.
	PCRs []int
	// Event is the event's position in the log (counting from 0, the
	// crypto-agile Spec ID header included), or -1.
	Event int
	// Detail says what is wrong, in words.
	Detail string
	// Err is the underlying cause (a go-attestation error), or nil.
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Reason.Error())
	if e.Bank != 0 {
		fmt.Fprintf(&b, ": %s", bankName(e.Bank))
	}
	if len(e.PCRs) == 1 {
		fmt.Fprintf(&b, ": pcr %d", e.PCRs[0])
	} else if len(e.PCRs) > 1 {
		fmt.Fprintf(&b, ": pcrs %v", e.PCRs)
	}
	if e.Event >= 0 {
		fmt.Fprintf(&b, ": event %d", e.Event)
	}
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Is reports whether target is this error's Reason.
func (e *Error) Is(target error) bool {
	r, ok := target.(Reason)
	return ok && r == e.Reason
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// refuse builds an *Error with no bank, PCR or event.
func refuse(r Reason, format string, args ...any) *Error {
	return &Error{Reason: r, Event: -1, Detail: fmt.Sprintf(format, args...)}
}

// bankName is the lower-case name TPM tools use for a bank ("sha256").
func bankName(h crypto.Hash) string {
	switch h {
	case crypto.SHA1:
		return "sha1"
	case crypto.SHA256:
		return "sha256"
	case crypto.SHA384:
		return "sha384"
	case crypto.SHA512:
		return "sha512"
	}
	return h.String()
}
