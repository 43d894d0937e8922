package main

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bpfattest/bpfattest/ear"
	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
	"github.com/bpfattest/bpfattest/verifier"
)

// earKey is a verifier signing key written for the CLI: the private key
// (PKCS#8 PEM) and the public key (PKIX PEM) files.
type earKey struct {
	signer       crypto.Signer
	priv, public string
}

func newEARKey(t testing.TB, rsaKey bool) earKey {
	t.Helper()
	var k crypto.Signer
	var err error
	if rsaKey {
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	} else {
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return earKey{signer: k,
		priv:   writeTemp(t, "ear-key.pem", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))),
		public: writeTemp(t, "ear-pub.pem", string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})))}
}

// verifyEAR runs verify --format ear and returns the exit code and the
// token it wrote.
func verifyEAR(t *testing.T, key earKey, args ...string) (int, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := runVerify(t.Context(), append(args, "--format", "ear", "--ear-key", key.priv), &stdout, &stderr)
	tok := strings.TrimSpace(stdout.String())
	if strings.Count(tok, ".") != 2 || strings.ContainsAny(tok, " \n") {
		t.Fatalf("exit %d, no token on stdout: %q\n%s", code, stdout.String(), stderr.String())
	}
	return code, tok
}

// checkToken verifies a token the CLI wrote with go-jose (ear.Verify) and
// with openssl, and checks what every token must say: the profile, the
// host, the policy's id, the evidence nonce of a verified verdict, and a
// vector that is the appraisal of the verdict it carries.
func checkToken(t *testing.T, tok string, key earKey, host string, policy []byte) *ear.Appraisal {
	t.Helper()
	pub, err := ear.ParsePublicKey(mustRead(t, key.public))
	if err != nil {
		t.Fatal(err)
	}
	got, err := ear.Verify(tok, pub, ear.VerifyOptions{})
	if err != nil {
		t.Fatalf("go-jose: %v", err)
	}
	if ok, out := opensslVerify(t, tok, key); !ok {
		t.Errorf("openssl refuses the token: %s", out)
	}
	c := got.Claims
	a := c.Submods[ear.SubmodLabel]
	if c.Profile != ear.Profile || c.Subject != host || a == nil || a.Verdict == nil || len(c.Submods) != 1 {
		t.Fatalf("claims %+v", c)
	}
	if want := []string{ear.PolicyID(policy)}; !slices.Equal(a.PolicyIDs, want) {
		t.Errorf("policy ids %v, want %v", a.PolicyIDs, want)
	}
	v := a.Verdict
	if verified := v.Status == verifier.StatusCompliant || v.Status == verifier.StatusNonCompliant; verified != (len(v.Nonce) == verifier.NonceSize) ||
		!bytes.Equal(a.Nonce, v.Nonce) {
		t.Errorf("evidence nonce %x, verdict %s nonce %x", []byte(a.Nonce), v.Status, v.Nonce)
	}
	if again := ear.Appraise(v); *again.Vector != *a.Vector || again.Status != a.Status || *c.Status != a.Status {
		t.Errorf("the token's vector %+v (%s) is not the appraisal of its verdict %+v (%s)", *a.Vector, a.Status, *again.Vector, again.Status)
	}
	return a
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// opensslVerify checks the token's signature with openssl over the JWS
// signing input (RFC 7515 §5.2): ES256's R||S converted to DER for
// `openssl dgst -sha256 -verify`, PS256 with PSS padding and a 32-byte salt.
func opensslVerify(t *testing.T, tok string, key earKey) (bool, string) {
	t.Helper()
	testutil.RequireTool(t, "openssl")
	input, sigB64, _ := strings.Cut(tok, ".")
	payload, sigB64, _ := strings.Cut(sigB64, ".")
	input += "." + payload
	sig, err := base64.RawURLEncoding.DecodeString(sigB64)
	if err != nil {
		return false, err.Error()
	}
	args := []string{"dgst", "-sha256"}
	switch key.signer.(type) {
	case *ecdsa.PrivateKey:
		if len(sig) != 64 {
			return false, fmt.Sprintf("ES256 signature of %d bytes", len(sig))
		}
		sig, err = asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])})
		if err != nil {
			t.Fatal(err)
		}
	case *rsa.PrivateKey:
		args = append(args, "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:32")
	}
	dir := t.TempDir()
	in, sf := filepath.Join(dir, "input"), filepath.Join(dir, "sig")
	if err := os.WriteFile(in, []byte(input), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sf, sig, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("openssl", append(args, "-verify", key.public, "-signature", sf, in)...).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil && strings.Contains(string(out), "Verified OK"):
		return true, string(out)
	case err == nil || errors.As(err, &ee) && strings.Contains(string(out), "Verification failure"):
		return false, string(out)
	}
	t.Fatalf("openssl did not answer: %v\n%s", err, out)
	return false, ""
}

