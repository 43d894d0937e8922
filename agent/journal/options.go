package journal

import (
	"crypto"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/bpfattest/bpfattest/cel"
)

// TPM is what the journal needs from a TPM; *tpm.Device has these methods.
type TPM interface {
	// Banks returns the active PCR banks.
	Banks() []crypto.Hash
	// Extend extends pcr with one digest per active bank, in one command.
	Extend(pcr int, digests map[crypto.Hash][]byte) error
	// ReadPCR returns pcr's value in every active bank.
	ReadPCR(pcr int) (map[crypto.Hash][]byte, error)
}

// DefaultPCR is the PCR the journal extends unless told otherwise. PCR 14
// is a static OS PCR (not resettable at locality 0) that neither IMA (10) nor
// systemd (11, 12, 13, 15) extends at run time; its only other writer, shim,
// writes before the OS starts and logs in the UEFI event log.
const DefaultPCR = 14

// Options configure Open.
type Options struct {
	// PCR is the PCR to extend; 0 selects DefaultPCR. 16 and 23 are
	// refused: software at locality 0 can reset them, so they attest
	// nothing.
	PCR int
	// Clock reads the TPM's clock information; it identifies the boot (the
	// reset count) and goes into boot headers and agent-start records.
	// Required. With the TPM package, whose ClockInfo has the same fields:
	//
	//	Clock: func() (cel.ClockInfo, error) { c, err := dev.ClockInfo(); return cel.ClockInfo(c), err }
	Clock func() (cel.ClockInfo, error)
	// BootID returns the kernel's boot id; nil reads
	// /proc/sys/kernel/random/boot_id.
	BootID func() (string, error)
	// Version is the agent version written in agent-start records.
	Version string
	// NoKernel is written in agent-start records: the agent runs without
	// kernel access (cel.AgentStartInfo.NoKernel).
	NoKernel bool
	// Observer and TPM are written in agent-start records
	// (cel.AgentStartInfo.Observer and TPM).
	Observer string
	TPM      string
	// KeepMismatched makes Open return the journal of a log that does not
	// replay to the PCR (someone else extended it) instead of failing with
	// the *MismatchError: the journal then serves the log as it is and
	// refuses appends (Mismatch says why), so the agent can keep answering
	// quotes that show the mismatch to its verifiers.
	KeepMismatched bool
	// Kernel is written in the boot header of a new boot's log
	// (cel.BootInfo.Kernel): what the kernel says about itself. Nil writes
	// none. A log continued within its boot keeps the header it has.
	Kernel *cel.KernelInfo
	// Logger receives one line per reconciliation decision and per
	// failure; nil discards.
	Logger *slog.Logger
	// Now is the wall clock for the informational times in management
	// records; nil uses time.Now.
	Now func() time.Time

	// hook, when set (tests only), is called at each step boundary of the
	// write protocol, and enables the split write that lets a test stop the
	// process in the middle of a record.
	hook func(step)
}

// step names a boundary in the write protocol, for crash tests.
type step int

const (
	stepWritePartial    step = iota + 1 // half of a record written
	stepWritten                         // record written, not fsynced
	stepSynced                          // record durable, not extended
	stepExtended                        // record extended, Append not returned
	stepHeaderSynced                    // new log's temp file durable, not renamed
	stepHeaderRenamed                   // new log in place, header not extended
	stepRolledForward                   // pending record extended, Recovery not written
	stepTailQuarantined                 // torn tail copied aside, log not truncated
)

func (s step) String() string {
	return [...]string{"", "write-partial", "written", "synced", "extended",
		"header-synced", "header-renamed", "rolled-forward", "tail-quarantined"}[s]
}

// settings are Options with defaults applied.
type settings struct {
	pcr      int
	clock    func() (cel.ClockInfo, error)
	bootID   func() (string, error)
	version  string
	noKernel bool
	observer string
	tpmKind  string
	keepMism bool
	kernel   *cel.KernelInfo
	log      *slog.Logger
	now      func() time.Time
	hook     func(step)
}

func (o Options) settings() (settings, error) {
	s := settings{pcr: o.PCR, clock: o.Clock, bootID: o.BootID, version: o.Version, noKernel: o.NoKernel,
		observer: o.Observer, tpmKind: o.TPM, keepMism: o.KeepMismatched, kernel: o.Kernel,
		log: o.Logger, now: o.Now, hook: o.hook}
	if s.pcr == 0 {
		s.pcr = DefaultPCR
	}
	if err := cel.CheckLogPCR(s.pcr); err != nil {
		return s, fmt.Errorf("options: %w", err)
	}
	if s.clock == nil {
		return s, fmt.Errorf("options: no Clock")
	}
	if s.bootID == nil {
		s.bootID = kernelBootID
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s, nil
}

// kernelBootID reads the kernel's random boot id, a UUID that changes at
// every boot (proc(5), /proc/sys/kernel/random/boot_id).
func kernelBootID() (string, error) {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", fmt.Errorf("boot id: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}
