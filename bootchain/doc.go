// Package bootchain verifies a machine's UEFI firmware event log against
// quoted PCR values and says what it proves about the boot: Secure Boot,
// the boot applications, what GRUB measured, and the value the agent's PCR
// holds before the agent's first record.
//
// Trust assumptions: the caller gives PCR values it has already checked
// against a TPM quote (signature, nonce, PCR digest); Verify trusts them
// and nothing in the log. A fact in a State comes from events that replay
// to those values, and a string comes only from an event whose digest is
// the hash of that string. Everything else in the log (device paths,
// descriptions, event types the replay does not cover) is not reported.
// The log's events are what the firmware, shim and GRUB chose to measure:
// a State says which images and settings were measured, not that they are
// good. Images are identified by their measured digests: for PCR 4 the
// PE/COFF Authenticode hash (not a hash of the file, and no signature is
// checked here), for GRUB's PCR 9 files the hash of the bytes GRUB read.
// docs/verification.md ("Boot chain") lists exactly what is checked.
//
// Formats: the TCG PC Client Platform Firmware Profile event log (TPM
// 1.2-format SHA-1 events, or TPM 2.0 crypto-agile events after a Spec ID
// event, §10), parsed and replayed by github.com/google/go-attestation
// (imported as goattest), whose Secure Boot reader this package also uses.
// GRUB's PCR 8 and 9 events follow GRUB's TPM module (grub-core/commands/
// tpm.c: "grub_cmd: ", "kernel_cmdline: ", "module_cmdline: ").
//
// The package is pure: no TPM, no syscalls, no gRPC, no cgo.
package bootchain
