// Package tpmtest gives tests real TPMs: the in-process reference simulator
// and a real swtpm process (Debian's swtpm package) started in a temporary
// directory, with helpers to reboot it, kill and restart it, and point
// tpm2-tools at it.
//
// It is imported only from _test.go files. Tests that need swtpm skip when
// it is not installed, through testutil.SkipEnv, so under the strict
// environment switch a missing swtpm fails instead.
//
// swtpm is started with pre-bound listening sockets passed as file
// descriptors (swtpm socket --server type=unixio,fd=N --ctrl
// type=unixio,fd=M), so a client can connect the moment Start returns: no
// polling for the socket to appear. The control socket is named
// "<command socket>.ctrl", the name tpm2-tss's swtpm TCTI derives. Reboot
// uses the control channel's CMD_INIT (command 2, u32 flags, u32 result;
// swtpm's ioctl protocol, see swtpm_ioctl(8)).
//
// ReplayFirmwareLog puts a real machine's boot into a test TPM: it extends
// every event of a TCG PC Client firmware log into the PCRs, read by this
// package's own small log reader (ParseFirmwareLog), which is independent
// of go-attestation so that tests of code built on go-attestation get
// their expected values from elsewhere.
package tpmtest
