package testutil

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// ModuleDir returns the directory of a module in the build (the module
// cache, read-only), as `go list -m` reports it from the repository root.
// A module that is not in the build or not downloaded fails the test: a
// dependency's files are part of the build, never an environment to skip
// on.
func ModuleDir(tb testing.TB, path string) string {
	tb.Helper()
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", path)
	cmd.Dir = RepoRoot(tb)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("go list -m %s: %v\n%s", path, err, stderr.String())
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		tb.Fatalf("module %s is not in the module cache: run `go mod download %s`", path, path)
	}
	if _, err := os.Stat(dir); err != nil {
		tb.Fatalf("module %s: %v", path, err)
	}
	return dir
}

// GoAttestationLogs returns the real firmware event logs that
// github.com/google/go-attestation ships as test data (attest/testdata),
// read from the module cache by file name. They are third-party data and
// are not copied into this repository. Each must be present: a missing one
// fails the test.
func GoAttestationLogs(tb testing.TB, names ...string) map[string][]byte {
	tb.Helper()
	dir := filepath.Join(ModuleDir(tb, "github.com/google/go-attestation"), "attest", "testdata")
	out := make(map[string][]byte, len(names))
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			tb.Fatalf("go-attestation test log: %v", err)
		}
		out[n] = b
	}
	return out
}
