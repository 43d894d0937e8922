// Package bench holds the project's end-to-end performance harnesses: the
// agent's quote coalescing against a TPM made as slow as a hardware one,
// the resident memory of a running bpfattestd with a long event log, and
// the ratio harnesses that measure the verifier and the measuring side
// against their floors (a bare ECDSA check, plain SHA-256) by alternating
// the two sides of each ratio in one run. They report their figures as
// benchmark metrics; README.md gives each one's command and what it
// measures.
//
// The package has no code of its own outside its tests: it is where
// measurements that span several packages live, so that no package's unit
// tests carry them. The agent harnesses need root (the agent probes the
// kernel and sweeps its programs) and swtpm, and skip without them
// through internal/testutil, which fails instead under the strict switch;
// the ratio harnesses need neither (the verifier's builds its log on the
// in-process simulator, a cgo build).
package bench
