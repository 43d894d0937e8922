// Package measure builds the canonical measurement of a light skeleton that
// the agent logs and extends into the TPM before the loader runs, and
// encodes the other BPF records of the event log: the kernel's answer to a
// load, a program found in the kernel that no measured load created, and a
// program's unload.
//
// # Inputs and trust
//
// Inspect takes an artifact parsed by package lskel, verifies its signature
// in userspace with the kernel's rules (and Hornet's) through package
// measure/cms, checks every link of the hash chain that carries that
// signature to the data map and the programs inside, and returns the
// measurement with everything a verifier's policy relies on inside it. An
// artifact the analysis cannot follow is an error wrapping
// ErrNotAnalyzable; a bad signature or a broken chain is a verdict, not an
// error.
//
// The record codecs (ParseMeasurement, ParseLoadResult, ParseKernelProgram,
// ParseUnloaded) read untrusted bytes: they never panic, they accept exactly
// one encoding of each value, and every error they return matches
// ErrMalformed. docs/measurement-format.md gives the encoding byte by byte.
//
// The package is pure: standard library, lskel and measure/cms only, no
// syscalls, no unsafe, no cgo. It builds on every GOOS.
package measure
