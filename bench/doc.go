// Package bench holds the project's end-to-end performance harnesses: the
// agent's quote coalescing against a TPM made as slow as a hardware one, and
// the resident memory of a running bpfattestd with a long event log. They
// run real parts (the kernel's bpf(), swtpm, the daemon binary) and report
// their figures as benchmark metrics; README.md gives each one's command and
// what it measures.
//
// The package has no code of its own outside its tests: it is where
// measurements that span several packages live, so that no package's unit
// tests carry them. Each harness needs root (the agent probes the kernel
// and sweeps its programs) and swtpm, and skips without them through
// internal/testutil, which fails instead under the strict switch.
package bench
