package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bpfattest/bpfattest/attest"
)

// TestReadFileMax proves the CLI's bounded reader accepts a file of exactly
// the limit and refuses one byte more, and that an endless device is
// refused after limit+1 bytes instead of exhausting memory.
func TestReadFileMax(t *testing.T) {
	dir := t.TempDir()
	exact := filepath.Join(dir, "exact")
	over := filepath.Join(dir, "over")
	if err := os.WriteFile(exact, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(over, make([]byte, 4097), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := readFileMax(exact, 4096); err != nil || len(b) != 4096 {
		t.Fatalf("file at the limit: %d bytes, %v", len(b), err)
	}
	for _, path := range []string{over, "/dev/zero"} {
		if _, err := readFileMax(path, 4096); !errors.Is(err, errTooLarge) {
			t.Errorf("%s: err %v, want errTooLarge", path, err)
		}
	}
	if _, err := readFileMax(filepath.Join(dir, "missing"), 1); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

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
	var bomb strings.Builder
	bomb.WriteString("hosts:\n  - &x0 {name: a, address: b}\n")
	for i := 1; i < 40; i++ {
		fmt.Fprintf(&bomb, "  - &x%d [%s*x%d]\n", i, strings.Repeat(fmt.Sprintf("*x%d, ", i-1), 8), i-1)
	}
	inventory := func(path string) error { _, err := parseInventory(path, ""); return err }
	hostFile := func(path string) error { _, err := readHostFile(path); return err }
	policy := func(path string) error { _, err := readPolicy(path); return err }
	for _, tc := range []struct {
		name string
		read func(string) error
		path string
		want string
	}{
		{"inventory oversized", inventory, "/dev/zero", errTooLarge.Error()},
		{"inventory alias bomb", inventory, write("bomb.yaml", bomb.String()), "cannot unmarshal"},
		{"inventory deep nesting", inventory, write("deep.yaml", "hosts: "+strings.Repeat("[", 20_000)+strings.Repeat("]", 20_000)), "max depth"},
		{"inventory truncated", inventory, write("trunc.yaml", "hosts:\n  - {name: a, address: "), "yaml"},
		{"inventory mistyped", inventory, write("type.yaml", "hosts: {name: a}\n"), "cannot unmarshal"},
		{"inventory long line", inventory, write("long.txt", "host "+strings.Repeat("a", 1<<20)+"\n"), "inventory"},
		{"state oversized", hostFile, "/dev/zero", errTooLarge.Error()},
		{"state deep nesting", hostFile, write("deep.json", `{"version": `+strings.Repeat("[", 100_000)+strings.Repeat("]", 100_000)+`}`), "max depth"},
		{"state truncated", hostFile, write("trunc.json", `{"version": 1, "pinned": "tofu"`), "unexpected end"},
		{"state mistyped", hostFile, write("type.json", `{"version": "one"}`), "cannot unmarshal"},
		{"policy oversized", policy, "/dev/zero", errTooLarge.Error()},
		{"policy deep nesting", policy, write("deep-policy.yaml", "version: 1\nallowed_schemes: "+strings.Repeat("[", 100_000)), "policy"},
		{"ak oversized", func(p string) error { _, err := readAKFile(p); return err }, "/dev/zero", errTooLarge.Error()},
		{"certificate oversized", func(p string) error { _, err := readCert(p); return err }, "/dev/zero", errTooLarge.Error()},
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
