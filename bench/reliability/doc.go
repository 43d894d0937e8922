// Package reliability holds the agent's fault and load harnesses: a real
// bpfattestd on a real swtpm, killed with SIGKILL over and over while
// clients load and quote through its gRPC services, and a long run of many
// concurrent clients that watches the daemon's resident memory. Both check
// the evidence the way a verifier would, independently of the daemon:
// every acknowledged load's records and every acknowledged quote's PCR
// values must still be in the log after each restart, exactly once, and the
// log must replay to every quote.
//
// The package has no code outside its tests. Each harness is a Go test that
// runs a CI-sized variant by default and the full run behind a flag; the
// commands are in README.md and the figures of the documented runs in
// docs/reliability.md. They need root (the daemon loads programs) and
// swtpm, and skip without them through internal/testutil, which fails
// instead under the strict switch.
package reliability
