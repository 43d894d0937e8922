package fleet

import (
	"errors"
	"fmt"
	"os"

	"github.com/bpfattest/bpfattest/verifier"
)

// SpecsFromInventory turns an inventory's hosts (verifier.ParseInventory,
// the format of bpfattest scan) into pull agent specs under policy: a
// host's AK file is pinned, and its state file, when it exists, gives the
// pinned AK and the State to continue from, so a fleet scanned with
// bpfattest scan moves to the service without a new first contact.
func SpecsFromInventory(targets []verifier.Target, policy string) ([]AgentSpec, error) {
	specs := make([]AgentSpec, 0, len(targets))
	for _, t := range targets {
		s := AgentSpec{Name: t.Name, Mode: "pull", Address: t.Address, Policy: policy}
		if t.AK != "" {
			ak, err := verifier.ReadAKFile(t.AK)
			if err != nil {
				return nil, fmt.Errorf("host %s: %w", t.Name, err)
			}
			s.AKPublic = ak
		}
		if t.State != "" {
			h, err := verifier.ReadHost(t.State)
			switch {
			case errors.Is(err, os.ErrNotExist):
			case err != nil:
				return nil, fmt.Errorf("host %s: %w", t.Name, err)
			default:
				if s.AKPublic != nil && string(s.AKPublic) != string(h.AKPublic) {
					return nil, fmt.Errorf("host %s: state %s pins another AK than %s", t.Name, t.State, t.AK)
				}
				s.AKPublic, s.AKPinned, s.EKCertSHA256 = h.AKPublic, h.Pinned, h.EKCertSHA256
				if h.State != nil {
					if s.State, err = h.State.MarshalBinary(); err != nil {
						return nil, fmt.Errorf("host %s: %w", t.Name, err)
					}
				}
			}
		}
		specs = append(specs, s)
	}
	return specs, nil
}
