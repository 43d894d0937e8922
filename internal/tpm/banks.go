package tpm

import (
	"crypto"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// algHash maps the TPM hash algorithm ids this package handles to Go hashes
// (TPM 2.0 Part 2 §6.3, TCG Algorithm Registry).
var algHash = [...]struct {
	alg  tpm2.TPMAlgID
	hash crypto.Hash
}{
	{tpm2.TPMAlgSHA1, crypto.SHA1},
	{tpm2.TPMAlgSHA256, crypto.SHA256},
	{tpm2.TPMAlgSHA384, crypto.SHA384},
	{tpm2.TPMAlgSHA512, crypto.SHA512},
}

// hashOf returns the Go hash for a TPM algorithm id.
func hashOf(alg tpm2.TPMAlgID) (crypto.Hash, bool) {
	for _, e := range algHash {
		if e.alg == alg {
			return e.hash, true
		}
	}
	return 0, false
}

// algOf returns the TPM algorithm id for a Go hash.
func algOf(h crypto.Hash) (tpm2.TPMAlgID, bool) {
	for _, e := range algHash {
		if e.hash == h {
			return e.alg, true
		}
	}
	return 0, false
}

// activeBanks asks the TPM for its PCR allocation (TPM2_GetCapability,
// TPM_CAP_PCRS) and keeps the banks with at least one PCR allocated, in the
// order the TPM lists them.
func activeBanks(t transport.TPM) ([]crypto.Hash, error) {
	rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapPCRs, PropertyCount: 1}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("banks/get: %w", err)
	}
	sel, err := rsp.CapabilityData.Data.AssignedPCR()
	if err != nil {
		return nil, fmt.Errorf("banks/get: %w", err)
	}
	var banks []crypto.Hash
	for _, s := range sel.PCRSelections {
		h, ok := hashOf(s.Hash)
		if !ok || !anyBit(s.PCRSelect) {
			continue
		}
		banks = append(banks, h)
	}
	if len(banks) == 0 {
		return nil, fmt.Errorf("banks/get: no active bank with a supported hash")
	}
	return banks, nil
}

func anyBit(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return true
		}
	}
	return false
}

// pcrCount reads TPM_PT_PCR_COUNT.
func pcrCount(t transport.TPM) (int, error) {
	rsp, err := tpm2.GetCapability{
		Capability:    tpm2.TPMCapTPMProperties,
		Property:      uint32(tpm2.TPMPTPCRCount),
		PropertyCount: 1,
	}.Execute(t)
	if err != nil {
		return 0, fmt.Errorf("pcrcount/get: %w", err)
	}
	props, err := rsp.CapabilityData.Data.TPMProperties()
	if err != nil {
		return 0, fmt.Errorf("pcrcount/get: %w", err)
	}
	for _, p := range props.TPMProperty {
		if p.Property == tpm2.TPMPTPCRCount {
			if p.Value == 0 || p.Value > 255 {
				return 0, fmt.Errorf("pcrcount/get: implausible count %d", p.Value)
			}
			return int(p.Value), nil
		}
	}
	return 0, fmt.Errorf("pcrcount/get: TPM_PT_PCR_COUNT not reported")
}
