package agent

import (
	"context"
	"crypto"
	"fmt"
	"slices"
	"time"

	"github.com/bpfattest/bpfattest/cel"
)

// Identity is what a verifier enrols: the attestation key, the endorsement
// certificate it can be tied to, and where and what the agent measures.
type Identity struct {
	AKPublic      []byte // TPMT_PUBLIC of the attestation key
	AKAlgorithm   string // "ecc" or "rsa"
	EKCertificate []byte // DER, nil when the TPM has none
	PCR           int
	Banks         []crypto.Hash
	BootID        string        // the kernel's boot id
	Clock         cel.ClockInfo // read at most a second before the answer
	// TPMKind is cel.TPMDevice, TPMSwtpm or TPMSimulator: the agent's
	// word, as in its agent-start records.
	TPMKind string
}

// identityClockMaxAge bounds the age of the clock Identity answers with.
const identityClockMaxAge = time.Second

// Identity returns the agent's attestation identity. Everything in it is
// fixed when the agent starts, except the TPM's clock, which is read at
// most once every identityClockMaxAge for every caller together: the
// clock answered was read at most that long before the answer (it is
// informational; a quote carries the clock the TPM signs). So Identity
// costs no TPM command of its own, however often it is asked.
func (a *Agent) Identity(ctx context.Context) (*Identity, error) {
	if err := a.usable(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("agent/identity: %w", err)
	}
	clock, err := a.idClock.get(ctx, identityClockMaxAge, a.clock)
	if err != nil {
		return nil, fmt.Errorf("agent/identity: %w: %w", ErrUnavailable, err)
	}
	id := a.id
	id.AKPublic = slices.Clone(a.id.AKPublic)
	id.EKCertificate = slices.Clone(a.id.EKCertificate)
	id.Banks = slices.Clone(a.id.Banks)
	id.Clock = clock
	return &id, nil
}

// Status is a summary of the agent for operators.
type Status struct {
	Records          uint64        // events in the current boot's log: the next record number
	PCR              int           // the PCR the log extends
	Banks            []crypto.Hash // its active banks
	KernelSignatures string        // the kernel probe: "checked", "unsupported" or "unknown"; "no kernel access" without one
	NoKernel         bool          // Config.NoKernel: loads are refused, the kernel is not observed
	Loaded           int           // programs in the kernel created by measured loads
	Unmeasured       int           // programs in the kernel recorded as unmeasured
	Started          time.Time
	BootID           string
	LogPath          string // the current boot's log file
	AllowUnsigned    bool
	// Observer is how programs loaded by others are found: cel.ObserverEvents,
	// ObserverSweep or ObserverNone.
	Observer string
	TPMKind  string // cel.TPMDevice, TPMSwtpm or TPMSimulator
	// LogMismatch says why loads are refused when the log no longer
	// replays to the PCR (someone else extended it); "" otherwise.
	LogMismatch string
	// FirmwareLog says which firmware event log the agent serves ("PATH
	// (N bytes)"), or "none: " and why.
	FirmwareLog string
	// BootPCRs are the PCRs every quote covers besides PCR.
	BootPCRs []int
	// Kernel is what the kernel said about itself when the agent started.
	Kernel cel.KernelInfo
}

// Status returns the agent's state now. Loaded and Unmeasured are as of the
// last load or sweep.
func (a *Agent) Status() Status {
	a.pipe.lockAlways(ownerAgent)
	a.quiesceLocked()
	loaded, unmeasured := a.countsLocked()
	a.pipe.unlock()
	return Status{
		Records:          a.metrics.records.Load(),
		PCR:              a.set.PCR,
		Banks:            a.dev.Banks(),
		KernelSignatures: a.kernelSignatures(),
		NoKernel:         a.set.NoKernel,
		Loaded:           loaded,
		Unmeasured:       unmeasured,
		Started:          a.started,
		BootID:           a.bootID,
		LogPath:          a.jr.Path(),
		AllowUnsigned:    a.set.AllowUnsigned,
		Observer:         a.observer,
		TPMKind:          a.tpmKind,
		LogMismatch:      errText(a.jr.Mismatch()),
		FirmwareLog:      a.fw.describe(),
		BootPCRs:         slices.Clone(a.set.bootPCRs),
		Kernel:           a.kernel,
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// FirmwareLog returns the machine's firmware event log as the agent read
// it at start, or nil when it has none (Status.FirmwareLog says why).
// The quote does not cover it: a verifier replays it against the boot
// PCRs every quote covers.
func (a *Agent) FirmwareLog() []byte { return slices.Clone(a.fw.log) }

// kernelSignatures says what the start-up probe found.
func (a *Agent) kernelSignatures() string {
	if a.set.NoKernel {
		return "no kernel access"
	}
	return a.support.String()
}

// Metrics returns the agent's counters and histograms.
func (a *Agent) Metrics() *Metrics { return a.metrics }
