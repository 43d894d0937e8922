package main

import (
	"bytes"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/bpfattest/bpfattest/attest"
	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
	"github.com/bpfattest/bpfattest/verifier"
)

// ekTPM manufactures a swtpm with an EK certificate issued by a local CA
// kept in caDir (swtpm_setup --create-ek-cert --create-platform-cert with
// swtpm_localca, both configured by files in the test's directories, so
// nothing outside them is written), starts it and returns it with the
// CA's root and intermediate certificates as one PEM file.
func ekTPM(t *testing.T, caDir string) (*tpmtest.Swtpm, string) {
	t.Helper()
	setup := testutil.RequireTool(t, "swtpm_setup")
	localca := testutil.RequireTool(t, "swtpm_localca")
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	for _, d := range []string{state, caDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"localca.conf": "statedir = " + caDir + "\nsigningkey = " + filepath.Join(caDir, "signkey.pem") +
			"\nissuercert = " + filepath.Join(caDir, "issuercert.pem") + "\ncertserial = " + filepath.Join(caDir, "certserial") + "\n",
		"localca.options": "--platform-manufacturer bpfattest-test\n--platform-version 1.0\n--platform-model test\n",
	}
	files["setup.conf"] = "create_certs_tool = " + localca + "\ncreate_certs_tool_config = " + filepath.Join(dir, "localca.conf") +
		"\ncreate_certs_tool_options = " + filepath.Join(dir, "localca.options") + "\nactive_pcr_banks = sha256\n"
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.CommandContext(t.Context(), setup, "--tpm2", "--tpmstate", state, "--create-ek-cert", "--create-platform-cert",
		"--config", filepath.Join(dir, "setup.conf"), "--logfile", filepath.Join(dir, "setup.log"), "--overwrite")
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+dir, "HOME="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "setup.log"))
		t.Fatalf("swtpm_setup: %v\n%s%s", err, out, log)
	}
	var chain []byte
	for _, f := range []string{"swtpm-localca-rootca-cert.pem", "issuercert.pem"} {
		b, err := os.ReadFile(filepath.Join(caDir, f))
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, b...)
	}
	ca := filepath.Join(dir, "ek-ca.pem")
	if err := os.WriteFile(ca, chain, 0o644); err != nil {
		t.Fatal(err)
	}
	return tpmtest.StartSwtpm(t, tpmtest.SwtpmOptions{StateDir: state}), ca
}

