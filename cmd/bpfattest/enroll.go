package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"google.golang.org/grpc/status"

	"github.com/bpfattest/bpfattest/attest"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
)

// runEnroll implements `bpfattest enroll --agent ADDR --ek-ca FILE|DIR --state
// FILE [--ak-out FILE]`: it reads the agent's identity, verifies its EK
// certificate against the --ek-ca roots, makes a credential for the AK's
// name to the EK, has the agent activate it, and, when the agent returns
// the secret, pins the AK in the state file (pinned "ek-credential").
// Exit 0 enrolled; 1 enrolment refused (no or untrusted EK certificate,
// wrong secret, agent error); 2 usage.
func runEnroll(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("enroll", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var rf remoteFlags
	rf.register(fs)
	ekCA := fs.String("ek-ca", "", "EK certificate issuers to trust: a PEM file, or a directory of PEM/DER files (*.pem, *.crt, *.cer, *.der; Keylime's tpm_cert_store layout); self-signed ones are roots, the others intermediates (required)")
	stateFile := fs.String("state", "", "the verifier's file for this agent, written with the pinned AK (required)")
	akOut := fs.String("ak-out", "", "also write the enrolled AK here (PEM TPMT_PUBLIC, for verify --ak)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: bpfattest enroll --agent ADDR --ek-ca FILE|DIR --state FILE [--ak-out FILE] [TLS flags]")
		fmt.Fprintln(stderr, "\nTies the agent's AK to its TPM's endorsement key and pins it. Exit 0 enrolled, 1 refused, 2 usage.")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	usage := usageError(stderr, "enroll")
	switch {
	case fs.NArg() != 0:
		return usage("unexpected argument %q", fs.Arg(0))
	case *ekCA == "" || *stateFile == "":
		return usage("--ek-ca and --state are required")
	}
	roots, inter, err := readEKIssuers(*ekCA)
	if err != nil {
		return usage("%v", err)
	}
	prev, err := readHostFile(*stateFile)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return usage("%v", err)
	}
	conn, err := dialRemote(&rf)
	if err != nil {
		if errors.Is(err, errDialUsage) {
			return usage("%v", err)
		}
		fmt.Fprintf(stderr, "bpfattest enroll: %v\n", err)
		return exitFailed
	}
	defer conn.Close()
	fail := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "bpfattest enroll: %s: "+format+"\n", append([]any{rf.agent}, args...)...)
		return exitFailed
	}
	hf, err := enroll(ctx, pb.NewAttestationServiceClient(conn), roots, inter)
	if err != nil {
		return fail("%v", err)
	}
	if prev != nil {
		if !bytes.Equal(prev.AKPublic, hf.AKPublic) {
			return fail("state %s pins another AK (%s); remove the file to enrol this one", *stateFile, prev.Pinned)
		}
		hf.State = prev.State // the same AK: keep verifying from where we were
	}
	if err := writeHostFile(*stateFile, hf); err != nil {
		return fail("%v", err)
	}
	if *akOut != "" {
		if err := writeFileAtomic(*akOut, pem.EncodeToMemory(&pem.Block{Type: akPEMType, Bytes: hf.AKPublic}), 0o644); err != nil {
			return fail("%v", err)
		}
	}
	akSum := sha256.Sum256(hf.AKPublic)
	fmt.Fprintf(stdout, "enrolled:   %s\n", rf.agent)
	fmt.Fprintf(stdout, "ek:         certificate sha256 %s, chains to --ek-ca\n", hf.EKCertSHA256)
	fmt.Fprintf(stdout, "ak:         TPMT_PUBLIC sha256 %s, activated a credential for the EK\n", hex.EncodeToString(akSum[:]))
	fmt.Fprintf(stdout, "state:      %s\n", *stateFile)
	return exitOK
}

// enroll runs the enrolment protocol with an agent and returns the host
// file pinning its AK.
func enroll(ctx context.Context, client pb.AttestationServiceClient, roots, inter *x509.CertPool) (*hostFile, error) {
	id, err := client.Identity(ctx, &pb.IdentityRequest{})
	if err != nil {
		st := status.Convert(err)
		return nil, fmt.Errorf("identity: %s: %s", st.Code(), st.Message())
	}
	if len(id.GetEkCertificate()) == 0 {
		return nil, errors.New("the agent's TPM has no EK certificate: enrol its AK out of band (verify --ak FILE)")
	}
	ekCert, err := attest.VerifyEKCertificate(id.GetEkCertificate(), roots, inter, time.Now())
	if err != nil {
		return nil, err
	}
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
	return &hostFile{Version: hostFileVersion, AKPublic: id.GetAkPublic(), Pinned: pinEKCredential,
		EKCertSHA256: hex.EncodeToString(ekSum[:])}, nil
}

// readEKIssuers reads the --ek-ca file or directory (attest.LoadEKIssuers):
// self-signed certificates become roots, the others intermediates. At least
// one root is required.
func readEKIssuers(path string) (roots, inter *x509.CertPool, err error) {
	iss, err := attest.LoadEKIssuers(path)
	if err != nil {
		return nil, nil, fmt.Errorf("--ek-ca: %w", err)
	}
	return iss.Roots, iss.Intermediates, nil
}
