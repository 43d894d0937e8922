package main

import (
	"bytes"
	"crypto"
	_ "embed"
	"errors"
	"fmt"

	goattest "github.com/google/go-attestation/attest"

	"github.com/bpfattest/bpfattest/internal/tpm"
)

// The demo's firmware event log: SYNTHETIC, made by TestDemoFirmwareLog
// from events of our own (sample/README.md). The simulator has no
// firmware, so the demo replays this log into its PCRs before the agent
// starts, as UEFI firmware, shim and GRUB would have, and points the agent
// at it.
const demoFirmwareLogName = "SYNTHETIC-firmware-event-log.bin"

//go:embed sample/SYNTHETIC-firmware-event-log.bin
var demoFirmware []byte

// evNoAction events are logged but not extended (PFP §10.4.1).
const evNoAction = 0x3

// replayFirmwareLog returns a simulator boot hook (agent.Config.SimulatorBoot)
// that extends every measured event of log into the simulator's PCRs, in
// log order, one TPM2_PCR_Extend per event carrying its digest in each bank
// the log has (go-attestation reads the log).
func replayFirmwareLog(log []byte) func(*tpm.Device) error {
	return func(d *tpm.Device) error {
		el, err := goattest.ParseEventLog(log)
		if err != nil {
			return fmt.Errorf("replay firmware log: %w", err)
		}
		var events [][]goattest.Event
		var banks []crypto.Hash
		for _, alg := range el.Algs {
			h, ok := bankOf(alg)
			if !ok {
				return fmt.Errorf("replay firmware log: bank %v", alg)
			}
			events = append(events, el.Events(alg))
			banks = append(banks, h)
		}
		if len(events) == 0 {
			return errors.New("replay firmware log: no bank")
		}
		for i, e := range events[0] {
			if e.Type == evNoAction {
				continue
			}
			digests := map[crypto.Hash][]byte{}
			for b, evs := range events {
				if i >= len(evs) || evs[i].Index != e.Index {
					return fmt.Errorf("replay firmware log: event %d differs between banks", i)
				}
				digests[banks[b]] = evs[i].Digest
			}
			if err := d.ExtendBanks(e.Index, digests); err != nil {
				return fmt.Errorf("replay firmware log: event %d: %w", i, err)
			}
		}
		return nil
	}
}

func bankOf(alg goattest.HashAlg) (crypto.Hash, bool) {
	for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256, crypto.SHA384, crypto.SHA512} {
		if x, err := goattest.FromCryptoHash(h); err == nil && x == alg {
			return h, true
		}
	}
	return 0, false
}

// changeCmdline returns a copy of log with one byte of GRUB's kernel
// command line string changed ("ro" becomes "rw"), or of its last byte
// when it has none.
func changeCmdline(log []byte) []byte {
	out := bytes.Clone(log)
	if i := bytes.Index(out, []byte("kernel_cmdline: ")); i >= 0 {
		if j := bytes.Index(out[i:], []byte(" ro")); j >= 0 {
			out[i+j+2] = 'w'
			return out
		}
	}
	out[len(out)-1] ^= 1
	return out
}
