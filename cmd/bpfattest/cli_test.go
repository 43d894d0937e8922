package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/lskel"
	"github.com/bpfattest/bpfattest/measure"
)

func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := dispatch(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func fixture(t *testing.T, rel string) string { return testutil.LskelFile(t, rel) }

// unrelatedCert writes a self-signed certificate that signed nothing.
func unrelatedCert(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "unrelated"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		SubjectKeyId: []byte{1, 2, 3, 4},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "unrelated.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func inspectJSON(t *testing.T, args ...string) (int, inspectReport) {
	t.Helper()
	code, out, errs := run(t, append([]string{"inspect", "--json"}, args...)...)
	var r inspectReport
	if code != exitUsage {
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("inspect --json output: %v\n%s\n%s", err, out, errs)
		}
	}
	return code, r
}

func TestInspectVerdicts(t *testing.T) {
	cert := fixture(t, "keys/TEST_ONLY_signing_cert.pem")
	for _, name := range []string{"counter", "pair", "rocfg"} {
		signed := fixture(t, "headers/"+name+".signed.lskel.h")
		code, r := inspectJSON(t, signed, "--trust", cert, "--obj", fixture(t, "obj/"+name+".bpf.o"))
		if code != exitOK || r.Verdict.String() != "OK" || !r.Accepted {
			t.Errorf("%s signed + its certificate: exit %d verdict %v problems %q", name, code, r.Verdict, r.Problems)
		}
		code, r = inspectJSON(t, signed, "--trust", unrelatedCert(t))
		if code != exitFailed || r.Verdict.String() != "UNKNOWNKEY" {
			t.Errorf("%s signed + unrelated certificate: exit %d verdict %v", name, code, r.Verdict)
		}
		code, r = inspectJSON(t, fixture(t, "headers/"+name+".lskel.h"), "--trust", cert)
		if code != exitFailed || r.Verdict.String() != "UNSIGNED" {
			t.Errorf("%s unsigned: exit %d verdict %v", name, code, r.Verdict)
		}
	}
}

