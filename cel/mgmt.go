package cel

import (
	"crypto"
	"fmt"
	"time"
)

// FormatVersion is the log format version a BootInfo declares. It changes
// when the record or content encoding changes incompatibly.
const FormatVersion = 1

// BootInfo is the content of a BootHeader record, the first record of every
// boot's log. It says which boot the log belongs to and which PCR values the
// replay starts from.
//
// A verifier must not take Start on trust: the record only binds the values
// into the PCR from this point on. The values before the agent started are
// attested by whatever extended them (firmware, shim), and a verifier checks
// Start against that, such as a UEFI event log replay for the same PCR.
type BootInfo struct {
	// BootID is the kernel's random boot id
	// (/proc/sys/kernel/random/boot_id).
	BootID string
	// ResetCount and RestartCount are the TPM's counters
	// (TPMS_CLOCK_INFO) when the log was started.
	ResetCount   uint32
	RestartCount uint32
	// Clock is the TPM clock in milliseconds when the log was started.
	Clock uint64
	// PCR is the index of the PCR the log extends.
	PCR uint8
	// Start holds the PCR values read before this record was extended, one
	// per active bank.
	Start map[crypto.Hash][]byte
	// Time is the host's wall-clock time; informational, not attested.
	Time time.Time
	// Kernel is what the running kernel said about itself when the log
	// was started (KernelInfo); nil in logs of agents that did not record
	// it. Encoded only when set.
	Kernel *KernelInfo
}

const (
	bootFormat = iota
	bootID
	bootReset
	bootRestart
	bootClock
	bootPCR
	bootStart
	bootTime
	bootKernel
)

// MarshalBinary returns the canonical encoding of b.
func (b *BootInfo) MarshalBinary() ([]byte, error) {
	if b.BootID == "" {
		return nil, fmt.Errorf("cel: marshal boot_header: empty boot id")
	}
	var w fieldWriter
	w.u16(bootFormat, FormatVersion)
	w.str(bootID, b.BootID)
	w.u32(bootReset, b.ResetCount)
	w.u32(bootRestart, b.RestartCount)
	w.u64(bootClock, b.Clock)
	w.u8(bootPCR, b.PCR)
	if err := w.pcrValues(bootStart, b.Start); err != nil {
		return nil, fmt.Errorf("cel: marshal boot_header: start: %w", err)
	}
	w.u64(bootTime, unixNano(b.Time))
	if b.Kernel != nil {
		k, err := b.Kernel.MarshalBinary()
		if err != nil {
			return nil, fmt.Errorf("cel: marshal boot_header: kernel: %w", err)
		}
		w.bytes(bootKernel, k)
	}
	return w.b, nil
}

// ParseBootInfo decodes the content of a BootHeader record.
func ParseBootInfo(content []byte) (BootInfo, error) {
	r := fieldReader{b: content, what: "boot_header"}
	var b BootInfo
	if v := r.u16(bootFormat, "format"); r.err == nil && v != FormatVersion {
		r.fail("format", 0, "version %d, want %d", v, FormatVersion)
	}
	b.BootID = r.str(bootID, "boot_id")
	if r.err == nil && b.BootID == "" {
		r.fail("boot_id", 0, "empty")
	}
	b.ResetCount = r.u32(bootReset, "reset_count")
	b.RestartCount = r.u32(bootRestart, "restart_count")
	b.Clock = r.u64(bootClock, "clock")
	b.PCR = r.u8(bootPCR, "pcr")
	b.Start = r.pcrValues(bootStart, "start")
	b.Time = fromUnixNano(r.u64(bootTime, "time"))
	if r.at(bootKernel) {
		// Absent in logs of agents that did not record the kernel.
		start := r.pos
		v := r.next(bootKernel, "kernel")
		if r.err == nil {
			k, err := parseKernelInfo(v, start+tlvHeaderLen)
			if err != nil {
				r.err = err
			}
			b.Kernel = k
		}
	}
	if err := r.done(); err != nil {
		return BootInfo{}, err
	}
	return b, nil
}

