package attest

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// aliasBomb is a YAML document whose aliases expand to 9^depth copies of
// leaf under key: a "billion laughs" attack on anything that expands them.
func aliasBomb(key, leaf string, depth int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "version: 1\nx0: &x0 [%s]\n", leaf)
	for i := 1; i < depth; i++ {
		refs := strings.Repeat(fmt.Sprintf("*x%d, ", i-1), 8) + fmt.Sprintf("*x%d", i-1)
		fmt.Fprintf(&b, "x%d: &x%d [%s]\n", i, i, refs)
	}
	fmt.Fprintf(&b, "%s: [%s]\n", key, strings.Repeat(fmt.Sprintf("*x%d, ", depth-1), 8)+fmt.Sprintf("*x%d", depth-1))
	return b.String()
}

// inlineBomb is an alias bomb entirely under one known key: each element
// of the list under key is nine aliases of the one before.
func inlineBomb(key, leaf string, depth int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "version: 1\n%s:\n  - &x0 [%s]\n", key, leaf)
	for i := 1; i < depth; i++ {
		refs := strings.Repeat(fmt.Sprintf("*x%d, ", i-1), 8) + fmt.Sprintf("*x%d", i-1)
		fmt.Fprintf(&b, "  - &x%d [%s]\n", i, refs)
	}
	return b.String()
}

// TestParsePolicyHostile proves a hostile policy is refused with an error
// wrapping ErrPolicy that names the problem, and is never expanded:
// oversized, alias bombs (under unknown keys and under a known list),
// deep nesting, truncation and mistyped fields.
func TestParsePolicyHostile(t *testing.T) {
	padded := "version: 1\n" + strings.Repeat("#", MaxPolicySize)
	for _, tc := range []struct {
		name, doc, want string
	}{
		{"oversized", padded, "limit 1048576"},
		{"alias bomb, unknown keys", aliasBomb("x40", "a", 40), "not found"},
		{"alias bomb, known list", inlineBomb("allowed_schemes", "kernel", 40), "cannot unmarshal"},
		{"deep nesting", "version: 1\nallowed_schemes: " + strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000), "max depth"},
		{"truncated", "version: 1\nallowed_schemes: [kernel, ", ""},
		{"mistyped", "version: 1\nrequire_signed: [yes]\n", "cannot unmarshal"},
		{"second document", "version: 1\n---\nversion: 1\n", "more than one document"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParsePolicy([]byte(tc.doc))
			if !errors.Is(err, ErrPolicy) {
				t.Fatalf("err %v, want ErrPolicy", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one containing %q", err, tc.want)
			}
		})
	}
}