func TestInspectText(t *testing.T) {
	code, out, _ := run(t, "inspect", fixture(t, "headers/counter.signed.lskel.h"),
		"--trust", fixture(t, "keys/TEST_ONLY_signing_cert.der"), "--obj", fixture(t, "obj/counter.bpf.o"))
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, out)
	}
	for _, want := range []string{"ACCEPTED", "kernel-lskel", "count_sys_enter", "matches outside relocation slots",
		"f8dbdbb8a9f82452b2a27c9f80bed2349d817a2d8cba7d68bc1bb50a68248f2d"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestInspectUsage(t *testing.T) {
	if code, _, _ := run(t, "inspect"); code != exitUsage {
		t.Errorf("no file: exit %d", code)
	}
	bad := filepath.Join(t.TempDir(), "bad.h")
	os.WriteFile(bad, []byte("not a skeleton"), 0o644)
	if code, _, errs := run(t, "inspect", bad); code != exitUsage || errs == "" {
		t.Errorf("garbage: exit %d, stderr %q", code, errs)
	}
	if code, _, _ := run(t, "nosuch"); code != exitUsage {
		t.Errorf("unknown command: exit %d", code)
	}
}

// TestHelpExitsZero asks every command for its help: exit 0, a usage line
// on stderr, nothing on stdout. An unknown flag is a usage error (2).
func TestHelpExitsZero(t *testing.T) {
	cmds := [][]string{{"policy", "init"}, {"ear", "verify"}}
	for name := range commands() {
		cmds = append(cmds, []string{name})
	}
	for _, cmd := range cmds {
		name := strings.Join(cmd, " ")
		for _, h := range []string{"-h", "--help"} {
			code, out, errs := run(t, append(cmd, h)...)
			if code != exitOK || out != "" || !strings.Contains(errs, "usage: bpfattest "+name) {
				t.Errorf("%s %s: exit %d, stdout %q, stderr %q; want 0 and a usage line on stderr", name, h, code, out, errs)
			}
		}
		if (cmd[0] == "policy" || cmd[0] == "ear") && len(cmd) == 1 {
			continue // "policy" and "ear" take a subcommand, not flags
		}
		if code, _, errs := run(t, append(cmd, "--no-such-flag")...); code != exitUsage || !strings.Contains(errs, "no-such-flag") {
			t.Errorf("%s --no-such-flag: exit %d, stderr %q; want %d naming the flag", name, code, errs, exitUsage)
		}
	}
}

// TestSignReproducesBpftool signs each unsigned-bytes loader with the fixture
// key and checks the signature equals the one bpftool put in the header.
func TestSignReproducesBpftool(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"counter", "pair", "rocfg"} {
		hdr := fixture(t, "headers/"+name+".signed.lskel.h")
		out := filepath.Join(dir, name+".bundle")
		code, _, errs := run(t, "sign", "--key", fixture(t, "keys/TEST_ONLY_signing_key.pem"),
			"--cert", fixture(t, "keys/TEST_ONLY_signing_cert.pem"), "--scheme", "kernel", "--out", out, hdr)
		if code != exitOK {
			t.Fatalf("sign %s: exit %d: %s", name, code, errs)
		}
		orig := readArtifact(t, hdr)
		got := readArtifact(t, out)
		if !bytes.Equal(got.Signature, orig.Signature) {
			t.Errorf("%s: signature differs from bpftool's opts_sig", name)
		}
		if !bytes.Equal(got.ExclHash, orig.ExclHash) || !bytes.Equal(got.Insns, orig.Insns) || !bytes.Equal(got.Data, orig.Data) {
			t.Errorf("%s: bundle does not carry the header's bytes", name)
		}
		// Re-signing an already signed bundle replaces its signature.
		code, _, errs = run(t, "sign", "--key", fixture(t, "keys/TEST_ONLY_signing_key.der"),
			"--cert", fixture(t, "keys/TEST_ONLY_signing_cert.der"), "--scheme", "hornet", "--force", "--out", out, out)
		if code != exitOK {
			t.Fatalf("re-sign %s: exit %d: %s", name, code, errs)
		}
		code, r := inspectJSON(t, out, "--trust", fixture(t, "keys/TEST_ONLY_signing_cert.pem"))
		if code != exitOK || r.Scheme != measure.SchemeHornet || r.Verdict.String() != "OK" {
			t.Errorf("%s hornet: exit %d scheme %v verdict %v problems %q", name, code, r.Scheme, r.Verdict, r.Problems)
		}
		if openssl, err := exec.LookPath("openssl"); err == nil {
			h := readArtifact(t, out)
			sig, content := filepath.Join(dir, name+".sig"), filepath.Join(dir, name+".insns")
			os.WriteFile(sig, h.Signature, 0o644)
			os.WriteFile(content, h.Insns, 0o644)
			c := fixture(t, "keys/TEST_ONLY_signing_cert.pem")
			cmd := exec.Command(openssl, "cms", "-verify", "-binary", "-inform", "DER", "-in", sig, "-content", content,
				"-certfile", c, "-CAfile", c, "-purpose", "any", "-out", os.DevNull)
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("%s: openssl refuses the hornet CMS: %v\n%s", name, err, b)
			}
		} else {
			testutil.SkipEnv(t, "openssl not installed: %v", err)
		}
	}
}

func TestPackRoundTrip(t *testing.T) {
	out := filepath.Join(t.TempDir(), "p.bundle")
	hdr := fixture(t, "headers/pair.signed.lskel.h")
	if code, _, errs := run(t, "pack", "--keyring-id", "-3", "--out", out, hdr); code != exitOK {
		t.Fatalf("pack: %d %s", code, errs)
	}
	a, b := readArtifact(t, hdr), readArtifact(t, out)
	if b.KeyringID != -3 || !bytes.Equal(a.Insns, b.Insns) || !bytes.Equal(a.Signature, b.Signature) {
		t.Errorf("bundle differs from header (keyring %d)", b.KeyringID)
	}
	if code, _, _ := run(t, "pack", "--out", out, hdr); code != exitUsage {
		t.Errorf("overwrite without --force: exit %d", code)
	}
}

func TestSampleMatchesFixture(t *testing.T) {
	a := readArtifact(t, filepath.Join("sample", "rocfg.signed.bundle"))
	b := readArtifact(t, fixture(t, "headers/rocfg.signed.lskel.h"))
	if !bytes.Equal(a.Insns, b.Insns) || !bytes.Equal(a.Data, b.Data) || !bytes.Equal(a.Signature, b.Signature) || !bytes.Equal(a.ExclHash, b.ExclHash) {
		t.Error("sample bundle no longer carries the fixture's bytes; regenerate it (sample/README.md)")
	}
}

func readArtifact(t *testing.T, path string) *lskel.Artifact {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	a, err := lskel.Load(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return a
}
