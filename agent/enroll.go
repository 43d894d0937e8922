package agent

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/bpfattest/bpfattest/internal/tpm"
)

// ActivateCredential answers a verifier's enrolment challenge: a
// credential made for the agent's AK to the endorsement key its EK
// certificate names (attest.MakeCredential). The TPM recovers the secret
// only if the EK is its own and the AK is loaded in it, which is what the
// verifier learns from the answer. akPublic must be the agent's AK.
//
// Errors: ErrInvalid (another AK, or a credential the TPM does not
// activate), ErrUnavailable (the TPM failed).
func (a *Agent) ActivateCredential(ctx context.Context, akPublic, credentialBlob, encryptedSecret []byte) ([]byte, error) {
	if err := a.usable(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("agent/activate: %w", err)
	}
	if !bytes.Equal(akPublic, a.ak.PublicArea()) {
		return nil, fmt.Errorf("agent/activate: %w: the credential is for another attestation key", ErrInvalid)
	}
	var secret []byte
	err := a.sched.do(ctx, tpmEnrol, func() error {
		var err error
		secret, err = a.dev.ActivateCredential(a.ak, ekKind(a.ekCert), credentialBlob, encryptedSecret)
		return err
	})
	switch ctxErr := ctx.Err(); {
	case ctxErr != nil && errors.Is(err, ctxErr): // gave up waiting for the TPM
		return nil, fmt.Errorf("agent/activate: %w", err)
	case errors.Is(err, tpm.ErrCredential):
		return nil, fmt.Errorf("agent/activate: %w: %w", ErrInvalid, err)
	case err != nil:
		return nil, fmt.Errorf("agent/activate: %w: %w", ErrUnavailable, err)
	}
	return secret, nil
}

// ekKind is the kind of EK the certificate describes: ECC for an ECDSA
// key, RSA otherwise (and without a certificate).
func ekKind(der []byte) tpm.EKKind {
	if c, err := x509.ParseCertificate(der); err == nil {
		if _, ok := c.PublicKey.(*ecdsa.PublicKey); ok {
			return tpm.EKECCP256
		}
	}
	return tpm.EKRSA2048
}
