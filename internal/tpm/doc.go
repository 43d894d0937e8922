// Package tpm is the only code in bpfattest that talks to a TPM: it opens one
// (the in-process reference simulator, a swtpm process over its command
// socket, or the kernel's /dev/tpmrm0 and /dev/tpm0), discovers the active PCR
// banks, extends and reads PCRs, creates and reloads the attestation key,
// produces quotes, reads the TPM clock and the EK certificate.
//
// Trust assumptions. The package trusts the TPM it is given to execute
// commands faithfully; it does not decide whether that TPM is genuine (the
// verifier does, from the EK certificate and the AK binding). Responses are
// still parsed defensively: a malformed response is an error, never a panic.
// Callers hash on the CPU and hand over digests only (Extend); this package
// never sees the measured content. The AK blob in the state directory is
// wrapped by the TPM's storage key, so it is not a secret, but a tampered
// blob is refused by the TPM on load.
//
// The simulator ("sim") is insecure by construction: whoever controls the
// process controls the "TPM". It needs a cgo build; without cgo, Open("sim")
// returns an error wrapping errors.ErrUnsupported. swtpm and the simulator have no resource manager,
// so this package flushes every transient object it creates on every path,
// and flushes stray transient handles when it opens such a TPM.
//
// Structures and commands follow TPM 2.0 Library Specification, Part 2
// (Structures) and Part 3 (Commands): TPM2_PCR_Extend (Part 3 §22.2),
// TPM2_PCR_Read (§22.4), TPM2_Quote (§18.4), TPM2_ReadClock (§29.1),
// TPM2_GetCapability (§30.2), TPMS_ATTEST (Part 2 §10.12.12),
// TPMS_CLOCK_INFO (§10.11.1). EK certificate NV indices follow the TCG EK
// Credential Profile for TPM Family 2.0 §2.2.1.4. Marshalling is go-tpm's
// tpm2 package.
//
// A Device serialises its own commands with one mutex. swtpm accepts one
// client connection at a time; the swtpm transport therefore connects per
// command, so that other clients (tpm2-tools) get their turn between our
// commands.
package tpm
