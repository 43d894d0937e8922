package attest

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/bpfattest/bpfattest/evidence"
	"github.com/bpfattest/bpfattest/internal/tpm"
)

var update = flag.Bool("update", false, "rewrite testdata/evidence from the simulator")

// capturedEvidence is one evidence file in testdata/evidence: real
// evidence from the agent's journal on the simulator, with the nonce it
// answers.
type capturedEvidence struct {
	Nonce    []byte
	Evidence *evidence.Evidence
}

func evidenceFiles(tb testing.TB) []string {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "evidence", "*.json"))
	if err != nil || len(files) == 0 {
		tb.Fatalf("no evidence in testdata/evidence (%v); run go test ./attest -run TestCaptureEvidence -update", err)
	}
	return files
}

func readCaptured(tb testing.TB, path string) capturedEvidence {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	var c capturedEvidence
	if err := json.Unmarshal(b, &c); err != nil {
		tb.Fatalf("%s: %v", path, err)
	}
	return c
}

// TestCaptureEvidence rewrites testdata/evidence with -update: the
// scenario's evidence for an ECC and an RSA AK. Without -update it does
// nothing; TestCapturedEvidence checks the files.
func TestCaptureEvidence(t *testing.T) {
	if !*update {
		t.Skip("run with -update to regenerate testdata/evidence")
	}
	for _, alg := range []tpm.AKAlgorithm{tpm.AKECCP256, tpm.AKRSA2048} {
		t.Run(alg.String(), func(t *testing.T) {
			a := newTestAgent(t, "sim", alg)
			runScenario(a)
			nonce := freshNonce(t, 0)
			b, err := json.MarshalIndent(capturedEvidence{Nonce: nonce, Evidence: a.quote(nonce, 0)}, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			p := filepath.Join("testdata", "evidence", "scenario-"+alg.String()+".json")
			if err := os.WriteFile(p, append(b, '\n'), 0o644); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestCapturedEvidence proves the committed evidence still verifies
// without any TPM (it runs in CGO_ENABLED=0 builds too) and still says
// what the scenario put in the kernel: a drift check for the verifier,
// the record codecs and the fixtures.
func TestCapturedEvidence(t *testing.T) {
	for _, p := range evidenceFiles(t) {
		t.Run(filepath.Base(p), func(t *testing.T) {
			c := readCaptured(t, p)
			res, err := Verify(c.Evidence, VerifyOptions{Nonce: c.Nonce, AKPublic: c.Evidence.AKPublic})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Programs()) != 3 || len(res.Pending()) != 1 || len(res.Failed()) != 1 || len(res.Unmeasured()) != 1 {
				t.Errorf("programs %d pending %d failed %d unmeasured %d, want 3 1 1 1",
					len(res.Programs()), len(res.Pending()), len(res.Failed()), len(res.Unmeasured()))
			}
		})
	}
}