// AgentStartInfo is the content of an AgentStart record: an agent process
// took over the log, at a new boot or after a restart within a boot.
type AgentStartInfo struct {
	// Version is the agent's version string.
	Version string
	// PID is the agent's process id.
	PID uint32
	// Time is the host's wall-clock time; informational, not attested.
	Time time.Time
	// ClockInfo is the TPM's clock information when the agent started.
	ClockInfo
	// NoKernel says the agent ran without kernel access: it measured and
	// logged loads and refused them all, and observed no program in the
	// kernel, so the log does not account for programs others loaded.
	// Encoded only when true.
	NoKernel bool
	// Observer says how the agent accounts for the programs it did not
	// load: ObserverEvents (the kernel's program load and unload events,
	// with sweeps as a safety net), ObserverSweep (periodic sweeps of the
	// kernel's program list only: a program that lives between two sweeps
	// is not seen) or ObserverNone (no kernel access). Encoded when set.
	Observer string
	// TPM says what kind of TPM the agent extends and quotes with, as the
	// agent was configured: TPMDevice, TPMSwtpm or TPMSimulator. It is the
	// agent's own word (an EK certificate chain is what proves hardware),
	// there so that a verifier does not mistake a software TPM for one by
	// accident. Encoded when set.
	TPM string
}

// The values of AgentStartInfo.Observer and AgentStartInfo.TPM.
const (
	ObserverEvents = "events"
	ObserverSweep  = "sweep"
	ObserverNone   = "none"

	TPMDevice    = "device"
	TPMSwtpm     = "swtpm"
	TPMSimulator = "simulator"
)

const (
	startVersion = iota + 1
	startPID
	startTime
	startClock
	startReset
	startRestart
	startSafe
	startNoKernel
	startObserver
	startTPM
)

// MarshalBinary returns the canonical encoding of a.
func (a *AgentStartInfo) MarshalBinary() ([]byte, error) {
	var w fieldWriter
	w.str(startVersion, a.Version)
	w.u32(startPID, a.PID)
	w.u64(startTime, unixNano(a.Time))
	w.u64(startClock, a.Clock)
	w.u32(startReset, a.ResetCount)
	w.u32(startRestart, a.RestartCount)
	w.u8(startSafe, boolByte(a.Safe))
	if a.NoKernel {
		w.u8(startNoKernel, 1)
	}
	if a.Observer != "" {
		w.str(startObserver, a.Observer)
	}
	if a.TPM != "" {
		w.str(startTPM, a.TPM)
	}
	return w.b, nil
}

// ParseAgentStartInfo decodes the content of an AgentStart record.
func ParseAgentStartInfo(content []byte) (AgentStartInfo, error) {
	r := fieldReader{b: content, what: "agent_start"}
	var a AgentStartInfo
	a.Version = r.str(startVersion, "version")
	a.PID = r.u32(startPID, "pid")
	a.Time = fromUnixNano(r.u64(startTime, "time"))
	a.Clock = r.u64(startClock, "clock")
	a.ResetCount = r.u32(startReset, "reset_count")
	a.RestartCount = r.u32(startRestart, "restart_count")
	a.Safe = r.boolean(startSafe, "safe")
	if r.at(startNoKernel) {
		// Present only when true, so that each value has one encoding.
		start := r.pos
		if v := r.u8(startNoKernel, "no_kernel"); r.err == nil && v != 1 {
			r.fail("no_kernel", start, "value %d, want 1 (the field is absent when false)", v)
		}
		a.NoKernel = true
	}
	if r.at(startObserver) {
		start := r.pos
		switch a.Observer = r.str(startObserver, "observer"); a.Observer {
		case ObserverEvents, ObserverSweep, ObserverNone:
		default:
			r.fail("observer", start, "unknown observer %q", a.Observer)
		}
	}
	if r.at(startTPM) {
		start := r.pos
		switch a.TPM = r.str(startTPM, "tpm"); a.TPM {
		case TPMDevice, TPMSwtpm, TPMSimulator:
		default:
			r.fail("tpm", start, "unknown tpm kind %q", a.TPM)
		}
	}
	if err := r.done(); err != nil {
		return AgentStartInfo{}, err
	}
	return a, nil
}

