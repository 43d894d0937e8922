// Package evidence is what an agent sends a verifier for one quote, as it
// travels: the TPM's quote and signature as the TPM made them, the PCR values
// the agent claims (its own PCR and the boot PCRs), the attestation key, the
// event log slice, the machine's firmware event log when asked for, and the
// proof that places the verifier's nonce among the nonces the agent coalesced into
// one TPM quote (Batch). FromProto and ToProto are the one conversion to and
// from the wire message (proto/bpfattest/v1).
//
// Trust assumptions: nothing here is verified. The agent builds Evidence and
// the nonce batch; package attest verifies Evidence. The conversions trust
// nothing in a wire message either, but check only what the Go types
// cannot hold (an index above 23, an unknown bank, an oversized proof or
// firmware log), so that nothing larger than attest.Verify would accept is copied. The
// qualifying data (QualifyingData, Batch) binds nonces with domain-separated
// hashes; its formula and labels are part of the wire contract and never
// change within a version.
//
// The package is pure: no TPM, no syscalls, no gRPC server code, no cgo. It
// builds on every GOOS.
package evidence
