// Package agent measures signed BPF light skeletons before the kernel runs
// them: it records each measurement in a crash-safe event log, extends it
// into a TPM PCR, only then loads the skeleton, records the kernel's answer,
// accounts for every program in the kernel, and serves quotes over the log.
//
// It is the composition root of the daemon: measure (parse, verify, measure),
// agent/journal (the log and its PCR), internal/tpm (the one TPM owner),
// internal/bpfsys (the one bpf() caller) and attest (qualifying data) meet
// here and nowhere else.
//
// # Trust assumptions
//
// The agent trusts the kernel it runs on, the TPM it is given and the
// certificates in Config.Trust (its stand-in for the kernel keyring); it
// trusts no artifact, requester or loader context. It runs as root.
// Everything a verifier's policy relies on is inside a record's content, which
// the PCR binds; nothing the agent says outside the log (Status, metrics,
// the response of a load) is evidence.
//
// # Fail closed
//
// A load is: parse → inspect (userspace signature check with the kernel's
// rules, hash chain) → policy decision → measurement record, durable and
// extended → [refused: refusal record, stop] → bpf() (libbpf's
// bpf_load_and_run sequence, through internal/bpfsys) → result record with
// the IDs and tags of everything the loader created → pins. Any failure up to
// and including the measurement record means no bpf() call is made; a refused
// artifact is measured and logged, so a verifier sees attempts as well as
// loads. A tampered artifact (bad signature, broken hash chain) is refused
// before any bpf() call even in AllowUnsigned mode. The signature is passed
// to the kernel only when the start-up probe found that the kernel checks
// signatures (bpfsys.ProbeSignedLoad); the measurement records which of the
// two happened (measure.KernelCheck). docs/threat-model.md has the order, the
// reasons and the crash story of a load.
//
// # The observer
//
// Every program in the kernel is accounted for in the log: created by a
// measured load (its load-result record) or reported in an "unmeasured
// program" record, found at start (measure.DiscoveredAtStart) or by a later
// sweep (measure.DiscoveredObserved). A program that leaves the kernel gets a
// "program unloaded" record naming the record that introduced it. Sweeps run
// every Config.ObserverInterval and before every quote, under the same lock
// as loads. Program enumeration is BPF_PROG_GET_NEXT_ID (kernel/bpf/syscall.c);
// a program loaded and unloaded between two sweeps is not seen, which is why
// the quote's sweep matters and why a kernel hook on BPF_PROG_LOAD is the
// planned next capture point.
//
// # Without the kernel
//
// With Config.NoKernel the agent runs where it may not call bpf(): every
// load is measured, logged and refused with the reason "kernel access
// unavailable: …", and the observer does not run. The agent-start record
// says so (cel.AgentStartInfo.NoKernel), because such a log does not
// account for what others load. It exists for demonstrations and tests of
// the measure → log → quote → verify path, never for a host a verifier
// relies on.
//
// # Quotes
//
// Concurrent quote requests share one TPM quote whose qualifying data is a
// Merkle root over their nonces (evidence.Batch); each answer carries its
// inclusion proof. The quote is taken inside the journal's snapshot, so the
// log slice served replays exactly to the quoted PCR values. Quotes take at
// most Config.QuoteTPMShare of the TPM's time, whoever asks: requests past
// it wait and share the next quote.
package agent