// RecoveryAction says what start-up reconciliation did.
type RecoveryAction uint8

const (
	// RolledForward: the record at RecNum was durable but had not been
	// extended when the previous agent stopped; it was extended now.
	RolledForward RecoveryAction = 1
	// DiscardedTail: the bytes at Offset were not a complete, valid record
	// and had never been extended (the PCR equalled the log without them);
	// they were cut from the log and kept aside.
	DiscardedTail RecoveryAction = 2
)

func (a RecoveryAction) String() string {
	switch a {
	case RolledForward:
		return "rolled_forward"
	case DiscardedTail:
		return "discarded_tail"
	}
	return fmt.Sprintf("action_%d", uint8(a))
}

// RecoveryInfo is the content of a Recovery record.
type RecoveryInfo struct {
	Action RecoveryAction
	// RecNum is the record rolled forward, or the record number the
	// discarded bytes would have had.
	RecNum uint64
	// Offset and Length locate the bytes acted on in the boot's log file.
	Offset uint64
	Length uint64
	// SHA256 is the SHA-256 of those bytes.
	SHA256 [32]byte
	// Detail explains the decision in words (which rule matched).
	Detail string
}

const (
	recAction = iota + 1
	recRecNum
	recOffset
	recLength
	recSHA256
	recDetail
)

// MarshalBinary returns the canonical encoding of r.
func (r *RecoveryInfo) MarshalBinary() ([]byte, error) {
	if r.Action != RolledForward && r.Action != DiscardedTail {
		return nil, fmt.Errorf("cel: marshal recovery: unknown action %d", r.Action)
	}
	var w fieldWriter
	w.u8(recAction, byte(r.Action))
	w.u64(recRecNum, r.RecNum)
	w.u64(recOffset, r.Offset)
	w.u64(recLength, r.Length)
	w.bytes(recSHA256, r.SHA256[:])
	w.str(recDetail, r.Detail)
	return w.b, nil
}

// ParseRecoveryInfo decodes the content of a Recovery record.
func ParseRecoveryInfo(content []byte) (RecoveryInfo, error) {
	r := fieldReader{b: content, what: "recovery"}
	var ri RecoveryInfo
	ri.Action = RecoveryAction(r.u8(recAction, "action"))
	if r.err == nil && ri.Action != RolledForward && ri.Action != DiscardedTail {
		r.fail("action", 0, "unknown action %d", ri.Action)
	}
	ri.RecNum = r.u64(recRecNum, "recnum")
	ri.Offset = r.u64(recOffset, "offset")
	ri.Length = r.u64(recLength, "length")
	copy(ri.SHA256[:], r.fixed(recSHA256, "sha256", 32))
	ri.Detail = r.str(recDetail, "detail")
	if err := r.done(); err != nil {
		return RecoveryInfo{}, err
	}
	return ri, nil
}

func (r *fieldReader) boolean(tag byte, name string) bool {
	start := r.pos
	v := r.u8(tag, name)
	if r.err == nil && v > 1 {
		r.fail(name, start, "value %d, want 0 or 1", v)
	}
	return v == 1
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// unixNano encodes a wall-clock time as nanoseconds since the Unix epoch;
// the zero time encodes as 0.
func unixNano(t time.Time) uint64 {
	if t.IsZero() {
		return 0
	}
	return uint64(t.UnixNano())
}

// fromUnixNano is the inverse of unixNano; 0 decodes as the zero time.
func fromUnixNano(n uint64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(n)).UTC()
}
