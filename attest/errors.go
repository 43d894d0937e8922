package attest

import (
	"fmt"
)

// Check names one verification step. Each Check is also an error value, so
// callers branch on a failed Verify with errors.Is(err, attest.NonceMismatch);
// errors.As with *VerifyError gives the record number and details.
type Check int

// The checks Verify makes, in the order it makes them.
const (
	// BadOptions: the VerifyOptions are unusable (no nonce, no pinned AK, a
	// State from another PCR). A caller error, not the evidence's.
	BadOptions Check = iota + 1
	// AKMismatch: the evidence's AK is not the pinned AK.
	AKMismatch
	// AKNotRestricted: the AK cannot be trusted to sign only TPM-made
	// structures (not a fixedTPM restricted signing key), or is of a type
	// or size this package does not accept.
	AKNotRestricted
	// BadSignature: the signature does not parse or does not verify over
	// the attestation structure with the AK.
	BadSignature
	// NotAQuote: the signed structure is not a TPMS_ATTEST of type
	// TPM_ST_ATTEST_QUOTE made by a TPM.
	NotAQuote
	// NonceMismatch: the quote's qualifying data does not answer the
	// verifier's nonce under the evidence's inclusion proof.
	NonceMismatch
	// PCRSelection: the quote covers other PCRs or banks than the agent's
	// PCR in exactly the banks the verifier requires.
	PCRSelection
	// PCRDigest: the PCR values the agent claims do not hash to the quote's
	// PCR digest.
	PCRDigest
	// ResetRegressed: the TPM's resetCount is lower than the State's.
	ResetRegressed
	// RestartRegressed: within one boot, the restartCount went backwards.
	RestartRegressed
	// ClockRegressed: within one boot, the TPM clock went backwards.
	ClockRegressed
	// LogDecode: the log bytes are not canonical CEL TLV records.
	LogDecode
	// MissingBootHeader: a new boot's log does not start at record 0 with a
	// boot header (also returned when the TPM was reset since the State and
	// the log continues an older boot).
	MissingBootHeader
	// BootMismatch: the boot header or an agent-start record names other
	// TPM counters or another PCR than the quote.
	BootMismatch
	// RecordGap: record numbers do not continue from the State (or from 0),
	// or skip within the log.
	RecordGap
	// WrongPCR: a record is for another PCR than the evidence's.
	WrongPCR
	// BankMismatch: a record's digests are not for the replayed banks.
	BankMismatch
	// DigestMismatch: a record's digest is not the hash of its content.
	DigestMismatch
	// StartMismatch: a new boot's starting PCR values are not the values the
	// verifier expects (VerifyOptions.StartingValues, or the reset value).
	StartMismatch
	// ReplayMismatch: the log replays to other PCR values than the quoted.
	ReplayMismatch
	// RecordContent: a replayed record's content does not parse, or does
	// not fit the records before it (a load result for no pending
	// measurement, an unload of an unknown program).
	RecordContent
	// BootChain: the evidence's firmware log does not replay to the quoted
	// boot PCRs (the error wraps bootchain's *Error, so errors.Is with a
	// bootchain.Reason tells why), or the boot PCRs no longer hold the
	// values the boot chain verified for this boot replayed to. Verify
	// makes this check after the clock's and before the log's; it is
	// listed last to keep the other values.
	BootChain
)

func checkNames() []string {
	return []string{
		BadOptions:        "bad options",
		AKMismatch:        "ak mismatch",
		AKNotRestricted:   "ak not a restricted signing key",
		BadSignature:      "bad signature",
		NotAQuote:         "not a quote",
		NonceMismatch:     "nonce mismatch",
		PCRSelection:      "pcr selection",
		PCRDigest:         "pcr digest",
		ResetRegressed:    "reset count regressed",
		RestartRegressed:  "restart count regressed",
		ClockRegressed:    "clock regressed",
		LogDecode:         "log decode",
		MissingBootHeader: "missing boot header",
		BootMismatch:      "boot mismatch",
		RecordGap:         "record gap",
		WrongPCR:          "wrong pcr",
		BankMismatch:      "bank mismatch",
		DigestMismatch:    "digest mismatch",
		StartMismatch:     "start mismatch",
		ReplayMismatch:    "replay mismatch",
		RecordContent:     "record content",
		BootChain:         "boot chain",
	}
}

// String returns the check's name.
func (c Check) String() string {
	if names := checkNames(); c > 0 && int(c) < len(names) {
		return names[c]
	}
	return fmt.Sprintf("check(%d)", int(c))
}

// Error makes a Check usable as a sentinel error.
func (c Check) Error() string { return c.String() }

// VerifyError reports the check that failed. It matches its Check with
// errors.Is and unwraps to the underlying cause, if any.
type VerifyError struct {
	Check Check
	// Record is the record number concerned, when HasRecord is set.
	Record    uint64
	HasRecord bool
	// Detail says what is wrong, in words.
	Detail string
	// Err is the underlying cause (a cel, measure or crypto error), or nil.
	Err error
}

func (e *VerifyError) Error() string {
	s := "attest/verify: " + e.Check.String()
	if e.HasRecord {
		s += fmt.Sprintf(" at record %d", e.Record)
	}
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Is reports whether target is e's Check.
func (e *VerifyError) Is(target error) bool {
	c, ok := target.(Check)
	return ok && c == e.Check
}

func (e *VerifyError) Unwrap() error { return e.Err }

// fail returns a *VerifyError without a record number.
func fail(c Check, err error, format string, args ...any) error {
	return &VerifyError{Check: c, Detail: fmt.Sprintf(format, args...), Err: err}
}

// failAt returns a *VerifyError naming record rec.
func failAt(c Check, rec uint64, err error, format string, args ...any) error {
	return &VerifyError{Check: c, Record: rec, HasRecord: true, Detail: fmt.Sprintf(format, args...), Err: err}
}
