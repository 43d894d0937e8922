//go:build cgo

package tpm

import (
	"bytes"
	"fmt"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpm2/transport"
)

// openSimulator gets the process's reference simulator, manufactured afresh
// with random seeds. It blocks while another caller holds it.
func openSimulator() (transport.TPMCloser, error) {
	s, err := simulator.Get()
	if err != nil {
		return nil, fmt.Errorf("simulator: %w", err)
	}
	return &simTPM{sim: s}, nil
}

// simTPM sends whole commands to the simulator and collects its whole
// response. The Device mutex serialises it.
type simTPM struct{ sim *simulator.Simulator }

func (s *simTPM) Send(cmd []byte) ([]byte, error) {
	if _, err := s.sim.Write(cmd); err != nil {
		return nil, err
	}
	var rsp bytes.Buffer
	if _, err := rsp.ReadFrom(s.sim); err != nil {
		return nil, err
	}
	return rsp.Bytes(), nil
}

func (s *simTPM) Close() error { return s.sim.Close() }
