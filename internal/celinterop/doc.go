// Package celinterop checks bpfattest's event log against an independent
// Canonical Event Log implementation: Google's go-eventlog decodes the
// agent's TLV log and replays it to the TPM's PCR values, in every bank.
//
// It is a module of its own, and its tests are its only content. The
// go-eventlog version that go-tpm-tools (a dependency of the main module)
// requires is a pseudo-version the module proxy does not serve; a module of
// its own can require the released v0.0.2 without pulling go-tpm-tools'
// requirement into the main module's graph. It imports nothing of
// bpfattest: the log, the PCR values and the evidence it reads are files
// (testdata/ and ../../attest/testdata/evidence), written by the main
// module's TestCELInteropCapture (agent) and TestCaptureEvidence (attest).
//
// Run it from here: go test ./... (.ci/run does).
package celinterop
