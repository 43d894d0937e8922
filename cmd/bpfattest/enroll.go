package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/bpfattest/bpfattest/attest"
	"github.com/bpfattest/bpfattest/internal/atomicfile"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
	"github.com/bpfattest/bpfattest/verifier"
)

// runEnroll implements `bpfattest enroll --agent ADDR --ek-ca FILE|DIR --state
// FILE [--ak-out FILE]`: it reads the agent's identity, verifies its EK
// certificate against the --ek-ca roots, makes a credential for the AK's
// name to the EK, has the agent activate it, and, when the agent returns
// the secret, pins the AK in the state file (pinned "ek-credential").
// Exit 0 enrolled; 1 enrolment refused (no or untrusted EK certificate,
// wrong secret, agent error); 2 usage.
func runEnroll(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("enroll", stderr,
		"usage: bpfattest enroll --agent ADDR --ek-ca FILE|DIR --state FILE [--ak-out FILE] [TLS flags]",
		"\nTies the agent's AK to its TPM's endorsement key and pins it. Exit 0 enrolled, 1 refused, 2 usage.")
	var rf remoteFlags
	rf.register(fs)
	ekCA := fs.String("ek-ca", "", "EK certificate issuers to trust: a PEM file, or a directory of PEM/DER files (*.pem, *.crt, *.cer, *.der; Keylime's tpm_cert_store layout); self-signed ones are roots, the others intermediates (required)")
	stateFile := fs.String("state", "", "the verifier's file for this agent, written with the pinned AK (required)")
	akOut := fs.String("ak-out", "", "also write the enrolled AK here (PEM TPMT_PUBLIC, for verify --ak)")
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
	prev, err := verifier.ReadHost(*stateFile)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return usage("%v", err)
	}
	conn, code, ok := rf.connect(stderr, "enroll", exitFailed)
	if !ok {
		return code
	}
	defer conn.Close()
	fail := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "bpfattest enroll: %s: "+format+"\n", append([]any{rf.agent}, args...)...)
		return exitFailed
	}
	hf, err := verifier.Enroll(ctx, pb.NewAttestationServiceClient(conn), roots, inter)
	if err != nil {
		return fail("%v", err)
	}
	if prev != nil {
		if !bytes.Equal(prev.AKPublic, hf.AKPublic) {
			return fail("state %s pins another AK (%s); remove the file to enrol this one", *stateFile, prev.Pinned)
		}
		hf.State = prev.State // the same AK: keep verifying from where we were
	}
	if err := verifier.WriteHost(*stateFile, hf); err != nil {
		return fail("%v", err)
	}
	if *akOut != "" {
		if err := atomicfile.Write(*akOut, pem.EncodeToMemory(&pem.Block{Type: verifier.AKPEMType, Bytes: hf.AKPublic}), 0o644); err != nil {
			return fail("%v", err)
		}
	}
	akSum := sha256.Sum256(hf.AKPublic)
	fmt.Fprintf(stdout, "enrolled:   %s\n", rf.agent)
	fmt.Fprintf(stdout, "ek:         certificate sha256 %s, chains to --ek-ca\n", hf.EKCertSHA256)
	if t := hf.TPM; t != nil {
		fmt.Fprintf(stdout, "tpm:        manufacturer %s (%s), model %s, firmware %s: as the certificate names it, kept in the state\n",
			orDash(t.Manufacturer), orDash(t.Vendor), orDash(t.Model), orDash(t.Firmware))
	}
	fmt.Fprintf(stdout, "ak:         TPMT_PUBLIC sha256 %s, activated a credential for the EK\n", hex.EncodeToString(akSum[:]))
	fmt.Fprintf(stdout, "state:      %s\n", *stateFile)
	return exitOK
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
