package tpmtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/bpfattest/bpfattest/internal/testutil"
)

// EKSwtpm is a swtpm TPM state manufactured by swtpm_setup with EK
// certificates that swtpm_localca issued, and that CA's certificates.
type EKSwtpm struct {
	// StateDir is the TPM state (SwtpmOptions.StateDir).
	StateDir string
	// RootCA and IssuerCA are the PEM files of the local CA's root and of
	// the intermediate that signed the EK certificates.
	RootCA, IssuerCA string
}

// ManufactureEKSwtpm runs swtpm_setup --create-ek-cert --create-platform-cert
// with swtpm_localca as the certificate tool, configured by files in the
// test's own directories so nothing outside them is written, and returns
// the TPM state and the CA's certificates. The EK certificates are in NV at
// the EK Credential Profile's indices (RSA 2048 at 0x01c00002). Only the
// sha256 bank is allocated. It skips (fails under the strict switch)
// without swtpm_setup and swtpm_localca.
func ManufactureEKSwtpm(tb testing.TB) *EKSwtpm {
	tb.Helper()
	setup := testutil.RequireTool(tb, "swtpm_setup")
	localca := testutil.RequireTool(tb, "swtpm_localca")
	dir := tb.TempDir()
	e := &EKSwtpm{StateDir: filepath.Join(dir, "state")}
	caDir := filepath.Join(dir, "ca")
	for _, d := range []string{e.StateDir, caDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			tb.Fatal(err)
		}
	}
	files := map[string]string{
		"localca.conf": "statedir = " + caDir + "\nsigningkey = " + filepath.Join(caDir, "signkey.pem") +
			"\nissuercert = " + filepath.Join(caDir, "issuercert.pem") + "\ncertserial = " + filepath.Join(caDir, "certserial") + "\n",
		"localca.options": "--platform-manufacturer bpfattest-test\n--platform-version 1.0\n--platform-model test\n",
		"setup.conf": "create_certs_tool = " + localca + "\ncreate_certs_tool_config = " + filepath.Join(dir, "localca.conf") +
			"\ncreate_certs_tool_options = " + filepath.Join(dir, "localca.options") + "\nactive_pcr_banks = sha256\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	cmd := exec.CommandContext(tb.Context(), setup, "--tpm2", "--tpmstate", e.StateDir, "--create-ek-cert", "--create-platform-cert",
		"--config", filepath.Join(dir, "setup.conf"), "--logfile", filepath.Join(dir, "setup.log"), "--overwrite")
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+dir, "HOME="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "setup.log"))
		tb.Fatalf("swtpm_setup: %v\n%s%s", err, out, log)
	}
	e.RootCA = filepath.Join(caDir, "swtpm-localca-rootca-cert.pem")
	e.IssuerCA = filepath.Join(caDir, "issuercert.pem")
	for _, f := range []string{e.RootCA, e.IssuerCA} {
		if _, err := os.Stat(f); err != nil {
			tb.Fatalf("swtpm_localca: %v", err)
		}
	}
	return e
}