// ownOnly drops what other processes put in the shared kernel: programs
// without a measured load (and those that came and went). The scenarios
// load none of their own outside the agents, so every such program is
// another's; hand-built verdicts cover that row (ear's TestRows).
func ownOnly(v *verifier.Verdict) *verifier.Verdict {
	c := *v
	c.Unmeasured = nil
	if h := c.History; h != nil {
		hc := *h
		hc.Unmeasured, hc.Transient, hc.Summary = []verifier.Unmeasured{}, []verifier.Transient{}, nil
		c.History = &hc
	}
	return &c
}

// TestEARRealVerdicts: real agents verified by `bpfattest verify --format
// ear`, one scenario per row the mapping can be shown on without a
// hand-built verdict. Every token verifies with go-jose and openssl and
// says what checkToken requires; the appraisal of its verdict (less the
// programs other processes loaded in the shared kernel) has the status and
// vector of the verdict captured from the same scenario into
// ear/testdata/verdicts, whose full appraisal is ear's golden file. With
// -update the scenarios are captured again.
func TestEARRealVerdicts(t *testing.T) {
	cert := testutil.LskelFile(t, "keys/TEST_ONLY_signing_cert.pem")
	key := newEARKey(t, false)
	signed := spawnAgent(t, "--trust", cert)
	unsigned := spawnAgent(t, "--trust", cert, "--allow-unsigned")
	loadInto(t, signed, "headers/counter.signed.lskel.h", exitOK)
	loadInto(t, unsigned, "headers/counter.lskel.h", exitOK)
	const open = "version: 1\nallow_simulator: true\n"
	signedState := filepath.Join(t.TempDir(), "signed.json")

	type scenario struct {
		name   string
		policy string
		args   []string
		code   int
		status string
	}
	run := func(t *testing.T, s scenario) {
		policy := writeTemp(t, "policy.yaml", s.policy)
		args := append([]string{"--insecure-loopback", "--policy", policy, "--name", "host-" + s.name}, s.args...)
		code, tok := verifyEAR(t, key, args...)
		if code != s.code {
			t.Fatalf("exit %d, want %d", code, s.code)
		}
		a := checkToken(t, tok, key, "host-"+s.name, []byte(s.policy))
		if a.Verdict.Status != s.status {
			t.Fatalf("verdict %s (%s), want %s", a.Verdict.Status, a.Verdict.Reason, s.status)
		}
		live := ear.Appraise(ownOnly(a.Verdict))
		file := filepath.Join(testutil.RepoRoot(t), "ear", "testdata", "verdicts", "real-"+s.name+".json")
		if *updateSample {
			b, err := json.MarshalIndent(ownOnly(a.Verdict), "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(file, append(b, '\n'), 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		var captured verifier.Verdict
		if err := json.Unmarshal(mustRead(t, file), &captured); err != nil {
			t.Fatalf("%s: %v (run with -update)", file, err)
		}
		want := ear.Appraise(&captured)
		if *live.Vector != *want.Vector || live.Status != want.Status {
			t.Errorf("live appraisal %+v (%s), captured %+v (%s)\nreasons: %v", *live.Vector, live.Status, *want.Vector, want.Status, live.Reasons)
		}
	}
	for _, s := range []scenario{
		// a signed load, the simulator allowed, pinned on first use
		{"signed-tofu", signedPolicy, []string{"--agent", signed.listen, "--tofu", "--state", signedState}, exitCompliant, verifier.StatusCompliant},
		// an unsigned load the policy lets in
		{"unsigned-allowed", open, []string{"--agent", unsigned.listen, "--tofu"}, exitCompliant, verifier.StatusCompliant},
		// the same against a policy requiring signatures
		{"unsigned-refused", signedPolicy, []string{"--agent", unsigned.listen, "--tofu"}, exitNonCompliant, verifier.StatusNonCompliant},
		// the simulator not allowed
		{"simulator-refused", "version: 1\n", []string{"--agent", signed.listen, "--tofu"}, exitNonCompliant, verifier.StatusNonCompliant},
		// another agent's AK
		{"ak-mismatch", signedPolicy, []string{"--agent", unsigned.listen, "--state", signedState}, exitUnverified, verifier.StatusUnverified},
		// nobody there
		{"unreachable", signedPolicy, []string{"--agent", closedPort(t), "--tofu"}, exitUnverified, verifier.StatusUnreachable},
	} {
		t.Run(s.name, func(t *testing.T) { run(t, s) })
	}

	// The boot chain: go-attestation's Ubuntu 21.04 log (Secure Boot
	// off) replayed into swtpm, served by the agent; the boot
	// applications and kernel pinned as docs/policy.md shows.
	t.Run("boot", func(t *testing.T) {
		const name = "ubuntu_2104_shielded_vm_no_secure_boot_eventlog"
		fw := testutil.GoAttestationLogs(t, name)[name]
		sw := tpmtest.StartSwtpm(t, tpmtest.SwtpmOptions{})
		d := tpmtest.Open(t, sw.Spec())
		tpmtest.ReplayFirmwareLog(t, d, fw)
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "binary_bios_measurements")
		if err := os.WriteFile(path, fw, 0o600); err != nil {
			t.Fatal(err)
		}
		a := spawnAgent(t, "--tpm", sw.Spec(), "--firmware-log", path)
		const pins = `version: 1
require_firmware_log: true
allowed_boot_apps:
  - 6265b732b005b3f330bcd1843374e5ec6ec5aef27cdb97a23daeb8580abbf526
  - b0a836fec2faf4a9bea0e1a5f1945bc86ddc03ac98ce0ae172ed9b1e536d7595
allowed_kernel_sha256:
  - 47e598b7b944fe88d64116a985f872d1ead87d1827ad8ae9d6cd677963fbf501
`
		for _, s := range []scenario{
			{"boot-pinned", pins, []string{"--agent", a.listen, "--tofu"}, exitCompliant, verifier.StatusCompliant},
			{"boot-secure-boot-required", pins + "require_secure_boot: true\n", []string{"--agent", a.listen, "--tofu"}, exitNonCompliant, verifier.StatusNonCompliant},
		} {
			t.Run(s.name, func(t *testing.T) { run(t, s) })
		}
	})
}

// TestEARTokenOpenSSL: a token the CLI wrote (for a host that could not
// be reached: no agent is needed to sign) verifies with go-jose and with
// openssl, for an ES256 and a PS256 key; with one byte of the payload
// changed both refuse it, and `bpfattest ear verify` agrees (exit 0, 1).
func TestEARTokenOpenSSL(t *testing.T) {
	if out, err := exec.Command("openssl", "version").CombinedOutput(); err == nil {
		t.Logf("reference: %s", strings.TrimSpace(string(out)))
	}
	policy := writeTemp(t, "policy.yaml", signedPolicy)
	for name, rsaKey := range map[string]bool{"ES256": false, "PS256": true} {
		t.Run(name, func(t *testing.T) {
			key := newEARKey(t, rsaKey)
			code, tok := verifyEAR(t, key, "--agent", closedPort(t), "--insecure-loopback", "--policy", policy, "--tofu", "--name", "gone")
			if code != exitUnverified {
				t.Fatalf("exit %d", code)
			}
			a := checkToken(t, tok, key, "gone", mustRead(t, policy))
			if a.Status != ear.TierContraindicated || a.Vector.Executables != ear.NoClaim {
				t.Errorf("unreachable: %s %+v", a.Status, *a.Vector)
			}
			h, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
			if !strings.Contains(string(h), `"alg":"`+name+`"`) {
				t.Errorf("header %s", h)
			}
			var stdout, stderr bytes.Buffer
			if code := runEAR(t.Context(), []string{"verify", tok, "--key", key.public}, &stdout, &stderr); code != exitOK ||
				!strings.Contains(stdout.String(), "valid ("+name) || !strings.Contains(stdout.String(), "status:     contraindicated") {
				t.Errorf("ear verify: exit %d\n%s%s", code, stdout.String(), stderr.String())
			}

			// One changed payload byte: go-jose, openssl and the CLI refuse it.
			parts := strings.Split(tok, ".")
			p, _ := base64.RawURLEncoding.DecodeString(parts[1])
			p[bytes.Index(p, []byte(`"gone"`))+1] = 'G'
			bad := parts[0] + "." + base64.RawURLEncoding.EncodeToString(p) + "." + parts[2]
			pub, _ := ear.ParsePublicKey(mustRead(t, key.public))
			if _, err := ear.Verify(bad, pub, ear.VerifyOptions{}); !errors.Is(err, ear.ErrSignature) {
				t.Errorf("go-jose: %v", err)
			}
			if ok, out := opensslVerify(t, bad, key); ok {
				t.Errorf("openssl accepts a changed payload: %s", out)
			}
			stdout.Reset()
			stderr.Reset()
			if code := runEAR(t.Context(), []string{"verify", writeTemp(t, "bad.ear", bad+"\n"), "--key", key.public}, &stdout, &stderr); code != exitFailed ||
				!strings.Contains(stderr.String(), "INVALID") {
				t.Errorf("ear verify of a changed token: exit %d\n%s", code, stderr.String())
			}
		})
	}
}

// TestEARCLI: the EAR flags' usage errors (exit 2, before dialling), and
// `scan --format ear` writes one token per host that `ear verify` accepts
// as a file.
func TestEARCLI(t *testing.T) {
	key := newEARKey(t, false)
	policy := writeTemp(t, "policy.yaml", signedPolicy)
	base := []string{"--agent", "127.0.0.1:1", "--insecure-loopback", "--policy", policy, "--tofu"}
	for name, args := range map[string][]string{
		"no key":          {"--format", "ear"},
		"unreadable key":  {"--format", "ear", "--ear-key", policy},
		"json and ear":    {"--format", "ear", "--ear-key", key.priv, "--json"},
		"unknown format":  {"--format", "yaml"},
		"bad algorithm":   {"--format", "ear", "--ear-key", key.priv, "--ear-alg", "HS256"},
		"alg not the key": {"--format", "ear", "--ear-key", key.priv, "--ear-alg", "PS256"},
	} {
		var stdout, stderr bytes.Buffer
		code := runVerify(t.Context(), append(slices.Clone(base), args...), &stdout, &stderr)
		if code != exitUsage || stdout.Len() != 0 {
			t.Errorf("%s: exit %d, stdout %q, stderr %q", name, code, stdout.String(), stderr.String())
		}
	}
	for name, args := range map[string][]string{
		"no key":       {"verify", "a.b.c"},
		"no token":     {"verify", "--key", key.public},
		"not a key":    {"verify", "a.b.c", "--key", policy},
		"missing file": {"verify", filepath.Join(t.TempDir(), "absent"), "--key", key.public},
		"no verb":      {},
	} {
		var stdout, stderr bytes.Buffer
		if code := runEAR(t.Context(), args, &stdout, &stderr); code != exitUsage {
			t.Errorf("ear %s: exit %d, stderr %q", name, code, stderr.String())
		}
	}

	inv := writeTemp(t, "hosts.txt", "gone1 "+closedPort(t)+"\ngone2 "+closedPort(t)+"\n")
	out := filepath.Join(t.TempDir(), "fleet.ear")
	var stdout, stderr bytes.Buffer
	code := runScan(t.Context(), []string{"--inventory", inv, "--policy", policy, "--insecure-loopback", "--tofu", "--format", "ear",
		"--ear-key", key.priv, "--ear-validity", "1h", "--out", out}, &stdout, &stderr)
	if code != exitUnverified {
		t.Fatalf("scan: exit %d\n%s", code, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(mustRead(t, out))), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d tokens, want 2", len(lines))
	}
	for i, tok := range lines {
		a := checkToken(t, tok, key, []string{"gone1", "gone2"}[i], mustRead(t, policy))
		if a.Verdict.Status != verifier.StatusUnreachable {
			t.Errorf("host %d: %s", i, a.Verdict.Status)
		}
	}
	stdout.Reset()
	stderr.Reset()
	if code := runEAR(t.Context(), []string{"verify", out, "--key", key.public, "--json"}, &stdout, &stderr); code != exitOK {
		t.Fatalf("ear verify: exit %d\n%s", code, stderr.String())
	}
	dec := json.NewDecoder(&stdout)
	for i := range 2 {
		var c ear.Claims
		if err := dec.Decode(&c); err != nil || c.Expires-c.IssuedAt != 3600 || c.Subject != []string{"gone1", "gone2"}[i] {
			t.Errorf("token %d: %v %+v", i, err, c)
		}
	}

	// --key as a JWK Set (what the fleet service publishes): the tokens'
	// kid chooses the key; a set without it verifies none of them.
	other := newEARKey(t, true)
	for _, tc := range []struct {
		name string
		keys []ear.PublicKey
		code int
	}{
		{"the signer's key among others", []ear.PublicKey{{Key: other.signer.Public()}, {Key: key.signer.Public()}}, exitOK},
		{"only another key", []ear.PublicKey{{Key: other.signer.Public()}}, exitFailed},
	} {
		set, err := ear.MarshalKeySet(tc.keys...)
		if err != nil {
			t.Fatal(err)
		}
		stdout.Reset()
		stderr.Reset()
		code := runEAR(t.Context(), []string{"verify", out, "--key", writeTemp(t, "keys.json", string(set))}, &stdout, &stderr)
		if code != tc.code || (code == exitFailed && strings.Count(stderr.String(), "no key with kid") != 2) {
			t.Errorf("key set with %s: exit %d, want %d\n%s%s", tc.name, code, tc.code, stdout.String(), stderr.String())
		}
	}
}
