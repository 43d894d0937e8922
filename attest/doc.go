// Package attest verifies what a bpfattest agent serves: a TPM quote over the
// agent's PCR, the event log that must replay to it, and the policy a
// verifier applies to the verified records.
//
// Trust assumptions: the verifier trusts the attestation key it pins (or the
// EK chain it enrolled), and nothing the agent says about itself. Every fact
// a Result exposes comes from records whose digests replayed to a PCR value
// that a signature by that key covers, over qualifying data derived from the
// verifier's own nonce. Evidence fields outside the signed quote (the PCR
// values the agent claims, the log bytes) are used only after they are
// checked against it, and record contents are interpreted only after the
// whole log replayed. A passing Verify proves what the agent recorded before
// each load and what the kernel answered; it does not prove the agent's
// userspace signature verdicts right (they are measured, not re-checked),
// nor that nothing else ran in the kernel that the agent failed to observe.
// The boot chain (Result.Boot) comes from the firmware event log only after
// it replayed to boot PCR values the same quote covers (package bootchain):
// it says what the firmware, shim and GRUB measured, not that they are good,
// and the kernel facts of the boot header are the agent's reading of the
// kernel, as trustworthy as the agent at the moment it started the log.
// A State is the verifier's own memory and must be stored where the agent
// cannot change it.
//
// Formats: TPMS_ATTEST, TPMS_QUOTE_INFO, TPMS_CLOCK_INFO and TPMT_SIGNATURE
// are read by this package from TPM 2.0 Library Part 2 (§10.12.12, §10.12.4,
// §10.11.1, §11.3.4); TPMT_PUBLIC (§12.2.4) through go-tpm's tpm2 package.
// The log is TCG CEL TLV (cel), record contents are measure's
// canonical encodings. docs/verification.md walks through every check;
// docs/policy.md describes the policy file.
//
// The package is pure: no TPM, no syscalls, no gRPC, no cgo. The agent
// builds evidence with package evidence, which this package verifies: the
// agent does not link the verifier.
package attest
