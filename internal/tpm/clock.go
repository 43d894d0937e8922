package tpm

import (
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// ClockInfo is TPMS_CLOCK_INFO (TPM 2.0 Part 2 §10.11.1). ResetCount grows
// at every TPM reset (a reboot: PCRs cleared); RestartCount at every
// TPM2_Startup(STATE) resume since the last reset (PCRs kept); Safe says the
// Clock value has not gone backwards since it was last reported.
type ClockInfo struct {
	Clock        uint64 // milliseconds the TPM has been powered, persisted
	ResetCount   uint32
	RestartCount uint32
	Safe         bool
}

func clockInfoOf(c tpm2.TPMSClockInfo) ClockInfo {
	return ClockInfo{
		Clock:        c.Clock,
		ResetCount:   c.ResetCount,
		RestartCount: c.RestartCount,
		Safe:         bool(c.Safe),
	}
}

// ClockInfo reads the TPM's clock (TPM2_ReadClock).
func (d *Device) ClockInfo() (ClockInfo, error) {
	var ci ClockInfo
	err := d.do(func(t transport.TPM) error {
		rsp, err := tpm2.ReadClock{}.Execute(t)
		if err != nil {
			return err
		}
		ci = clockInfoOf(rsp.CurrentTime.ClockInfo)
		return nil
	})
	if err != nil {
		return ClockInfo{}, fmt.Errorf("tpm/clock: %w", err)
	}
	return ci, nil
}
