package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEditedHeaderRefused: a signed fixture header whose NAME__load hands
// bpf_load_and_run something else than its opts_* arrays (another array,
// a changed size) is never reported as the loader those arrays hold:
// inspect, pack and sign refuse it (exit 2) naming the line. The lskel
// tests compile such headers to show what they submit.
func TestEditedHeaderRefused(t *testing.T) {
	orig, err := os.ReadFile(fixture(t, "headers/counter.signed.lskel.h"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	key, cert := fixture(t, "keys/TEST_ONLY_signing_key.pem"), fixture(t, "keys/TEST_ONLY_signing_cert.pem")
	for _, c := range []struct{ name, old, new, line string }{
		{"data pointed at the loader", "opts.data = (void *)opts_data;", "opts.data = (void *)opts_insn;", "line 291"},
		{"loader size changed", "opts.insns_sz = sizeof(opts_insn) - 1;", "opts.insns_sz = sizeof(opts_insn) - 9;", "line 292"},
	} {
		t.Run(c.name, func(t *testing.T) {
			src := strings.Replace(string(orig), c.old, c.new, 1)
			if src == string(orig) {
				t.Fatal("edit changed nothing")
			}
			path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".lskel.h")
			if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, "out.bundle")
			for _, args := range [][]string{
				{"inspect", path, "--trust", cert},
				{"inspect", "--json", path, "--trust", cert},
				{"pack", "--out", out, path},
				{"sign", "--key", key, "--cert", cert, "--out", out, path},
			} {
				code, stdout, stderr := run(t, args...)
				if code != exitUsage || stdout != "" || !strings.Contains(stderr, c.line) || !strings.Contains(stderr, c.new) {
					t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit %d naming %s and quoting %q", args[0], code, stdout, stderr, exitUsage, c.line, c.new)
				}
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("a bundle was written: %v", err)
			}
		})
	}
}
