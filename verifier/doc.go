// Package verifier verifies bpfattest agents over their remote API, one
// host or a fleet: it asks an agent for a quote over a fresh nonce that
// carries the event log from the record its state stops at (reading the
// records with Events first when they are more than one quote carries),
// verifies the evidence with attest.Verify against the pinned attestation
// key and the stored State, evaluates a policy, and keeps each host's state
// file. bpfattest verify, scan and policy init are its command-line front
// ends; a fleet service reuses it as it is.
//
// Trust assumptions: as package attest's. The verifier trusts the AK it
// pins (enrolled through the EK, supplied by an operator, or, with trust on
// first use, the agent's word at first contact) and its own state files,
// which must be kept where agents cannot write; nothing an agent sends is
// used before attest.Verify has checked it. A Verdict's status is
// compliant or non-compliant only for verified evidence; every failure to
// reach an agent or to verify its answer is a verdict too (unreachable,
// could-not-verify), never a silent pass.
package verifier
