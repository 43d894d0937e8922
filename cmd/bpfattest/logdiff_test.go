package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bpfattest/bpfattest/agent/journal"
	"github.com/bpfattest/bpfattest/internal/testutil"
)

// stateDirOf is where an agent on the simulator keeps its log.
func stateDirOf(a *agentProc) string {
	return filepath.Join(filepath.Dir(filepath.Dir(a.socket)), "state", "sim")
}

// TestLogDiff compares the logs of two real agents for audit: one loaded
// the signed counter and pair, the other the signed and the unsigned
// counter. The diff names pair_lskel as only in A and, for counter_lskel,
// the unsigned variant's scheme, verdict, signer and digests as only in
// B, in text and JSON, with exit 1; a log against itself is exit 0; a
// tampered log is refused (exit 2).
func TestLogDiff(t *testing.T) {
	cert := testutil.LskelFile(t, "keys/TEST_ONLY_signing_cert.pem")
	a := spawnAgent(t, "--trust", cert)
	b := spawnAgent(t, "--trust", cert, "--allow-unsigned")
	loadInto(t, a, "headers/counter.signed.lskel.h", exitOK)
	loadInto(t, a, "headers/pair.signed.lskel.h", exitOK)
	loadInto(t, b, "headers/counter.signed.lskel.h", exitOK)
	loadInto(t, b, "headers/counter.lskel.h", exitOK)
	dirA, dirB := stateDirOf(a), stateDirOf(b)

	var stdout, stderr bytes.Buffer
	code := runLog(t.Context(), []string{"--diff", dirA, dirB}, &stdout, &stderr)
	out := stdout.String()
	if code != exitFailed {
		t.Fatalf("exit %d\n%s%s", code, out, stderr.String())
	}
	for _, want := range []string{
		"artifact counter_lskel: differs (1 loads in A, 2 in B)\n",
		"  + scheme unsigned\n", "  + signature UNSIGNED\n", "  + signer none\n",
		"  + loader_sha256 d431c96e",
		"artifact pair_lskel: only in A (1 loads)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("diff lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "  - ") && strings.Contains(out, "counter_lskel: differs") &&
		strings.Contains(out[strings.Index(out, "counter_lskel"):strings.Index(out, "pair_lskel")], "  - ") {
		t.Errorf("counter_lskel of A has facts B lacks:\n%s", out)
	}

	t.Run("json", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		if code := runLog(t.Context(), []string{"--diff", "--format", "json", dirA, dirB}, &stdout, &stderr); code != exitFailed {
			t.Fatalf("exit %d %s", code, stderr.String())
		}
		var d logDiff
		if err := json.Unmarshal(stdout.Bytes(), &d); err != nil {
			t.Fatal(err)
		}
		// Unmeasured programs differ with whatever else runs on the shared
		// kernel (other tests load programs too); count the artifacts only.
		unmeasured := len(d.Unmeasured.OnlyA) + len(d.Unmeasured.OnlyB)
		if len(d.Artifacts) != 2 || d.Artifacts[0].Name != "counter_lskel" || d.Artifacts[1].OnlyIn != "a" || d.Count-unmeasured != 2 {
			t.Errorf("%+v", d)
		}
	})

	t.Run("same", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		if code := runLog(t.Context(), []string{"--diff", dirA, dirA}, &stdout, &stderr); code != exitOK {
			t.Fatalf("exit %d\n%s%s", code, stdout.String(), stderr.String())
		}
	})

	t.Run("tampered", func(t *testing.T) {
		boots, err := journal.Boots(dirB)
		if err != nil || len(boots) == 0 {
			t.Fatal(err)
		}
		raw, err := os.ReadFile(boots[len(boots)-1].Path)
		if err != nil {
			t.Fatal(err)
		}
		i := bytes.Index(raw, []byte("counter_lskel"))
		raw[i] = 'C'
		p := filepath.Join(t.TempDir(), "tampered.cel")
		if err := os.WriteFile(p, raw, 0o644); err != nil {
			t.Fatal(err)
		}
		var stdout, stderr bytes.Buffer
		if code := runLog(t.Context(), []string{"--diff", dirA, p}, &stdout, &stderr); code != exitUsage || !strings.Contains(stderr.String(), "INVALID") {
			t.Fatalf("exit %d\n%s", code, stderr.String())
		}
	})

	t.Run("usage", func(t *testing.T) {
		for name, args := range map[string][]string{
			"one":    {"--diff", dirA},
			"three":  {"--diff", dirA, dirB, dirA},
			"cel":    {"--diff", "--format", "cel", dirA, dirB},
			"dir":    {"--diff", "--dir", dirA, dirB},
			"absent": {"--diff", dirA, filepath.Join(t.TempDir(), "none")},
		} {
			var stdout, stderr bytes.Buffer
			if code := runLog(t.Context(), args, &stdout, &stderr); code != exitUsage {
				t.Errorf("%s: exit %d", name, code)
			}
		}
	})
}
