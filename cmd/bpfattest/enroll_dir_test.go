package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bpfattest/bpfattest/verifier"
)

// vendorCA writes a generated vendor root and an intermediate under it
// into dir, the root as PEM and the intermediate as DER.
func vendorCA(t *testing.T, dir, vendor string) {
	t.Helper()
	now := time.Now()
	rootKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	interKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := func(cn string, serial int64) *x509.Certificate {
		return &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn}, NotBefore: now.Add(-time.Hour),
			NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	}
	root := ca(vendor+" EK Root", 1)
	rootDER, err := x509.CreateCertificate(rand.Reader, root, root, &rootKey.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	interDER, err := x509.CreateCertificate(rand.Reader, ca(vendor+" EK Issuing CA", 2), root, &interKey.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{
		vendor + "-root.pem":   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rootDER}),
		vendor + "-issuer.der": interDER,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestEnrollCertStoreDir enrols an agent with --ek-ca naming a directory
// laid out as Keylime's tpm_cert_store: two generated vendors' roots and
// intermediates, the swtpm local CA's root and issuer as separate files,
// and a README. The swtpm's EK certificate chains through the directory;
// without the swtpm CA's files it is refused.
func TestEnrollCertStoreDir(t *testing.T) {
	caDir := filepath.Join(t.TempDir(), "ca")
	sw, _ := ekTPM(t, caDir)
	a := spawnAgent(t, "--tpm", sw.Spec())
	store := t.TempDir()
	vendorCA(t, store, "vendor-a")
	vendorCA(t, store, "vendor-b")
	if err := os.WriteFile(filepath.Join(store, "README"), []byte("TPM vendor EK CAs\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := runEnroll(t.Context(), []string{"--agent", a.listen, "--insecure-loopback", "--ek-ca", store,
		"--state", filepath.Join(t.TempDir(), "x.json")}, &stdout, &stderr)
	if code != exitFailed || !strings.Contains(stderr.String(), "enrolment refused") {
		t.Fatalf("without the swtpm CA: exit %d %s", code, stderr.String())
	}
	for _, f := range []string{"swtpm-localca-rootca-cert.pem", "issuercert.pem"} {
		b, err := os.ReadFile(filepath.Join(caDir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(store, "swtpm-"+f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	stdout.Reset()
	stderr.Reset()
	state := filepath.Join(t.TempDir(), "host.json")
	if code := runEnroll(t.Context(), []string{"--agent", a.listen, "--insecure-loopback", "--ek-ca", store, "--state", state},
		&stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	if hf, err := verifier.ReadHost(state); err != nil || hf.Pinned != verifier.PinEKCredential {
		t.Fatalf("state: %v %+v", err, hf)
	}
}
