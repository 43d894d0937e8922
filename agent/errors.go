package agent

import (
	"errors"

	"github.com/bpfattest/bpfattest/evidence"
)

// Conditions the API layer branches on (and maps to status codes).
var (
	// ErrRefused: the load policy refused the artifact, or the agent has no
	// kernel access (Config.NoKernel). The attempt is measured and logged
	// with a "refused" result; no bpf() call was made.
	ErrRefused = errors.New("refused")
	// ErrUnavailable: the TPM or the event log failed, so nothing could be
	// recorded; nothing was loaded.
	ErrUnavailable = errors.New("measurement unavailable")
	// ErrLogMismatch: the event log no longer replays to the PCR (another
	// writer extended it): nothing can be recorded, so every load is
	// refused, until the next boot starts a new log. Nothing was measured
	// or loaded. The agent keeps serving its log and quotes, which show
	// verifiers the mismatch.
	ErrLogMismatch = errors.New("the event log does not replay to the pcr: loads are refused until the next boot")
	// ErrInvalid: the request itself is bad (unparsable artifact, oversize
	// input, a record number past the end of the log, a bad pin dir).
	ErrInvalid = errors.New("invalid request")
	// ErrNonce: a verifier's nonce is unusable. It wraps evidence.ErrNonce,
	// so errors.Is(err, evidence.ErrNonce) also holds.
	ErrNonce = errNonce{}
	// ErrKernel: the kernel or the loader refused a measured load. Both
	// records (measurement, then the kernel's answer) are in the log;
	// nothing the load created is kept. It wraps the *bpfsys.SyscallError
	// or *bpfsys.LoaderError, so errors.Is(err, unix.EPERM) holds.
	ErrKernel = errors.New("the kernel refused the load")
	// ErrMismatch: the loader ran, but the programs it created disagree
	// with the measurement (count, names, types or kernel tags: see
	// measure.Binding). They were released before the result was
	// recorded, with outcome "mismatch" and the disagreement in words.
	ErrMismatch = errors.New("the loaded programs disagree with the measurement")
	// ErrPin: a load succeeded and is recorded, but pinning its objects
	// failed (a name already taken in the pin directory, a full bpffs).
	// The pins made are removed and the agent keeps the objects, as for
	// a load without a pin directory.
	ErrPin = errors.New("pinning the loaded objects failed")
	// ErrLogTooLarge: the records a quote was asked to carry take more
	// than Config.MaxQuoteLog bytes. Nothing was quoted; read those
	// records with Walk (Events) and ask for a quote from a later record.
	ErrLogTooLarge = errors.New("log slice too large for one quote")
	// ErrClosed: the agent was closed.
	ErrClosed = errors.New("agent closed")
)

type errNonce struct{}

func (errNonce) Error() string { return evidence.ErrNonce.Error() }
func (errNonce) Unwrap() error { return evidence.ErrNonce }
