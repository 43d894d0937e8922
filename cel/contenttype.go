package cel

import "fmt"

// ContentType names what a record's content is. The high byte is the CEL
// top-level content TLV type (0xB0 for BPF records, 0xB1 for agent
// management records); the low byte is the kind, the type of the one nested
// TLV that carries the content bytes. Both bytes are inside the hashed content
// field, so a verifier can trust a record's type as much as its content.
type ContentType uint16

// The content types of bpfattest's log.
//
// 0xB0 and 0xB1 are outside every range the CEL specification and known
// producers use: the specification's 0–8 (recnum, pcr, nv_index, digests,
// cel_mgt, pcclient_std, ima_template, ima_tlv), 9 (systemd, in the reference
// tools), 80 (Google COS) and 108 (COS confidential-computing register index).
// The BPF kinds carry bytes that other packages encode; this package treats
// them as opaque. The management kinds are defined here (mgmt.go).
const (
	// BPFMeasurement is the canonical measurement of one load request,
	// recorded and extended before the kernel sees the artifact.
	BPFMeasurement ContentType = 0xB001
	// BPFLoadResult is the kernel's answer to a measured load: errno, and
	// the IDs and tags of the programs and maps it created.
	BPFLoadResult ContentType = 0xB002
	// BPFUnmeasured reports a program found in the kernel with no
	// measurement in this log.
	BPFUnmeasured ContentType = 0xB003
	// BPFUnloaded reports that a measured program left the kernel.
	BPFUnloaded ContentType = 0xB004
	// BPFEventsLost reports that the kernel dropped program events before
	// the agent read them; a sweep of the kernel's programs follows.
	BPFEventsLost ContentType = 0xB005
	// BPFTransient lists programs that came and went between two reads of
	// the kernel's program events.
	BPFTransient ContentType = 0xB006
	// BPFRefusals counts load requests answered without a record each:
	// refusals past the requester's rate of refusal records, and requests
	// turned away before they were measured.
	BPFRefusals ContentType = 0xB007

	// AgentStart marks an agent process taking over the log (AgentStartInfo).
	AgentStart ContentType = 0xB101
	// BootHeader is the first record of every boot's log (BootInfo).
	BootHeader ContentType = 0xB102
	// Recovery records what start-up reconciliation did to the log
	// (RecoveryInfo).
	Recovery ContentType = 0xB103
	// Batch is a record carrying several events in order, each with its
	// own content type and content (batch.go): what one group commit
	// writes, fsyncs and extends once. Its events are numbered from the
	// record's RecNum on.
	Batch ContentType = 0xB104
)

// TLV types of the two top-level content fields.
const (
	tlvBPF   = 0xB0
	tlvAgent = 0xB1
)

// Known reports whether t is one of the content types above.
func (t ContentType) Known() bool {
	switch t {
	case BPFMeasurement, BPFLoadResult, BPFUnmeasured, BPFUnloaded, BPFEventsLost, BPFTransient, BPFRefusals,
		AgentStart, BootHeader, Recovery, Batch:
		return true
	}
	return false
}

// Management reports whether t is an agent management record whose content
// this package defines.
func (t ContentType) Management() bool { return t>>8 == tlvAgent }

// String returns the name used in the text and JSON exports.
func (t ContentType) String() string {
	switch t {
	case BPFMeasurement:
		return "bpf_measurement"
	case BPFLoadResult:
		return "bpf_load_result"
	case BPFUnmeasured:
		return "bpf_unmeasured"
	case BPFUnloaded:
		return "bpf_unloaded"
	case BPFEventsLost:
		return "bpf_events_lost"
	case BPFTransient:
		return "bpf_transient"
	case BPFRefusals:
		return "bpf_refusals"
	case AgentStart:
		return "agent_start"
	case BootHeader:
		return "boot_header"
	case Recovery:
		return "recovery"
	case Batch:
		return "batch"
	}
	return fmt.Sprintf("content_type_%#04x", uint16(t))
}

// celName returns the CEL-JSON content_type of t's top-level TLV type.
func (t ContentType) celName() string {
	switch t >> 8 {
	case tlvBPF:
		return "bpfattest_bpf"
	case tlvAgent:
		return "bpfattest_mgt"
	}
	return fmt.Sprintf("%d", t>>8)
}
