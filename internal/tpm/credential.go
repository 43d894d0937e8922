package tpm

import (
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// EKKind names an endorsement key by the TCG default template it is made
// from (TCG EK Credential Profile for TPM Family 2.0, §B.3.3 template L-1
// for RSA 2048, §B.3.4 template L-2 for ECC NIST P-256). The EK
// certificate in NV describes the key the template gives.
type EKKind int

// Endorsement key kinds.
const (
	EKRSA2048 EKKind = iota + 1
	EKECCP256
)

// ErrCredential reports a credential the TPM would not activate: made for
// another endorsement key or another object name, or altered (TPM 2.0
// Part 3 §12.5: TPM_RC_INTEGRITY, TPM_RC_VALUE and the like).
var ErrCredential = errors.New("credential does not activate")

func (k EKKind) template() (tpm2.TPMTPublic, error) {
	switch k {
	case EKRSA2048:
		return tpm2.RSAEKTemplate, nil
	case EKECCP256:
		return tpm2.ECCEKTemplate, nil
	}
	return tpm2.TPMTPublic{}, fmt.Errorf("ek kind %d", int(k))
}

// EKPublic returns the TPMT_PUBLIC of the endorsement key of kind ek, as
// TPM2_CreatePrimary in the endorsement hierarchy makes it from the
// default template. Needs empty endorsement auth.
func (d *Device) EKPublic(ek EKKind) ([]byte, error) {
	tmpl, err := ek.template()
	if err != nil {
		return nil, fmt.Errorf("tpm/ekpublic: %w", err)
	}
	var pub []byte
	err = d.do(func(t transport.TPM) error {
		rsp, err := tpm2.CreatePrimary{
			PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHEndorsement, Auth: tpm2.PasswordAuth(nil)},
			InPublic:      tpm2.New2B(tmpl),
		}.Execute(t)
		if err != nil {
			return fmt.Errorf("create ek: %w", err)
		}
		pub = rsp.OutPublic.Bytes()
		return flush(t, rsp.ObjectHandle)
	})
	if err != nil {
		return nil, fmt.Errorf("tpm/ekpublic: %w", err)
	}
	return pub, nil
}

// ActivateCredential recovers the secret of a credential made (by
// TPM2_MakeCredential or its software equivalent) for the AK's name to
// the endorsement key of kind ek: TPM2_CreatePrimary of the EK in the
// endorsement hierarchy, TPM2_Load of the AK, then TPM2_ActivateCredential
// with the EK authorized by its policy (PolicySecret of the endorsement
// hierarchy). Both objects are flushed afterwards. A credential the TPM
// refuses is ErrCredential. Needs empty endorsement auth.
func (d *Device) ActivateCredential(ak *AK, ek EKKind, credentialBlob, encryptedSecret []byte) ([]byte, error) {
	tmpl, err := ek.template()
	if err != nil {
		return nil, fmt.Errorf("tpm/activate: %w", err)
	}
	var secret []byte
	err = d.do(func(t transport.TPM) error {
		ekRsp, err := tpm2.CreatePrimary{
			PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHEndorsement, Auth: tpm2.PasswordAuth(nil)},
			InPublic:      tpm2.New2B(tmpl),
		}.Execute(t)
		if err != nil {
			return fmt.Errorf("create ek: %w", err)
		}
		defer flush(t, ekRsp.ObjectHandle)
		akHandle, akName, err := loadAK(t, ak)
		if err != nil {
			return err
		}
		defer flush(t, akHandle)
		rsp, err := tpm2.ActivateCredential{
			ActivateHandle: tpm2.AuthHandle{Handle: akHandle, Name: akName, Auth: tpm2.PasswordAuth(nil)},
			KeyHandle: tpm2.AuthHandle{Handle: ekRsp.ObjectHandle, Name: ekRsp.Name,
				Auth: tpm2.Policy(tpm2.TPMAlgSHA256, 16, tpm2.PolicyCallback(endorsementPolicy))},
			CredentialBlob: tpm2.TPM2BIDObject{Buffer: credentialBlob},
			Secret:         tpm2.TPM2BEncryptedSecret{Buffer: encryptedSecret},
		}.Execute(t)
		if err != nil {
			var rc tpm2.TPMRC
			var fmt1 tpm2.TPMFmt1Error
			if errors.As(err, &rc) || errors.As(err, &fmt1) {
				return fmt.Errorf("%w: %w", ErrCredential, err)
			}
			return err
		}
		secret = rsp.CertInfo.Buffer
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("tpm/activate: %w", err)
	}
	return secret, nil
}

// endorsementPolicy satisfies the default EK templates' authPolicy:
// TPM2_PolicySecret with the endorsement hierarchy's (empty) auth.
func endorsementPolicy(t transport.TPM, session tpm2.TPMISHPolicy, nonceTPM tpm2.TPM2BNonce) error {
	_, err := tpm2.PolicySecret{
		AuthHandle:    tpm2.AuthHandle{Handle: tpm2.TPMRHEndorsement, Auth: tpm2.PasswordAuth(nil)},
		PolicySession: session,
		NonceTPM:      nonceTPM,
	}.Execute(t)
	return err
}
