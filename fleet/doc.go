// Package fleet is the fleet attestation service behind
// bpfattest-verifierd: it keeps every registered agent verified on a
// schedule, judges evidence that push agents upload, remembers verdicts
// and their history in a store (package store: SQLite for one node,
// PostgreSQL for replicas), and announces compliance transitions to
// webhooks from an outbox.
//
// Judgement is package verifier's and attest's, unchanged: a pull agent is
// checked with verifier.Check over a pooled gRPC connection, a push upload
// with verifier.Judge; the attest.State bytes of the last verification are
// stored with a version, and a verification is recorded only if that
// version is still the one it started from (compare-and-swap), so no
// replica ever advances an agent's state twice from the same version.
//
// Scheduling: each node claims due agents (a lease in the store, FOR
// UPDATE SKIP LOCKED on PostgreSQL) as many as it has free workers, so
// an agent is never verified by two nodes at once while its lease runs; a
// node that dies loses its leases after Config.Lease and the others take
// its agents over. Due times carry jitter; unreachable agents back off,
// doubling from the interval up to Config.MaxBackoff.
//
// Trust: as package verifier's. The store is the verifier's memory and
// must be writable only by the service. Everything an agent sends is
// checked by attest.Verify before use; what an operator sends is validated
// (AgentSpec.Validate, attest.ParsePolicy) before it is stored.
package fleet
