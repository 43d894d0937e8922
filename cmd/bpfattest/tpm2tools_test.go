package main

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/bpfattest/bpfattest/evidence"
	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
	"github.com/bpfattest/bpfattest/verifier"
)

// checkquoteAnswer classifies what tpm2_checkquote said about a quote.
type checkquoteAnswer string

const (
	checkquoteAccepted checkquoteAnswer = "accepted"
	checkquoteRejected checkquoteAnswer = "rejected"
)

// runCheckquoteTool runs tpm2_checkquote on the files `quote --format
// tpm2-tools` wrote in dir, with qualification (hex) as -q, and classifies
// the answer: exit 0 accepted, any other exit rejected; a tool that does
// not run fails the test.
func runCheckquoteTool(t *testing.T, bin, dir, qualification string) checkquoteAnswer {
	t.Helper()
	hash := "sha256"
	args := []string{"-u", filepath.Join(dir, "ak.pem"), "-m", filepath.Join(dir, "quote.msg"),
		"-s", filepath.Join(dir, "quote.sig"), "-f", filepath.Join(dir, "quote.pcrs"), "-g", hash, "-q", qualification}
	out, err := exec.CommandContext(t.Context(), bin, args...).CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return checkquoteAccepted
	case errors.As(err, &exit):
		t.Logf("tpm2_checkquote (exit %d): %s", exit.ExitCode(), errorLine(out))
		return checkquoteRejected
	}
	t.Fatalf("tpm2_checkquote did not run: %v", err)
	return ""
}

// errorLine is the tool's first ERROR line, else its last line.
func errorLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for _, l := range lines {
		if strings.Contains(l, "ERROR") {
			return l
		}
	}
	return lines[len(lines)-1]
}

func firstLineOf(b []byte) string {
	l, _, _ := strings.Cut(string(b), "\n")
	return l
}

