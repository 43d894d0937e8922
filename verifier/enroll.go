package verifier

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/status"

	"github.com/bpfattest/bpfattest/attest"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
)

// Enroll runs the enrolment protocol with an agent: it reads the agent's
// identity, verifies its EK certificate against the roots (and
// intermediates) at the current time, makes a credential for the AK's name
// to the EK, has the agent activate it, and, when the agent returns the
// secret, returns a Host pinning the AK (PinEKCredential) that keeps the
// TPM manufacturer, model and firmware version the certificate names.
func Enroll(ctx context.Context, client pb.AttestationServiceClient, roots, inter *x509.CertPool) (*Host, error) {
	id, err := client.Identity(ctx, &pb.IdentityRequest{})
	if err != nil {
		st := status.Convert(err)
		return nil, fmt.Errorf("identity: %s: %s", st.Code(), st.Message())
	}
	if len(id.GetEkCertificate()) == 0 {
		return nil, errors.New("the agent's TPM has no EK certificate: enrol its AK out of band (verify --ak FILE)")
	}
	ek, err := attest.VerifyEK(id.GetEkCertificate(), &attest.EKIssuers{Roots: roots, Intermediates: inter}, time.Now())
	if err != nil {
		return nil, err
	}
	ekCert := ek.Certificate
	secret := make([]byte, 32)
	rand.Read(secret)
	cred, err := attest.MakeCredential(rand.Reader, ekCert.PublicKey, id.GetAkPublic(), secret)
	if err != nil {
		return nil, err
	}
	rsp, err := client.ActivateCredential(ctx, &pb.ActivateCredentialRequest{AkPublic: id.GetAkPublic(),
		CredentialBlob: cred.CredentialBlob, EncryptedSecret: cred.EncryptedSecret})
	if err != nil {
		st := status.Convert(err)
		return nil, fmt.Errorf("activate credential: %s: %s", st.Code(), st.Message())
	}
	if subtle.ConstantTimeCompare(rsp.GetSecret(), secret) != 1 {
		return nil, errors.New("activate credential: the agent returned another secret: its AK is not in the TPM of the certified EK")
	}
	ekSum := sha256.Sum256(id.GetEkCertificate())
	return &Host{Version: HostVersion, AKPublic: id.GetAkPublic(), Pinned: PinEKCredential,
		EKCertSHA256: hex.EncodeToString(ekSum[:]), TPM: tpmOf(ek.TPM)}, nil
}
