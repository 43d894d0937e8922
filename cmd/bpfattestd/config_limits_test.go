package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigFileLimits proves the daemon refuses a hostile config file with
// an error naming the problem, before it opens the TPM or calls bpf():
// oversized (also an endless device, read only to the limit), deeply
// nested, truncated and mistyped JSON.
func TestConfigFileLimits(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// Valid JSON padded past the limit: refused for its size, not its syntax.
	padded := `{"tpm": "sim"` + strings.Repeat(" ", maxConfigSize) + `}`
	deep := `{"tpm": ` + strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000) + `}`
	for _, tc := range []struct {
		name, path, want string
	}{
		{"oversized", write("big.json", padded), "more than 1048576 bytes"},
		{"endless device", "/dev/zero", "more than 1048576 bytes"},
		{"deeply nested", write("deep.json", deep), "exceeded max depth"},
		{"truncated", write("trunc.json", `{"tpm": "sim", "pcr": 1`), "unexpected EOF"},
		{"mistyped", write("type.json", `{"pcr": "fourteen"}`), "cannot unmarshal string"},
		{"unknown field", write("unknown.json", `{"tmp": "sim"}`), "unknown field"},
		{"two documents", write("two.json", `{"tpm": "sim"} {"pcr": 1}`), "trailing data"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseConfig([]string{"--config", tc.path}, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one containing %q", err, tc.want)
			}
		})
	}
}