func readHex(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestQuoteTPM2Tools exports quotes with `bpfattest quote --format
// tpm2-tools` from a real agent, one alone and two coalesced into one TPM
// quote (each with its own nonce and inclusion proof), and hands each to
// tpm2-tools' tpm2_checkquote with the qualifying data the export derived
// from the nonce (docs/verification.md). The tool's version is printed and
// its answer classified; it must accept each genuine export and refuse
// another nonce's qualifying data. Our own verdict on the same saved
// evidence (`verify --evidence FILE --nonce HEX`) is pinned: compliant for
// the genuine nonce, could-not-verify (exit 2) for another nonce, a
// changed log, a missing pin, and --tofu.
func TestQuoteTPM2Tools(t *testing.T) {
	bin := testutil.RequireTool(t, "tpm2_checkquote")
	if v, err := exec.Command(bin, "--version").CombinedOutput(); err == nil {
		t.Logf("%s", bytes.TrimSpace(v))
	}
	targets := map[string]struct {
		args  func(t *testing.T) []string
		banks uint32 // selections in the PCR file: the quoted banks
	}{
		// Both have the sha1, sha256, sha384 and sha512 banks; all but
		// sha1 are quoted: three selections and three values in the PCR
		// file, the multi-bank layout of tpm2-tools' format.
		"sim": {func(*testing.T) []string { return nil }, 3},
		"swtpm": {func(t *testing.T) []string {
			return []string{"--tpm", tpmtest.StartSwtpm(t, tpmtest.SwtpmOptions{}).Spec()}
		}, 3},
	}
	for _, name := range []string{"sim", "swtpm"} {
		t.Run(name, func(t *testing.T) {
			tpmArgs := targets[name].args(t)
			cert := testutil.LskelFile(t, "keys/TEST_ONLY_signing_cert.pem")
			a := spawnAgent(t, append([]string{"--trust", cert, "--quote-window", "400ms"}, tpmArgs...)...)
			id := identityOf(t, a)
			akFile := writeTemp(t, "ak.pem", string(pem.EncodeToMemory(&pem.Block{Type: verifier.AKPEMType, Bytes: id.GetAkPublic()})))
			policy := writeTemp(t, "policy.yaml", "version: 1\nallow_simulator: true\n")

			quote := func(nonce, dir string) (string, error) {
				var stdout, stderr bytes.Buffer
				code := runQuote(t.Context(), []string{"--agent", a.listen, "--insecure-loopback", "--nonce", nonce,
					"--format", "tpm2-tools", "--out", dir, "--ak", akFile}, &stdout, &stderr)
				if code != exitOK {
					return "", errors.New(stderr.String())
				}
				return stdout.String(), nil
			}
			verifyEvidence := func(dir, nonce string, extra ...string) int {
				var stdout, stderr bytes.Buffer
				args := append([]string{"--evidence", filepath.Join(dir, "evidence.json"), "--nonce", nonce, "--policy", policy}, extra...)
				if len(extra) == 0 {
					args = append(args, "--ak", akFile)
				}
				code := runVerify(t.Context(), args, &stdout, &stderr)
				t.Logf("verify --evidence %s: exit %d: %s%s", filepath.Base(dir), code, firstLineOf(stdout.Bytes()), strings.TrimSpace(stderr.String()))
				return code
			}

			t.Run("single", func(t *testing.T) {
				dir := filepath.Join(t.TempDir(), "quote")
				nonce := hex.EncodeToString(bytes.Repeat([]byte{0x5a}, 32))
				out, err := quote(nonce, dir)
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(out, "tpm2_checkquote -u "+filepath.Join(dir, "ak.pem")) {
					t.Errorf("no command line in the summary:\n%s", out)
				}
				pcrs, err := os.ReadFile(filepath.Join(dir, "quote.pcrs"))
				if err != nil || len(pcrs) < 4 || binary.LittleEndian.Uint32(pcrs) != targets[name].banks {
					t.Fatalf("quote.pcrs: %d bytes (%x…), %v; want %d selections", len(pcrs), pcrs[:min(len(pcrs), 4)], err, targets[name].banks)
				}
				qual := readHex(t, filepath.Join(dir, "qualification"))
				nb, _ := hex.DecodeString(nonce)
				if qual != hex.EncodeToString(evidence.QualifyingData(nb)) {
					t.Fatalf("qualification %s is not QualifyingData(nonce) for a batch of one", qual)
				}
				if got := runCheckquoteTool(t, bin, dir, qual); got != checkquoteAccepted {
					t.Errorf("tpm2_checkquote: %s, want %s", got, checkquoteAccepted)
				}
				if code := verifyEvidence(dir, nonce); code != exitCompliant {
					t.Errorf("verify --evidence: exit %d, want %d", code, exitCompliant)
				}
				// The saved evidence's verdict as a signed EAR, with the
				// nonce the evidence answers.
				key := newEARKey(t, false)
				code, tok := verifyEAR(t, key, "--evidence", filepath.Join(dir, "evidence.json"), "--nonce", nonce, "--policy", policy, "--ak", akFile)
				if a := checkToken(t, tok, key, "saved evidence", mustRead(t, policy)); code != exitCompliant || !bytes.Equal(a.Verdict.Nonce, nb) {
					t.Errorf("verify --evidence --format ear: exit %d, verdict %s with nonce %x, want %d and %s", code, a.Verdict.Status, a.Verdict.Nonce, exitCompliant, nonce)
				}
				other := hex.EncodeToString(bytes.Repeat([]byte{0x5b}, 32))
				ob, _ := hex.DecodeString(other)
				if got := runCheckquoteTool(t, bin, dir, hex.EncodeToString(evidence.QualifyingData(ob))); got != checkquoteRejected {
					t.Errorf("tpm2_checkquote with another nonce's qualifying data: %s", got)
				}
				if code := verifyEvidence(dir, other); code != exitUnverified {
					t.Errorf("verify --evidence with another nonce: exit %d, want %d", code, exitUnverified)
				}
				for name, extra := range map[string][]string{"no pin": {"--state", filepath.Join(t.TempDir(), "none.json")}, "tofu": {"--tofu"}} {
					if code := verifyEvidence(dir, nonce, extra...); code != exitUnverified {
						t.Errorf("verify --evidence with %s: exit %d, want %d", name, code, exitUnverified)
					}
				}
				// A record changed in the saved evidence: the replay fails.
				ev, err := verifier.ReadEvidence(filepath.Join(dir, "evidence.json"))
				if err != nil {
					t.Fatal(err)
				}
				b, _ := os.ReadFile(filepath.Join(dir, "evidence.json"))
				log := ev.Log
				mod := append([]byte(nil), log...)
				mod[len(mod)-1] ^= 1
				edited := bytes.Replace(b, []byte(b64(log)), []byte(b64(mod)), 1)
				if bytes.Equal(edited, b) {
					t.Fatal("could not edit the log in the evidence file")
				}
				tampered := filepath.Join(t.TempDir(), "tampered")
				if err := os.MkdirAll(tampered, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(tampered, "evidence.json"), edited, 0o644); err != nil {
					t.Fatal(err)
				}
				if code := verifyEvidence(tampered, nonce); code != exitUnverified {
					t.Errorf("verify --evidence of a changed log: exit %d, want %d", code, exitUnverified)
				}
			})

			t.Run("coalesced", func(t *testing.T) {
				// Two verifiers ask at once; the agent's quote window makes them
				// share one TPM quote. Retried a few times in case the scheduler
				// puts the second request after the window.
				for attempt := range 5 {
					base := t.TempDir()
					nonces := []string{
						hex.EncodeToString(bytes.Repeat([]byte{byte(0x10 + attempt)}, 32)),
						hex.EncodeToString(bytes.Repeat([]byte{byte(0x20 + attempt)}, 32)),
					}
					dirs := []string{filepath.Join(base, "a"), filepath.Join(base, "b")}
					var wg sync.WaitGroup
					errs := make([]error, 2)
					for i := range 2 {
						wg.Go(func() { _, errs[i] = quote(nonces[i], dirs[i]) })
					}
					wg.Wait()
					if err := errors.Join(errs...); err != nil {
						t.Fatal(err)
					}
					msgA, _ := os.ReadFile(filepath.Join(dirs[0], "quote.msg"))
					msgB, _ := os.ReadFile(filepath.Join(dirs[1], "quote.msg"))
					if !bytes.Equal(msgA, msgB) {
						t.Logf("attempt %d: the two requests got separate quotes", attempt)
						continue
					}
					quals := []string{readHex(t, filepath.Join(dirs[0], "qualification")), readHex(t, filepath.Join(dirs[1], "qualification"))}
					if quals[0] != quals[1] {
						t.Fatalf("one TPM quote, two qualifying data: %v", quals)
					}
					for i, dir := range dirs {
						nb, _ := hex.DecodeString(nonces[i])
						if quals[i] == hex.EncodeToString(evidence.QualifyingData(nb)) {
							t.Fatal("a coalesced quote's qualifying data equals a lone nonce's")
						}
						if got := runCheckquoteTool(t, bin, dir, quals[i]); got != checkquoteAccepted {
							t.Errorf("nonce %d: tpm2_checkquote %s, want %s", i, got, checkquoteAccepted)
						}
						if code := verifyEvidence(dir, nonces[i]); code != exitCompliant {
							t.Errorf("nonce %d: verify --evidence exit %d, want %d", i, code, exitCompliant)
						}
						// Each nonce's proof places only that nonce: the other's
						// evidence file does not answer it.
						if code := verifyEvidence(dirs[1-i], nonces[i]); code != exitUnverified {
							t.Errorf("nonce %d against the other's proof: exit %d, want %d", i, code, exitUnverified)
						}
						// The lone-nonce formula does not fit a batch: the tool
						// refuses it.
						if got := runCheckquoteTool(t, bin, dir, hex.EncodeToString(evidence.QualifyingData(nb))); got != checkquoteRejected {
							t.Errorf("nonce %d with the single-nonce qualifying data: tpm2_checkquote %s", i, got)
						}
					}
					return
				}
				t.Fatal("five attempts, never one shared quote")
			})

		})
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
