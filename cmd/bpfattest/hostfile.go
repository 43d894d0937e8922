package main

import (
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/bpfattest/bpfattest/attest"
	"github.com/bpfattest/bpfattest/internal/boundedfile"
)

// hostFile is what a verifier keeps for one agent (--state FILE, JSON):
// the pinned attestation key, how it came to be pinned, and the State of
// the last verification. It is the verifier's own memory: keep it where
// the agent cannot write.
//
//	{
//	  "version": 1,
//	  "ak_public": "<TPMT_PUBLIC, base64>",
//	  "pinned": "ek-credential" | "ak-file" | "tofu",
//	  "ek_certificate_sha256": "<hex, when enrolled>",
//	  "state": { attest.State JSON, absent before the first verification }
//	}
type hostFile struct {
	Version      int           `json:"version"`
	AKPublic     []byte        `json:"ak_public"`
	Pinned       string        `json:"pinned"`
	EKCertSHA256 string        `json:"ek_certificate_sha256,omitempty"`
	State        *attest.State `json:"state,omitempty"`
}

const hostFileVersion = 1

// How an AK came to be pinned.
const (
	pinEKCredential = "ek-credential" // bpfattest enroll: EK chain + credential activation
	pinAKFile       = "ak-file"       // --ak FILE: an operator supplied it
	pinTOFU         = "tofu"          // --tofu: the agent's word at first contact
)

// maxHostFileSize bounds a state file (the State's records dominate).
const maxHostFileSize = 64 << 20

// readHostFile reads a state file; a missing file is an error wrapping
// os.ErrNotExist.
func readHostFile(path string) (*hostFile, error) {
	b, err := boundedfile.ReadFile(path, maxHostFileSize)
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	var hf hostFile
	if err := json.Unmarshal(b, &hf); err != nil {
		return nil, fmt.Errorf("state %s: %w", path, err)
	}
	if hf.Version != hostFileVersion {
		return nil, fmt.Errorf("state %s: version %d, want %d", path, hf.Version, hostFileVersion)
	}
	switch hf.Pinned {
	case pinEKCredential, pinAKFile, pinTOFU:
	default:
		return nil, fmt.Errorf("state %s: pinned %q, want %s, %s or %s", path, hf.Pinned, pinEKCredential, pinAKFile, pinTOFU)
	}
	if len(hf.AKPublic) == 0 {
		return nil, fmt.Errorf("state %s: no ak_public", path)
	}
	return &hf, nil
}

// writeHostFile replaces path atomically: a temporary file in the same
// directory, synced, renamed over path, and the directory synced, so a
// crash leaves the old file or the new one, never a mix.
func writeHostFile(path string, hf *hostFile) error {
	b, err := json.MarshalIndent(hf, "", "  ")
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	return writeFileAtomic(path, append(b, '\n'), 0o600)
}

func writeFileAtomic(path string, b []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	_, err = f.Write(b)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("write %s: sync directory: %w", path, err)
	}
	return nil
}

// akPEMType is the PEM block type of an AK file written by enroll.
const akPEMType = "TPMT_PUBLIC"

// readAKFile reads a pinned AK: a PEM block of type TPMT_PUBLIC, base64
// text, or the raw TPMT_PUBLIC bytes (as tpm2_readpublic -f tpmt writes).
func readAKFile(path string) ([]byte, error) {
	b, err := boundedfile.ReadFile(path, maxKeyFileSize)
	if err != nil {
		return nil, fmt.Errorf("ak: %w", err)
	}
	if blk, _ := pem.Decode(b); blk != nil {
		if blk.Type != akPEMType {
			return nil, fmt.Errorf("ak %s: PEM block %q, want %q", path, blk.Type, akPEMType)
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
