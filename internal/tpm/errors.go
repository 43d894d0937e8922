package tpm

import "errors"

// A TPM kind this build cannot open, such as the in-process simulator in a
// binary built without cgo, is an error wrapping errors.ErrUnsupported.

// The device.
var (
	// ErrBadSpec reports an Open spec that names no known TPM kind.
	ErrBadSpec = errors.New("bad tpm spec")
	// ErrClosed reports use of a Device after Close.
	ErrClosed = errors.New("tpm device closed")
)

// PCRs.
var (
	// ErrBadDigests reports an Extend whose digest set does not match the
	// active banks exactly (a bank missing, an inactive bank given, or a
	// digest of the wrong length). Nothing was extended.
	ErrBadDigests = errors.New("digests do not match the active banks")
	// ErrBadPCR reports a PCR index outside the TPM's PCR range.
	ErrBadPCR = errors.New("bad pcr index")
	// ErrBankNotActive reports a request for a PCR bank the TPM has not
	// allocated.
	ErrBankNotActive = errors.New("bank not active")
)

// The attestation key.
var (
	// ErrAKStale reports a stored attestation key that does not belong to
	// this TPM's parent key (a different TPM, a changed endorsement seed,
	// or, for the simulator, a new process with new seeds).
	ErrAKStale = errors.New("stored attestation key does not belong to this tpm")
	// ErrParentMismatch reports that the persistent handle meant for the
	// AK's parent holds a key that is not the parent this package creates.
	ErrParentMismatch = errors.New("persistent handle holds a different key")
	// ErrBadAKBlob reports a stored attestation-key file that does not parse.
	ErrBadAKBlob = errors.New("bad attestation key blob")
)

// Quotes.
var (
	// ErrBadQuoteRequest reports Quote arguments that cannot make a quote: no
	// qualifying data or too much, no PCRs or banks, duplicates.
	ErrBadQuoteRequest = errors.New("bad quote request")
	// ErrPCRChanged reports that the PCRs kept changing between the read and
	// the quote, so no consistent pair could be produced.
	ErrPCRChanged = errors.New("pcrs changed during quote")
)
