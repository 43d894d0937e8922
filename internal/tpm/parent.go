package tpm

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// DefaultParentHandle is the persistent handle where this package keeps the
// AK's parent: an ECC P-256 restricted decryption (storage) key made from
// go-tpm's ECCSRKTemplate (the TCG reference SRK template), but created in
// the endorsement hierarchy, not the owner one. The hierarchy matters: a
// TPM obfuscates resetCount and restartCount in every attestation signed by
// a key outside the endorsement and platform hierarchies (TPM 2.0 Part 3
// §18.1), and verifiers detect reboots from those counters in the quote.
// The handle is in the endorsement range (0x8101xxxx) but away from the EK
// handles of the TCG EK Credential Profile (0x81010001 and the few after
// it).
const DefaultParentHandle uint32 = 0x81010100

// ensureParent returns the name of the parent storage key at handle,
// creating it (TPM2_CreatePrimary in the endorsement hierarchy, then
// TPM2_EvictControl with owner auth) when the handle is empty. A key at the
// handle that is not such a key is ErrParentMismatch: it belongs to someone
// else and is left alone. Creating needs empty endorsement and owner auth.
func ensureParent(t transport.TPM, handle uint32) (tpm2.TPM2BName, error) {
	h := tpm2.TPMHandle(handle)
	if h>>24 != 0x81 {
		return tpm2.TPM2BName{}, fmt.Errorf("parent: %#x is not a persistent handle", handle)
	}
	rp, err := tpm2.ReadPublic{ObjectHandle: h}.Execute(t)
	switch {
	case err == nil:
		pub, err := rp.OutPublic.Contents()
		if err != nil {
			return tpm2.TPM2BName{}, fmt.Errorf("parent: read %#x: %w", handle, err)
		}
		if !sameTemplate(*pub, tpm2.ECCSRKTemplate) {
			return tpm2.TPM2BName{}, fmt.Errorf("parent: %#x: %w", handle, ErrParentMismatch)
		}
		return rp.Name, nil
	case !errors.Is(err, tpm2.TPMRCHandle):
		return tpm2.TPM2BName{}, fmt.Errorf("parent: read %#x: %w", handle, err)
	}

	cp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHEndorsement, Auth: tpm2.PasswordAuth(nil)},
		InPublic:      tpm2.New2B(tpm2.ECCSRKTemplate),
	}.Execute(t)
	if err != nil {
		return tpm2.TPM2BName{}, fmt.Errorf("parent: create: %w", err)
	}
	_, err = tpm2.EvictControl{
		Auth:             tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		ObjectHandle:     &tpm2.NamedHandle{Handle: cp.ObjectHandle, Name: cp.Name},
		PersistentHandle: h,
	}.Execute(t)
	if ferr := flush(t, cp.ObjectHandle); err == nil && ferr != nil {
		return tpm2.TPM2BName{}, fmt.Errorf("parent: %w", ferr)
	}
	if err != nil {
		return tpm2.TPM2BName{}, fmt.Errorf("parent: persist at %#x: %w", handle, err)
	}
	return cp.Name, nil
}

// sameTemplate reports whether pub was created from tmpl: everything but
// the unique field matches.
func sameTemplate(pub, tmpl tpm2.TPMTPublic) bool {
	if pub.Type != tmpl.Type {
		return false // and swapping Unique would mismatch the union tag
	}
	pub.Unique = tmpl.Unique
	return bytes.Equal(tpm2.Marshal(pub), tpm2.Marshal(tmpl))
}
