package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bpfattest/bpfattest/attest"
	"github.com/bpfattest/bpfattest/internal/boundedfile"
	"github.com/bpfattest/bpfattest/verifier"
)

// TestHostileInputFiles proves each file the CLI reads from an operator or
// a remote party is refused with an error naming the problem: oversized
// (an endless device stands in for a huge file), alias bombs, deep
// nesting, truncated and mistyped content.
func TestHostileInputFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// A log past the 1 GiB limit, sparse: it costs neither disk nor time.
	hugeLog := write("huge.cel", "")
	if err := os.Truncate(hugeLog, maxLogFileSize+1); err != nil {
		t.Fatal(err)
	}
	var bomb strings.Builder
	bomb.WriteString("hosts:\n  - &x0 {name: a, address: b}\n")
	for i := 1; i < 40; i++ {
		fmt.Fprintf(&bomb, "  - &x%d [%s*x%d]\n", i, strings.Repeat(fmt.Sprintf("*x%d, ", i-1), 8), i-1)
	}
	inventory := func(path string) error { _, err := parseInventory(path, ""); return err }
	hostFile := func(path string) error { _, err := verifier.ReadHost(path); return err }
	policy := func(path string) error { _, err := readPolicy(path); return err }
	eventLog := func(path string) error { _, checkErr, err := readLog(path); return errors.Join(err, checkErr) }
	for _, tc := range []struct {
		name string
		read func(string) error
		path string
		want string
	}{
		{"inventory oversized", inventory, "/dev/zero", boundedfile.ErrTooLarge.Error()},
		{"inventory alias bomb", inventory, write("bomb.yaml", bomb.String()), "cannot unmarshal"},
		{"inventory deep nesting", inventory, write("deep.yaml", "hosts: "+strings.Repeat("[", 20_000)+strings.Repeat("]", 20_000)), "max depth"},
		{"inventory truncated", inventory, write("trunc.yaml", "hosts:\n  - {name: a, address: "), "yaml"},
		{"inventory mistyped", inventory, write("type.yaml", "hosts: {name: a}\n"), "cannot unmarshal"},
		{"inventory long line", inventory, write("long.txt", "host "+strings.Repeat("a", 1<<20)+"\n"), "inventory"},
		{"state oversized", hostFile, "/dev/zero", boundedfile.ErrTooLarge.Error()},
		{"state deep nesting", hostFile, write("deep.json", `{"version": `+strings.Repeat("[", 100_000)+strings.Repeat("]", 100_000)+`}`), "max depth"},
		{"state truncated", hostFile, write("trunc.json", `{"version": 1, "pinned": "tofu"`), "unexpected end"},
		{"state mistyped", hostFile, write("type.json", `{"version": "one"}`), "cannot unmarshal"},
		{"policy oversized", policy, "/dev/zero", boundedfile.ErrTooLarge.Error()},
		{"policy deep nesting", policy, write("deep-policy.yaml", "version: 1\nallowed_schemes: "+strings.Repeat("[", 100_000)), "policy"},
		{"log oversized", eventLog, hugeLog, boundedfile.ErrTooLarge.Error()},
		{"log garbage", eventLog, write("garbage.cel", "\x00\x00\x00\x07not a log at all"), "cel"},
		{"ak oversized", func(p string) error { _, err := verifier.ReadAKFile(p); return err }, "/dev/zero", boundedfile.ErrTooLarge.Error()},
		{"certificate oversized", func(p string) error { _, err := readCert(p); return err }, "/dev/zero", boundedfile.ErrTooLarge.Error()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.read(tc.path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one containing %q", err, tc.want)
			}
		})
	}
	if _, err := readPolicy(write("policy-max.yaml", "version: 1\n"+strings.Repeat("#", attest.MaxPolicySize))); err == nil {
		t.Error("a policy past MaxPolicySize was accepted")
	}
}