// TestEnroll enrols a real agent on a swtpm whose EK certificate a local
// CA issued: the chain verifies against that CA, the agent's TPM activates
// the credential made for its AK, the state file pins the AK as
// "ek-credential", and verify then works from it with no --ak or --tofu.
// A CA that did not issue the EK, a TPM without an EK certificate, a
// credential for another AK's name and one to another TPM's EK are each
// refused.
func TestEnroll(t *testing.T) {
	sw, ca := ekTPM(t, filepath.Join(t.TempDir(), "ca"))
	a := spawnAgent(t, "--tpm", sw.Spec())
	state := filepath.Join(t.TempDir(), "host.json")
	akOut := filepath.Join(t.TempDir(), "ak.pem")
	var stdout, stderr bytes.Buffer
	if code := runEnroll(t.Context(), []string{"--agent", a.listen, "--insecure-loopback", "--ek-ca", ca, "--state", state, "--ak-out", akOut},
		&stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	hf, err := verifier.ReadHost(state)
	if err != nil || hf.Pinned != verifier.PinEKCredential || hf.EKCertSHA256 == "" || hf.State != nil {
		t.Fatalf("state: %v %+v", err, hf)
	}
	if ak, err := verifier.ReadAKFile(akOut); err != nil || !bytes.Equal(ak, hf.AKPublic) {
		t.Errorf("--ak-out: %v", err)
	}
	// swtpm_localca names the TPM in the EK certificate's subjectAltName.
	if hf.TPM == nil || !strings.HasPrefix(hf.TPM.Manufacturer, "id:") || hf.TPM.Model == "" || hf.TPM.Firmware == "" ||
		!strings.Contains(stdout.String(), "tpm:        manufacturer "+hf.TPM.Manufacturer) {
		t.Errorf("tpm identity %+v\n%s", hf.TPM, stdout.String())
	}
	t.Logf("enrolled TPM: %+v", *hf.TPM)
	policy := writeTemp(t, "policy.yaml", signedPolicy)
	code, v, errOut := verifyJSON(t, "--agent", a.listen, "--insecure-loopback", "--policy", policy, "--state", state)
	if code != exitCompliant || v.AKPinned != verifier.PinEKCredential {
		t.Fatalf("verify after enrol: exit %d %+v\n%s", code, v, errOut)
	}
	if v.TPM == nil || *v.TPM != *hf.TPM {
		t.Errorf("verdict tpm %+v, state file %+v", v.TPM, hf.TPM)
	}

	t.Run("again keeps the state", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		if code := runEnroll(t.Context(), []string{"--agent", a.listen, "--insecure-loopback", "--ek-ca", ca, "--state", state}, &stdout, &stderr); code != exitOK {
			t.Fatalf("exit %d %s", code, stderr.String())
		}
		if hf, err := verifier.ReadHost(state); err != nil || hf.State == nil {
			t.Errorf("re-enrolment dropped the state: %v", err)
		}
	})

	t.Run("other CA", func(t *testing.T) {
		_, otherCA := ekTPM(t, filepath.Join(t.TempDir(), "other-ca"))
		var stdout, stderr bytes.Buffer
		code := runEnroll(t.Context(), []string{"--agent", a.listen, "--insecure-loopback", "--ek-ca", otherCA,
			"--state", filepath.Join(t.TempDir(), "x.json")}, &stdout, &stderr)
		if code != exitFailed || !strings.Contains(stderr.String(), "enrolment refused") {
			t.Fatalf("exit %d %s", code, stderr.String())
		}
	})

	t.Run("no EK certificate", func(t *testing.T) {
		sim := spawnAgent(t)
		var stdout, stderr bytes.Buffer
		code := runEnroll(t.Context(), []string{"--agent", sim.listen, "--insecure-loopback", "--ek-ca", ca,
			"--state", filepath.Join(t.TempDir(), "x.json")}, &stdout, &stderr)
		if code != exitFailed || !strings.Contains(stderr.String(), "no EK certificate") {
			t.Fatalf("exit %d %s", code, stderr.String())
		}
	})

	t.Run("credential for another AK or EK", func(t *testing.T) {
		conn, err := grpc.NewClient("passthrough:///"+a.listen, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		client := pb.NewAttestationServiceClient(conn)
		id, err := client.Identity(t.Context(), &pb.IdentityRequest{})
		if err != nil {
			t.Fatal(err)
		}
		roots, inter, err := readEKIssuers(ca)
		if err != nil {
			t.Fatal(err)
		}
		ek, err := attest.VerifyEKCertificate(id.GetEkCertificate(), roots, inter, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		// Another agent's AK, and another TPM's EK.
		other := spawnAgent(t)
		oid := identityOf(t, other)
		sw2, ca2 := ekTPM(t, filepath.Join(t.TempDir(), "ca2"))
		a2 := spawnAgent(t, "--tpm", sw2.Spec())
		r2, i2, err := readEKIssuers(ca2)
		if err != nil {
			t.Fatal(err)
		}
		ek2, err := attest.VerifyEKCertificate(identityOf(t, a2).GetEkCertificate(), r2, i2, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		for name, c := range map[string]struct {
			ekPub any
			akFor []byte
		}{
			"other AK's name": {ek.PublicKey, oid.GetAkPublic()},
			"other TPM's EK":  {ek2.PublicKey, id.GetAkPublic()},
		} {
			cred, err := attest.MakeCredential(rand.Reader, c.ekPub, c.akFor, []byte("0123456789abcdef0123456789abcdef"))
			if err != nil {
				t.Fatal(err)
			}
			_, err = client.ActivateCredential(t.Context(), &pb.ActivateCredentialRequest{AkPublic: id.GetAkPublic(),
				CredentialBlob: cred.CredentialBlob, EncryptedSecret: cred.EncryptedSecret})
			if status.Code(err) != codes.InvalidArgument {
				t.Errorf("%s: %v, want InvalidArgument", name, err)
			}
		}
		// A request naming another AK is refused before the TPM is asked.
		_, err = client.ActivateCredential(t.Context(), &pb.ActivateCredentialRequest{AkPublic: oid.GetAkPublic()})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("other ak_public: %v", err)
		}
	})
}

func identityOf(t *testing.T, a *agentProc) *pb.Identity {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+a.listen, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	id, err := pb.NewAttestationServiceClient(conn).Identity(t.Context(), &pb.IdentityRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return id
}
