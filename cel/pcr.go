package cel

import "fmt"

// MaxPCR is the highest PCR index of a PC Client TPM, which has 24 PCRs.
const MaxPCR = 23

// CheckPCR returns an error when index names no PCR of a PC Client TPM
// (0..MaxPCR).
func CheckPCR(index int) error {
	if index < 0 || index > MaxPCR {
		return fmt.Errorf("pcr %d outside 0..%d", index, MaxPCR)
	}
	return nil
}

// CheckLogPCR returns an error when index cannot be the PCR an event log
// extends: no PCR at all (CheckPCR), or 16 (debug) or 23 (application),
// which software at locality 0 can reset, so that they attest nothing.
func CheckLogPCR(index int) error {
	if err := CheckPCR(index); err != nil {
		return err
	}
	if index == 16 || index == 23 {
		return fmt.Errorf("pcr %d is resettable at locality 0 and attests nothing", index)
	}
	return nil
}

// ClockInfo is the TPM's clock information (TPMS_CLOCK_INFO, TPM 2.0
// Library Part 2 §10.11.1) as agent-start records carry it and quotes state
// it. ResetCount grows at every TPM reset (a reboot: PCRs cleared),
// RestartCount at every resume since the last reset (PCRs kept), and Safe
// says no larger Clock value was ever reported before.
type ClockInfo struct {
	Clock        uint64 // milliseconds the TPM has been powered, persisted
	ResetCount   uint32
	RestartCount uint32
	Safe         bool
}
