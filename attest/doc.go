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
// checked against it.
//
// The package is pure: no TPM, no syscalls, no gRPC. The agent imports it to
// derive qualifying data (QualifyingData, Batch) the same way a verifier
// checks it.
package attest
