package tpm

import (
	"fmt"

	"github.com/google/go-tpm/tpm2/transport"
)

// Test-only access to the Device. It exists only in the test binary.

// Transport returns a transport.TPM that sends through this Device, one
// command at a time under the Device's mutex, for tests that send TPM
// commands this package does not wrap; anything they load they must flush.
// It stops working when the Device is closed.
func (d *Device) Transport() transport.TPM { return lockedTPM{d} }

type lockedTPM struct{ d *Device }

func (l lockedTPM) Send(cmd []byte) ([]byte, error) {
	var rsp []byte
	err := l.d.do(func(t transport.TPM) error {
		var err error
		rsp, err = t.Send(cmd)
		return err
	})
	return rsp, err
}

// PCRCount returns the number of PCRs the TPM implements (24 on PC Client
// TPMs).
func (d *Device) PCRCount() int { return d.npcrs }

// TransientHandles lists the transient objects and loaded sessions the TPM
// holds right now. Behind a resource manager (/dev/tpmrm0) that is this
// connection's view only. Tests use it to prove nothing leaks.
func (d *Device) TransientHandles() ([]uint32, error) {
	var out []uint32
	err := d.do(func(t transport.TPM) error {
		for _, first := range []uint32{firstTransient, firstHMACSession, firstPolicySession} {
			hs, err := handles(t, first)
			if err != nil {
				return err
			}
			for _, h := range hs {
				out = append(out, uint32(h))
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("tpm/handles: %w", err)
	}
	return out, nil
}
