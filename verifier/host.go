package verifier

import (
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/bpfattest/bpfattest/attest"
	"github.com/bpfattest/bpfattest/internal/atomicfile"
	"github.com/bpfattest/bpfattest/internal/boundedfile"
)

// Host is what a verifier keeps for one agent (a state file, JSON): the
// pinned attestation key, how it came to be pinned, and the State of the
// last verification. It is the verifier's own memory: keep it where the
// agent cannot write.
//
//	{
//	  "version": 1,
//	  "ak_public": "<TPMT_PUBLIC, base64>",
//	  "pinned": "ek-credential" | "ak-file" | "tofu",
//	  "ek_certificate_sha256": "<hex, when enrolled>",
//	  "tpm": { "manufacturer": "id:49465800", "vendor": "IFX", "model": "SLB9670", "firmware": "id:00070055" }, when enrolled and the EK certificate names it
//	  "state": { attest.State JSON, absent before the first verification }
//	}
type Host struct {
	Version      int           `json:"version"`
	AKPublic     []byte        `json:"ak_public"`
	Pinned       string        `json:"pinned"`
	EKCertSHA256 string        `json:"ek_certificate_sha256,omitempty"`
	TPM          *TPM          `json:"tpm,omitempty"`
	State        *attest.State `json:"state,omitempty"`
}

// TPM is the TPM an enrolled host's EK certificate names (its
// subjectAltName, TCG EK Credential Profile §3.2.9), as the certificate
// spells it: reported, not relied on.
type TPM struct {
	Manufacturer string `json:"manufacturer,omitempty"` // "id:" and the TCG vendor ID in hex
	Vendor       string `json:"vendor,omitempty"`       // the vendor ID as text ("IFX", "NTC"), when printable
	Model        string `json:"model,omitempty"`
	Firmware     string `json:"firmware,omitempty"` // tcg-at-tpmVersion: "id:" and hex
}

// tpmOf returns the identity as a Host keeps it, nil when the certificate
// names none.
func tpmOf(id attest.TPMIdentity) *TPM {
	if id == (attest.TPMIdentity{}) {
		return nil
	}
	return &TPM{Manufacturer: id.Manufacturer, Vendor: id.Vendor(), Model: id.Model, Firmware: id.Version}
}

// HostVersion is the version of the state file format.
const HostVersion = 1

// How an AK came to be pinned.
const (
	PinEKCredential = "ek-credential" // bpfattest enroll: EK chain + credential activation
	PinAKFile       = "ak-file"       // an operator supplied the AK (verify --ak FILE)
	PinTOFU         = "tofu"          // the agent's word at first contact (verify --tofu)
)

// Size limits of the files this package reads.
const (
	MaxHostFileSize = 64 << 20 // a state file (the State's records dominate)
	MaxAKFileSize   = 1 << 20  // an AK file
)

// ReadHost reads a state file; a missing file is an error wrapping
// os.ErrNotExist.
func ReadHost(path string) (*Host, error) {
	b, err := boundedfile.ReadFile(path, MaxHostFileSize)
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	var h Host
	if err := json.Unmarshal(b, &h); err != nil {
		return nil, fmt.Errorf("state %s: %w", path, err)
	}
	if h.Version != HostVersion {
		return nil, fmt.Errorf("state %s: version %d, want %d", path, h.Version, HostVersion)
	}
	switch h.Pinned {
	case PinEKCredential, PinAKFile, PinTOFU:
	default:
		return nil, fmt.Errorf("state %s: pinned %q, want %s, %s or %s", path, h.Pinned, PinEKCredential, PinAKFile, PinTOFU)
	}
	if len(h.AKPublic) == 0 {
		return nil, fmt.Errorf("state %s: no ak_public", path)
	}
	return &h, nil
}

// WriteHost replaces the state file at path atomically: a crash leaves the
// old file or the new one, never a mix.
func WriteHost(path string, h *Host) error {
	b, err := json.MarshalIndent(h, "", "  ")
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	return atomicfile.Write(path, append(b, '\n'), 0o600)
}

// AKPEMType is the PEM block type of an AK file (bpfattest enroll --ak-out).
const AKPEMType = "TPMT_PUBLIC"

// ReadAKFile reads a pinned AK: a PEM block of type TPMT_PUBLIC, base64
// text, or the raw TPMT_PUBLIC bytes (as tpm2_readpublic -f tpmt writes).
func ReadAKFile(path string) ([]byte, error) {
	b, err := boundedfile.ReadFile(path, MaxAKFileSize)
	if err != nil {
		return nil, fmt.Errorf("ak: %w", err)
	}
	if blk, _ := pem.Decode(b); blk != nil {
		if blk.Type != AKPEMType {
			return nil, fmt.Errorf("ak %s: PEM block %q, want %q", path, blk.Type, AKPEMType)
		}
		return blk.Bytes, nil
	}
	if raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b))); err == nil && len(raw) > 0 {
		return raw, nil
	}
	if len(b) == 0 {
		return nil, errors.New("ak " + path + ": empty")
	}
	return b, nil
}

// Pin decides which AK to pin for one agent: the state file's, when it has
// one; otherwise the AK file's or, with tofu, the one the agent presents
// at first contact (Check asks for it). A state file that pins an AK is
// never overridden: an AK file or tofu against it is an error, so a
// changed AK is always a decision somebody made by hand.
func Pin(stateFile, akFile string, tofu bool) (*Host, error) {
	var h *Host
	if stateFile != "" {
		var err error
		h, err = ReadHost(stateFile)
		switch {
		case errors.Is(err, os.ErrNotExist):
			h = nil
		case err != nil:
			return nil, err
		}
	}
	if h != nil && len(h.AKPublic) > 0 {
		if akFile != "" || tofu {
			return nil, fmt.Errorf("state %s already pins an AK (%s); remove the file to pin another", stateFile, h.Pinned)
		}
		return h, nil
	}
	switch {
	case akFile != "":
		ak, err := ReadAKFile(akFile)
		if err != nil {
			return nil, err
		}
		return &Host{Version: HostVersion, AKPublic: ak, Pinned: PinAKFile}, nil
	case tofu:
		return &Host{Version: HostVersion, Pinned: PinTOFU}, nil
	}
	if stateFile == "" {
		return nil, errors.New("no AK pinned: give --state FILE (from `bpfattest enroll`), --ak FILE or --tofu")
	}
	return nil, fmt.Errorf("state %s pins no AK: enroll first (`bpfattest enroll`), or give --ak FILE or --tofu", stateFile)
}
